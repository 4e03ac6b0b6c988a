//! The world: everything one bootstrap sets up, shared by a communicator and its splits.
//!
//! Contract: [`World::new`] runs the rendezvous ([`Control`]), then builds the data planes in
//! setup phases that every rank runs in the same order (each closed by a [`Control::gather`],
//! so an error on any rank reaches every rank instead of leaving them waiting):
//!
//! 1. each rank creates its shared-memory file with one inbound ring per same-host peer;
//! 2. each rank maps its same-host peers' files (its outbound rings) and then unlinks its own;
//! 3. ranks that need the transport start it (`weir_firmware::net::Net`, on the engine
//!    placement `WEIR_ENGINE` names) and publish its address with a random key;
//! 4. rank `i` connects to every transport peer `j > i` and accepts every `j < i` (one
//!    connection per pair). The connector passes `key_j + its rank` as user data, `key_j`
//!    being the acceptor's random key: an engine shared by several processes routes each
//!    accepted connection to the one listening on that key, and the acceptor reads the
//!    connector's rank from it. Each rank listens on its keys — one range, `key_i` to
//!    `key_i + i - 1`, so an engine's bounded listens per client do not bound the world's
//!    size — before it publishes its address, so no connection can arrive before its
//!    listener.
//!
//! The [`Plane`] (rings, host, connections, scratch memory) sits behind one mutex: one
//! collective runs at a time per world.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use weir_datapath::Buffer;
use weir_firmware::net::Net as Host;
use weir_transport::{ConnId, RegionId};

use crate::bootstrap::{Control, PeerInfo, PeerState, host_identity, shm_namespace};
use crate::shm::{Ring, Segment};
use crate::{CommError, CommOptions};

/// One process's share of a bootstrap.
#[derive(Debug)]
pub(crate) struct World {
    pub(crate) rank: usize,
    pub(crate) opts: CommOptions,
    /// `shm[j]`: this rank talks to world rank `j` through shared memory.
    pub(crate) shm: Vec<bool>,
    /// Why shared memory was turned off for the whole world, if it was.
    pub(crate) shm_fallback: Option<String>,
    // Field order is drop order: the control plane says goodbye (and lingers briefly, so the
    // peers' last acknowledgements arrive) before the transport closes its connections.
    pub(crate) control: Control,
    pub(crate) plane: Mutex<Plane>,
}

/// The data planes (see the module doc).
#[derive(Debug)]
pub(crate) struct Plane {
    /// Ring this rank produces into, per world rank.
    pub(crate) out: Vec<Option<Ring>>,
    /// Ring this rank consumes from, per world rank.
    pub(crate) inb: Vec<Option<Ring>>,
    pub(crate) host: Option<Host>,
    /// Connection to each world rank over the transport.
    pub(crate) conns: Vec<Option<ConnId>>,
    /// Registered scratch memory for staged receives.
    pub(crate) scratch: Option<(RegionId, Buffer)>,
    /// Keeps the rings' memory mapped (after `out`/`inb`, which point into it).
    segments: Vec<Segment>,
}

impl World {
    /// Bootstraps and builds the data planes (module doc).
    pub(crate) fn new(
        rank: usize,
        size: usize,
        addr: &str,
        opts: CommOptions,
    ) -> Result<World, CommError> {
        let me = PeerInfo {
            rank,
            host: opts.host_id.clone().unwrap_or_else(host_identity),
            shm_ns: shm_namespace(&opts.shm_dir),
            shm: opts.shm,
            pid: std::process::id(),
        };
        let control = Control::connect(rank, size, addr, me, opts.timeout)?;
        let peers = control.peers.clone();
        let mut shm: Vec<bool> = (0..size)
            .map(|j| j != rank && peers[rank].shares_memory_with(&peers[j]))
            .collect();
        // Same-host peers of `d`, in rank order: ring `i` of `d`'s file is fed by the i-th.
        let locals = |d: usize| -> Vec<usize> {
            (0..size)
                .filter(|&j| j != d && peers[d].shares_memory_with(&peers[j]))
                .collect()
        };
        let dir = opts.shm_dir.display().to_string();
        let path = |d: usize| format!("{dir}/weir-{:016x}-{d}", control.job);
        let mut plane = Plane {
            out: vec![None; size],
            inb: vec![None; size],
            host: None,
            conns: vec![None; size],
            scratch: None,
            segments: Vec::new(),
        };
        let mine = locals(rank);

        // Phase 1: create the inbound rings.
        let created = if mine.is_empty() {
            Ok(None)
        } else {
            Segment::create(&path(rank), mine.len()).map(Some)
        };
        let all = control.gather(status(&created))?;
        let mut fallback = check_all(&all, "creating shared memory").err();
        let mut own = match created {
            Ok(seg) if fallback.is_none() => seg,
            _ => None,
        };
        if let Some(seg) = &own {
            for (i, &j) in mine.iter().enumerate() {
                plane.inb[j] = seg.ring(i);
            }
        }

        // Phase 2: map the peers' rings, then unlink our file.
        let mapped: Result<(), CommError> = (|| {
            if fallback.is_some() {
                return Ok(());
            }
            for &j in &mine {
                let theirs = locals(j);
                let idx = theirs
                    .iter()
                    .position(|&x| x == rank)
                    .ok_or_else(|| CommError::Shm(format!("rank {j} does not list rank {rank}")))?;
                let seg = Segment::open(&path(j), theirs.len())?;
                plane.out[j] = seg.ring(idx);
                plane.segments.push(seg);
            }
            Ok(())
        })();
        let all = control.gather(status(&mapped))?;
        if let Some(seg) = &mut own {
            seg.unlink();
        }
        if let Some(seg) = own {
            plane.segments.push(seg);
        }
        fallback = fallback.or_else(|| check_all(&all, "mapping shared memory").err());
        if fallback.is_some() {
            // Every rank saw the same gathers, so all of them fall back together.
            shm.iter_mut().for_each(|s| *s = false);
            plane.out.iter_mut().for_each(|r| *r = None);
            plane.inb.iter_mut().for_each(|r| *r = None);
            plane.segments.clear();
        }

        // Phase 3: transport hosts.
        let needs = (0..size).any(|j| j != rank && !shm[j]);
        let host = if needs {
            let mut cfg = opts.host.clone();
            cfg.udp.bind = opts
                .bind
                .or(control.local_ip)
                .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
            cfg.udp.port = 0;
            // Below 2^63, so that `key + rank` never wraps (the keys form one range).
            let key = weir_datapath::os_seed() >> 1;
            Host::start(&opts.engine, cfg)
                .map_err(|e| {
                    CommError::Transport(format!(
                        "starting the transport ({} engine): {e}",
                        opts.engine.name()
                    ))
                })
                .and_then(|h| {
                    // One listen for every lower rank's key (`key + j`): an engine holds a
                    // bounded number of listens per client, a range counting once.
                    if (0..rank).any(|j| !shm[j]) {
                        let count = u32::try_from(rank).map_err(|_| {
                            CommError::Transport(format!("rank {rank} is too large"))
                        })?;
                        h.listen_keys(key, count).map_err(|e| {
                            CommError::Transport(format!("listening for ranks 0..{rank}: {e}"))
                        })?;
                    }
                    Ok(Some((h, key)))
                })
        } else {
            Ok(None)
        };
        let mine_addr = match &host {
            Ok(Some((h, key))) => format!("@{} {key}", h.local_addr()),
            Ok(None) => String::new(),
            Err(e) => e.to_string(),
        };
        let all = control.gather(mine_addr)?;
        let bad: Vec<&String> = all
            .iter()
            .filter(|s| !s.is_empty() && !s.starts_with('@'))
            .collect();
        if let Some(e) = bad.first() {
            return Err(CommError::Transport(format!(
                "a rank could not start its transport: {e}"
            )));
        }
        let host = host?;
        let key = host.as_ref().map_or(0, |h| h.1);
        plane.host = host.map(|h| h.0);

        // Phase 4: one connection per transport pair.
        let connected = match &plane.host {
            Some(h) => connect_all(
                h,
                rank,
                size,
                &shm,
                &all,
                key,
                opts.timeout,
                &mut plane.conns,
            ),
            None => Ok(()),
        };
        let all = control.gather(status(&connected))?;
        check_all(&all, "connecting the transport")?;
        connected?;

        Ok(World {
            rank,
            opts,
            shm,
            shm_fallback: fallback.map(|e| e.to_string()),
            control,
            plane: Mutex::new(plane),
        })
    }

    /// Whether world ranks `a` and `b` are on the same host.
    pub(crate) fn same_host(&self, a: usize, b: usize) -> bool {
        let p = &self.control.peers;
        a == b || (p[a].host == p[b].host)
    }
}

impl Drop for World {
    /// Leaving: tell every rank, then keep the control plane and the transport up until the
    /// ranks that may still need them have left too (or failed), bounded by the timeout:
    ///
    /// * a peer reached through the transport may still have to consume a message this rank
    ///   sent (acknowledged, but buffered at the peer until it posts the receive); closing the
    ///   connection under it would lose that message. Shared memory needs no wait: the
    ///   consumer maps its own rings.
    /// * rank 0 relays every departure and failure, so it waits for all ranks; the others stop
    ///   waiting once rank 0 has left (nobody relays any more).
    fn drop(&mut self) {
        self.control.leave();
        let size = self.shm.len();
        let wait_for: Vec<usize> = (0..size)
            .filter(|&j| j != self.rank && (self.rank == 0 || !self.shm[j]))
            .collect();
        if wait_for.is_empty() {
            return;
        }
        let deadline = Instant::now() + self.opts.timeout;
        while Instant::now() < deadline {
            let h = self.control.health.snapshot();
            let relay_gone = self.rank != 0 && h[0] != PeerState::Alive;
            if relay_gone || wait_for.iter().all(|&j| h[j] != PeerState::Alive) {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// The empty string for success, else the error text (what a setup phase gathers).
fn status<T>(r: &Result<T, CommError>) -> String {
    match r {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    }
}

fn check_all(all: &[String], what: &str) -> Result<(), CommError> {
    match all.iter().enumerate().find(|(_, s)| !s.is_empty()) {
        None => Ok(()),
        Some((r, e)) => Err(CommError::Bootstrap(format!("rank {r} failed {what}: {e}"))),
    }
}

/// Phase 4 (module doc): `key` is this rank's, on which it listens already.
#[allow(clippy::too_many_arguments)]
fn connect_all(
    host: &Host,
    rank: usize,
    size: usize,
    shm: &[bool],
    addrs: &[String],
    key: u64,
    timeout: Duration,
    conns: &mut [Option<ConnId>],
) -> Result<(), CommError> {
    let published = |j: usize| -> Result<(SocketAddr, u64), CommError> {
        addrs[j]
            .strip_prefix('@')
            .and_then(|a| a.split_once(' '))
            .and_then(|(a, k)| Some((a.parse().ok()?, k.parse().ok()?)))
            .ok_or_else(|| CommError::Transport(format!("rank {j} published no transport address")))
    };
    let mut expect: Vec<usize> = (0..rank).filter(|&j| !shm[j]).collect();
    // `World::new` listened on the range exactly when some lower rank uses the transport.
    let listened = !expect.is_empty();
    let result = dial_and_accept(
        host,
        rank,
        size,
        shm,
        key,
        timeout,
        conns,
        &published,
        &mut expect,
    );
    if listened {
        host.revoke(key);
    }
    result
}

#[allow(clippy::too_many_arguments)]
fn dial_and_accept(
    host: &Host,
    rank: usize,
    size: usize,
    shm: &[bool],
    key: u64,
    timeout: Duration,
    conns: &mut [Option<ConnId>],
    published: &dyn Fn(usize) -> Result<(SocketAddr, u64), CommError>,
    expect: &mut Vec<usize>,
) -> Result<(), CommError> {
    let deadline = Instant::now() + timeout;
    let mut dialing = Vec::new();
    for (j, _) in shm
        .iter()
        .enumerate()
        .take(size)
        .skip(rank + 1)
        .filter(|(_, s)| !**s)
    {
        let (addr, theirs) = published(j)?;
        dialing.push((
            j,
            host.connect_nonblocking(addr, theirs.wrapping_add(rank as u64)),
        ));
    }
    loop {
        while let Some((conn, _, who)) = host.try_accept() {
            let who = who.wrapping_sub(key) as usize;
            if let Some(i) = expect.iter().position(|&j| j == who) {
                expect.swap_remove(i);
                conns[who] = Some(conn);
            } else {
                host.close(conn);
            }
        }
        let mut pending = Vec::new();
        for &(j, c) in &dialing {
            match host.is_connected(c) {
                Ok(true) => conns[j] = Some(c),
                Ok(false) => pending.push((j, c)),
                Err(e) => {
                    return Err(CommError::Transport(format!("connecting to rank {j}: {e}")));
                }
            }
        }
        dialing = pending;
        if dialing.is_empty() && expect.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let mut waiting: Vec<usize> = dialing.iter().map(|d| d.0).collect();
            waiting.extend(expect.iter());
            return Err(CommError::Transport(format!(
                "transport connections to ranks {waiting:?} not established within {timeout:?}"
            )));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}
