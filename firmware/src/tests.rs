//! The engine core between two in-memory "hosts": clients submit through real rings, the
//! two engines' endpoints exchange datagrams directly, time advances by hand.

use alloc::vec;
use alloc::vec::Vec;
use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use core::ptr::NonNull;
use std::boxed::Box;

use proptest::prelude::*;
use weir_base::{Duration, Instant};
use weir_transport::{Config, Endpoint, Payload, RxMeta};
use weir_wire::{Ecn, MAX_HEADER_LEN};

use crate::desc::{Cqe, CqeKind, DESC_LEN, Op, Sqe, Status};
use crate::engine::{Broken, ClientId, Engine, EngineConfig};
use crate::ring::{Consumer, Producer, RingMemory};

struct TestClient {
    id: ClientId,
    sq: Producer,
    cq: Consumer,
    mem: Box<[u8]>,
    _rings: (RingMemory, RingMemory),
    next_user: u64,
}

impl TestClient {
    fn submit_raw(&mut self, b: &[u8; DESC_LEN]) {
        assert_eq!(self.sq.push(b), Ok(true), "submission ring full");
    }

    fn submit(&mut self, op: Op) -> u64 {
        self.next_user += 1;
        let user = self.next_user;
        self.submit_raw(&Sqe { op, user }.encode());
        user
    }

    fn poll(&mut self) -> Option<Cqe> {
        let mut b = [0u8; DESC_LEN];
        self.cq
            .pop(&mut b)
            .unwrap()
            .then(|| Cqe::decode(&b).unwrap())
    }
}

struct Side {
    eng: Engine,
    addr: SocketAddr,
    clients: Vec<TestClient>,
}

impl Side {
    fn new(port: u16, cfg: EngineConfig) -> Side {
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
        let ep = Endpoint::new(Config::default(), addr, u64::from(port)).unwrap();
        Side {
            eng: Engine::new(ep, cfg),
            addr,
            clients: Vec::new(),
        }
    }

    /// A client with rings of `cap` slots and `mem_len` bytes of attached memory (segment 0).
    fn client(&mut self, cap: u32, mem_len: usize) -> usize {
        let sqm = RingMemory::new(cap, DESC_LEN).unwrap();
        let cqm = RingMemory::new(cap, DESC_LEN).unwrap();
        // SAFETY: the ring memory lives in the client, which outlives the engine's use of it
        // (each test drops sides whole).
        let (sq_p, sq_c, cq_p, cq_c) = unsafe {
            (
                sqm.producer().unwrap(),
                sqm.consumer().unwrap(),
                cqm.producer().unwrap(),
                cqm.consumer().unwrap(),
            )
        };
        let id = self.eng.attach(sq_c, cq_p).unwrap();
        let mut mem = vec![0u8; mem_len].into_boxed_slice();
        let ptr = NonNull::new(mem.as_mut_ptr()).unwrap();
        // SAFETY: the boxed memory lives in the client; it is not moved by moving the box.
        let seg = unsafe { self.eng.add_segment(id, ptr, mem_len as u64) }.unwrap();
        assert_eq!(seg, 0);
        self.clients.push(TestClient {
            id,
            sq: sq_p,
            cq: cq_c,
            mem,
            _rings: (sqm, cqm),
            next_user: 0,
        });
        self.clients.len() - 1
    }
}

struct Net {
    a: Side,
    b: Side,
    now: Instant,
    /// Drop every datagram whose index modulo this is 0 (0: none).
    drop_every: u64,
    sent: u64,
}

impl Net {
    fn new() -> Net {
        Net::with(EngineConfig::default())
    }

    fn with(cfg: EngineConfig) -> Net {
        Net {
            a: Side::new(4000, cfg.clone()),
            b: Side::new(5000, cfg),
            now: Instant::ZERO,
            drop_every: 0,
            sent: 0,
        }
    }

    /// One round: both engines take submissions, exchange datagrams, fire timers, route
    /// events and flush completions.
    fn step(&mut self) {
        self.now += Duration::from_micros(5);
        let now = self.now;
        for side in [&mut self.a, &mut self.b] {
            side.eng.submit(now);
            let ep = side.eng.endpoint();
            if ep.poll_timeout().is_some_and(|t| t <= now) {
                ep.handle_timeout(now);
            }
        }
        let mut a_to_b = Vec::new();
        let mut b_to_a = Vec::new();
        for (side, out) in [(&mut self.a, &mut a_to_b), (&mut self.b, &mut b_to_a)] {
            let ep = side.eng.endpoint();
            let mut hdr = [0u8; MAX_HEADER_LEN];
            while let Some(t) = ep.poll_transmit(now, &mut hdr) {
                let mut d = hdr[..t.header_len].to_vec();
                if let Payload::Region { .. } = t.payload {
                    d.extend_from_slice(ep.payload(&t.payload).unwrap());
                }
                out.push(d);
            }
        }
        let (a_addr, b_addr) = (self.a.addr, self.b.addr);
        for (side, from, inbox) in [(&mut self.b, a_addr, a_to_b), (&mut self.a, b_addr, b_to_a)] {
            for d in inbox {
                self.sent += 1;
                if self.drop_every > 0 && self.sent.is_multiple_of(self.drop_every) {
                    continue;
                }
                let meta = RxMeta {
                    from,
                    ecn: Ecn::NotEct,
                    virtual_payload: false,
                    int_hop: None,
                };
                side.eng.endpoint().handle(now, meta, &d);
            }
        }
        for side in [&mut self.a, &mut self.b] {
            side.eng.route_events(now);
            side.eng.flush(&mut Vec::new());
        }
    }

    /// Step until `side`'s client `c` has a completion (at most `rounds` rounds).
    fn wait(&mut self, on_a: bool, c: usize, rounds: usize) -> Cqe {
        for _ in 0..rounds {
            let side = if on_a { &mut self.a } else { &mut self.b };
            if let Some(cqe) = side.clients[c].poll() {
                return cqe;
            }
            self.step();
        }
        panic!("no completion for client {c} after {rounds} rounds");
    }

    /// Connect A's client `ca` to B's client `cb` (which listens on `key`): the two handles.
    fn connect(&mut self, ca: usize, cb: usize, key: u64) -> (u32, u32) {
        let u = self.b.clients[cb].submit(Op::Listen {
            key,
            secret: None,
            span: 1,
        });
        let l = self.wait(false, cb, 10);
        assert_eq!((l.user, l.status), (u, Status::Ok));
        let remote = self.b.addr;
        let u = self.a.clients[ca].submit(Op::Connect {
            remote,
            user_data: key,
            secret: None,
        });
        let c = self.wait(true, ca, 1000);
        assert_eq!(
            (c.user, c.kind, c.status),
            (u, CqeKind::Connected, Status::Ok)
        );
        let acc = self.wait(false, cb, 1000);
        assert_eq!((acc.kind, acc.tag), (CqeKind::Accepted, key));
        assert_eq!(acc.addr, Some(self.a.addr));
        (c.conn, acc.conn)
    }

    fn register(&mut self, on_a: bool, c: usize, offset: u64, len: u64, remote_write: bool) -> Cqe {
        let side = if on_a { &mut self.a } else { &mut self.b };
        side.clients[c].submit(Op::Register {
            segment: 0,
            offset,
            len,
            remote_write,
        });
        let r = self.wait(on_a, c, 10);
        assert_eq!((r.kind, r.status), (CqeKind::Registered, Status::Ok));
        r
    }
}

#[test]
fn send_receive_and_write_through_rings() {
    let mut n = Net::new();
    let ca = n.a.client(64, 1 << 20);
    let cb = n.b.client(64, 1 << 20);
    let (ha, hb) = n.connect(ca, cb, 7);
    for (i, x) in n.a.clients[ca].mem.iter_mut().enumerate() {
        *x = (i * 7 + 3) as u8;
    }
    let ra = n.register(true, ca, 0, 1 << 20, false).region;
    let rb = n.register(false, cb, 0, 1 << 20, true);
    let recv = n.b.clients[cb].submit(Op::Recv {
        conn: hb,
        region: rb.region,
        offset: 0,
        len: 1 << 19,
        tag: Some(42),
    });
    let send = n.a.clients[ca].submit(Op::Send {
        conn: ha,
        region: ra,
        offset: 0,
        len: 300_000,
        tag: 42,
    });
    let s = n.wait(true, ca, 100_000);
    assert_eq!(
        (s.user, s.kind, s.status, s.conn),
        (send, CqeKind::Send, Status::Ok, ha)
    );
    let r = n.wait(false, cb, 100_000);
    assert_eq!(
        (r.user, r.kind, r.status, r.len, r.tag),
        (recv, CqeKind::Recv, Status::Ok, 300_000, 42)
    );
    assert_eq!(
        n.b.clients[cb].mem[..300_000],
        n.a.clients[ca].mem[..300_000]
    );
    // A one-sided write with notify into B's region.
    let w = n.a.clients[ca].submit(Op::Write {
        conn: ha,
        region: ra,
        offset: 1000,
        len: 5000,
        rkey: rb.tag as u32,
        remote_offset: 600_000,
        notify: Some(99),
    });
    let wc = n.wait(true, ca, 100_000);
    assert_eq!(
        (wc.user, wc.kind, wc.status),
        (w, CqeKind::Write, Status::Ok)
    );
    let got = n.wait(false, cb, 100_000);
    assert_eq!(
        (got.kind, got.tag, got.len, got.conn),
        (CqeKind::WriteReceived, 99, 5000, hb)
    );
    assert_eq!(
        n.b.clients[cb].mem[600_000..605_000],
        n.a.clients[ca].mem[1000..6000]
    );
    // The connection's counters cross the ring too; another client's handle does not.
    let u = n.a.clients[ca].submit(Op::Stats { conn: ha });
    let st = n.wait(true, ca, 10);
    assert_eq!(
        (st.user, st.kind, st.status),
        (u, CqeKind::Stats, Status::Ok)
    );
    let c = st.counters().expect("counters");
    assert!(c.data_packets >= 300_000 / 8192, "{c:?}");
    let other = n.a.client(8, 64);
    let u = n.a.clients[other].submit(Op::Stats { conn: ha });
    let st = n.wait(true, other, 10);
    assert_eq!((st.user, st.status), (u, Status::UnknownConnection));
}

#[test]
fn messages_survive_loss() {
    let mut n = Net::new();
    let ca = n.a.client(64, 1 << 20);
    let cb = n.b.client(64, 1 << 20);
    let (ha, hb) = n.connect(ca, cb, 1);
    n.drop_every = 7;
    for (i, x) in n.a.clients[ca].mem.iter_mut().enumerate() {
        *x = (i % 251) as u8;
    }
    let ra = n.register(true, ca, 0, 1 << 20, false).region;
    let rb = n.register(false, cb, 0, 1 << 20, false).region;
    for k in 0..4u64 {
        n.b.clients[cb].submit(Op::Recv {
            conn: hb,
            region: rb,
            offset: k * 200_000,
            len: 200_000,
            tag: None,
        });
        n.a.clients[ca].submit(Op::Send {
            conn: ha,
            region: ra,
            offset: k * 200_000,
            len: 200_000,
            tag: k,
        });
    }
    let mut tags = Vec::new();
    while tags.len() < 4 {
        let r = n.wait(false, cb, 2_000_000);
        assert_eq!((r.kind, r.status), (CqeKind::Recv, Status::Ok));
        tags.push(r.tag);
    }
    // Messages complete as they are whole (loss reorders completions); each landed in the
    // receive posted for it.
    tags.sort_unstable();
    assert_eq!(tags, [0, 1, 2, 3]);
    assert_eq!(
        n.b.clients[cb].mem[..800_000],
        n.a.clients[ca].mem[..800_000]
    );
}

#[test]
fn clients_see_only_their_own_handles() {
    let mut n = Net::new();
    let c1 = n.a.client(64, 4096);
    let c2 = n.a.client(64, 4096);
    let cb = n.b.client(64, 4096);
    let (h1, _) = n.connect(c1, cb, 3);
    let r1 = n.register(true, c1, 0, 4096, false).region;
    let r2 = n.register(true, c2, 0, 1024, false).region;
    let u = n.a.clients[c1].submit(Op::Listen {
        key: 3,
        secret: None,
        span: 1,
    });
    assert_eq!(n.wait(true, c1, 10).user, u);
    let cases = [
        // Client 1's connection and region, named by client 2.
        (
            Op::Send {
                conn: h1,
                region: r1,
                offset: 0,
                len: 8,
                tag: 0,
            },
            Status::UnknownConnection,
        ),
        // Its own region, someone else's connection.
        (
            Op::Recv {
                conn: h1,
                region: r2,
                offset: 0,
                len: 8,
                tag: None,
            },
            Status::UnknownConnection,
        ),
        (Op::Close { conn: h1 }, Status::UnknownConnection),
        (Op::Deregister { region: 0 }, Status::UnknownRegion),
        (
            Op::Register {
                segment: 1,
                offset: 0,
                len: 8,
                remote_write: false,
            },
            Status::UnknownRegion,
        ),
        (
            Op::Register {
                segment: 0,
                offset: 4000,
                len: 200,
                remote_write: false,
            },
            Status::OutOfBounds,
        ),
        (
            Op::Register {
                segment: 0,
                offset: u64::MAX,
                len: 2,
                remote_write: false,
            },
            Status::OutOfBounds,
        ),
        (Op::Unlisten { key: 3 }, Status::UnknownConnection),
        (
            Op::Listen {
                key: 3,
                secret: None,
                span: 1,
            },
            Status::InUse,
        ),
    ];
    for (op, want) in cases {
        let u = n.a.clients[c2].submit(op);
        let c = n.wait(true, c2, 10);
        assert_eq!((c.user, c.status), (u, want), "{op:?}");
    }
    // Client 1's own handles work; out of bounds on a valid region is refused.
    let u = n.a.clients[c1].submit(Op::Send {
        conn: h1,
        region: r1,
        offset: 4000,
        len: 200,
        tag: 0,
    });
    let c = n.wait(true, c1, 10);
    assert_eq!(
        (c.user, c.kind, c.status),
        (u, CqeKind::Send, Status::OutOfBounds)
    );
    // A closed handle is stale: its slot's next occupant has another handle.
    n.a.clients[c1].submit(Op::Close { conn: h1 });
    assert_eq!(n.wait(true, c1, 10).status, Status::Ok);
    n.a.clients[c1].submit(Op::Close { conn: h1 });
    assert_eq!(n.wait(true, c1, 10).status, Status::UnknownConnection);
    let st = n.a.eng.stats();
    assert_eq!(st.refused, 11);
}

#[test]
fn malformed_submissions_are_refused_and_counted() {
    let mut n = Net::new();
    let c = n.a.client(64, 64);
    let mut b = [0u8; DESC_LEN];
    b[0] = 0xee;
    b[8] = 5;
    n.a.clients[c].submit_raw(&b);
    let r = n.wait(true, c, 10);
    assert_eq!(
        (r.user, r.kind, r.status),
        (5, CqeKind::Done, Status::BadDescriptor)
    );
    let u = n.a.clients[c].submit(Op::Nop);
    assert_eq!(n.wait(true, c, 10).user, u, "the client goes on");
    assert_eq!(n.a.eng.stats().refused, 1);
}

#[test]
fn a_full_completion_ring_backlogs_then_breaks_a_client_that_never_reads() {
    let cfg = EngineConfig {
        max_backlog: 8,
        ..EngineConfig::default()
    };
    let mut n = Net::with(cfg);
    let c = n.a.client(4, 64);
    let other = n.a.client(64, 64);
    // Four nops fill the completion ring; the rest wait in the backlog, and the engine stops
    // taking this client's submissions until it reads.
    for _ in 0..4 {
        n.a.clients[c].submit(Op::Nop);
    }
    n.step();
    for _ in 0..4 {
        n.a.clients[c].submit(Op::Nop);
    }
    n.step();
    n.step();
    assert_eq!(n.a.eng.stats().completions, 4);
    assert_eq!(
        n.a.eng.stats().backlogged,
        1,
        "one waits, the rest stay submitted"
    );
    let mut got = Vec::new();
    for _ in 0..20 {
        while let Some(x) = n.a.clients[c].poll() {
            got.push(x.user);
        }
        n.step();
    }
    assert_eq!(got, (1..=8).collect::<Vec<_>>());
    assert_eq!(n.a.eng.broken(n.a.clients[c].id), None);
    // A peer-driven stream of completions to a client that never reads breaks it, and only it.
    let cb = n.b.client(64, 1 << 16);
    let (ha, hb) = n.connect(c, cb, 9);
    while n.a.clients[c].poll().is_some() {}
    let rb = n.register(false, cb, 0, 1 << 16, false).region;
    let ra = {
        n.a.clients[c].submit(Op::Register {
            segment: 0,
            offset: 0,
            len: 64,
            remote_write: true,
        });
        n.step();
        n.a.clients[c].poll().unwrap()
    };
    for _ in 0..20 {
        n.b.clients[cb].submit(Op::Write {
            conn: hb,
            region: rb,
            offset: 0,
            len: 8,
            rkey: ra.tag as u32,
            remote_offset: 0,
            notify: Some(1),
        });
        for _ in 0..200 {
            n.step();
        }
    }
    let _ = ha;
    assert_eq!(
        n.a.eng.broken(n.a.clients[c].id),
        Some(Broken::CompletionOverflow)
    );
    let u = n.a.clients[other].submit(Op::Nop);
    assert_eq!(
        n.wait(true, other, 10).user,
        u,
        "the other client is served"
    );
}

#[test]
fn detaching_a_client_closes_its_connections_for_the_peer() {
    let mut n = Net::new();
    let ca = n.a.client(64, 64);
    let keep = n.a.client(64, 64);
    let cb = n.b.client(64, 64);
    let (_, hb) = n.connect(ca, cb, 11);
    let (hkeep, hk) = n.connect(keep, cb, 12);
    let id = n.a.clients[ca].id;
    let now = n.now;
    assert!(n.a.eng.detach(now, id).is_some());
    let lost = n.wait(false, cb, 1000);
    assert_eq!((lost.kind, lost.conn), (CqeKind::Closed, hb));
    // The other client's connection still works.
    let rk = n.register(true, keep, 0, 64, false).region;
    let r = n.a.clients[keep].submit(Op::Recv {
        conn: hkeep,
        region: rk,
        offset: 0,
        len: 64,
        tag: None,
    });
    let rb = n.register(false, cb, 0, 64, false).region;
    let u = n.b.clients[cb].submit(Op::Send {
        conn: hk,
        region: rb,
        offset: 0,
        len: 64,
        tag: 0,
    });
    let s = n.wait(false, cb, 10_000);
    assert_eq!((s.user, s.status), (u, Status::Ok));
    let got = n.wait(true, keep, 10_000);
    assert_eq!((got.user, got.status, got.len), (r, Status::Ok, 64));
    // The detached client's rings are gone: its slot can be reused.
    assert_eq!(n.a.eng.clients(), 1);
}

#[test]
fn accepts_nobody_listens_for_are_refused() {
    let mut n = Net::new();
    let ca = n.a.client(64, 64);
    let cb = n.b.client(64, 64);
    let u = n.b.clients[cb].submit(Op::Listen {
        key: 1,
        secret: None,
        span: 1,
    });
    assert_eq!(n.wait(false, cb, 10).user, u);
    let remote = n.b.addr;
    let u = n.a.clients[ca].submit(Op::Connect {
        remote,
        user_data: 2,
        secret: None,
    });
    let c = n.wait(true, ca, 100_000);
    // Refused before or after the handshake completed, depending on timing.
    if c.kind == CqeKind::Connected && c.status == Status::Ok {
        let lost = n.wait(true, ca, 100_000);
        assert_eq!(
            (lost.kind, lost.status),
            (CqeKind::ConnectionLost, Status::Refused)
        );
    } else {
        assert_eq!(
            (c.user, c.kind, c.status),
            (u, CqeKind::Connected, Status::Refused)
        );
    }
    assert_eq!(n.b.eng.stats().unrouted_accepts, 1);
}

#[test]
fn a_corrupted_submission_ring_breaks_only_its_client() {
    let mut n = Net::new();
    let c = n.a.client(4, 64);
    let other = n.a.client(4, 64);
    // The client claims to have produced 1,000 slots into a 4-slot ring.
    let tail = (n.a.clients[c]._rings.0.base_for_test().as_ptr() as usize + 64) as *mut u32;
    // SAFETY: the ring's tail index, inside its memory.
    unsafe { tail.write_volatile(1000) };
    n.step();
    assert!(matches!(
        n.a.eng.broken(n.a.clients[c].id),
        Some(Broken::Ring(crate::ring::RingError::Corrupt { .. }))
    ));
    assert_eq!(n.a.eng.broken_clients(), [n.a.clients[c].id]);
    let u = n.a.clients[other].submit(Op::Nop);
    assert_eq!(n.wait(true, other, 10).user, u);
}

#[test]
fn thousands_of_connections_through_one_engine() {
    let mut n = Net::new();
    let ca = n.a.client(4096, 1 << 16);
    let cb = n.b.client(4096, 1 << 16);
    let u = n.b.clients[cb].submit(Op::Listen {
        key: 5,
        secret: None,
        span: 1,
    });
    assert_eq!(n.wait(false, cb, 10).user, u);
    let count = 2000;
    let remote = n.b.addr;
    for _ in 0..count {
        n.a.clients[ca].submit(Op::Connect {
            remote,
            user_data: 5,
            secret: None,
        });
    }
    let (mut up, mut accepted) = (Vec::new(), Vec::new());
    for _ in 0..20_000 {
        n.step();
        while let Some(c) = n.a.clients[ca].poll() {
            assert_eq!((c.kind, c.status), (CqeKind::Connected, Status::Ok));
            up.push(c.conn);
        }
        while let Some(c) = n.b.clients[cb].poll() {
            assert_eq!(c.kind, CqeKind::Accepted);
            accepted.push(c.conn);
        }
        if up.len() == count && accepted.len() == count {
            break;
        }
    }
    assert_eq!((up.len(), accepted.len()), (count, count));
    up.sort_unstable();
    up.dedup();
    assert_eq!(up.len(), count, "distinct handles");
    // Every connection carries one message.
    let ra = n.register(true, ca, 0, 1 << 16, false).region;
    let rb = n.register(false, cb, 0, 1 << 16, false).region;
    for &h in &accepted {
        n.b.clients[cb].submit(Op::Recv {
            conn: h,
            region: rb,
            offset: 0,
            len: 64,
            tag: None,
        });
    }
    for &h in &up {
        n.a.clients[ca].submit(Op::Send {
            conn: h,
            region: ra,
            offset: 0,
            len: 64,
            tag: 1,
        });
    }
    let mut done = 0;
    for _ in 0..20_000 {
        n.step();
        while let Some(c) = n.b.clients[cb].poll() {
            assert_eq!((c.kind, c.status, c.len), (CqeKind::Recv, Status::Ok, 64));
            done += 1;
        }
        while n.a.clients[ca].poll().is_some() {}
        if done == count {
            break;
        }
    }
    assert_eq!(done, count);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// A client writing arbitrary descriptors never breaks the engine or another client's
    /// transfer, and gets exactly one completion per submission.
    #[test]
    fn arbitrary_submissions_never_hurt_the_engine(descs in proptest::collection::vec(proptest::array::uniform32(any::<u8>()), 1..40), mask in any::<u64>()) {
        let mut n = Net::new();
        let good = n.a.client(64, 1 << 16);
        let evil = n.a.client(64, 1 << 16);
        let cb = n.b.client(64, 1 << 16);
        let (ha, hb) = n.connect(good, cb, 1);
        let (he, _) = n.connect(evil, cb, 2);
        let ra = n.register(true, good, 0, 1 << 16, false).region;
        let rb = n.register(false, cb, 0, 1 << 16, false).region;
        n.b.clients[cb].submit(Op::Recv { conn: hb, region: rb, offset: 0, len: 1 << 16, tag: None });
        n.a.clients[good].submit(Op::Send { conn: ha, region: ra, offset: 0, len: 1 << 16, tag: 0 });
        let mut submitted = 0;
        for (i, half) in descs.iter().enumerate() {
            let mut d = [0u8; DESC_LEN];
            d[..32].copy_from_slice(half);
            d[32..].copy_from_slice(half);
            if mask >> (i % 64) & 1 == 1 {
                // Aim at plausible operations with the evil client's real handles mixed in.
                d[0] %= 10;
                d[2] = 0;
                d[3] = 0;
                d[4..8].copy_from_slice(&[he, ha][i % 2].to_le_bytes());
                d[48..].fill(0);
            }
            n.a.clients[evil].submit_raw(&d);
            submitted += 1;
            if submitted % 32 == 0 {
                n.step();
                while n.a.clients[evil].poll().is_some() {}
            }
        }
        let mut got = Vec::new();
        for _ in 0..100_000 {
            n.step();
            while let Some(c) = n.b.clients[cb].poll() {
                got.push(c);
            }
            if got.iter().any(|c| c.kind == CqeKind::Recv) {
                break;
            }
        }
        let r = got.iter().find(|c| c.kind == CqeKind::Recv).expect("the good transfer completes");
        prop_assert_eq!((r.status, r.len), (Status::Ok, 1 << 16));
        prop_assert_eq!(n.a.eng.broken_clients(), Vec::<ClientId>::new());
    }
}

/// Listen keys with a secret: only connectors holding it get in (no MAC or a wrong one: no
/// answer, the connect times out), while an open key of another client on the same engine
/// stays reachable without one.
#[test]
fn listen_secrets_admit_only_their_holders() {
    const SECRET: u128 = 0x005E_C2E7_0000_1111_2222_3333_4444_5555;
    let mut n = Net::new();
    let ca = n.a.client(64, 4096);
    let cb = n.b.client(64, 4096);
    let open = n.b.client(64, 4096);
    let u = n.b.clients[cb].submit(Op::Listen {
        key: 1,
        secret: Some(SECRET),
        span: 1,
    });
    assert_eq!(n.wait(false, cb, 10).user, u);
    let u = n.b.clients[open].submit(Op::Listen {
        key: 2,
        secret: None,
        span: 1,
    });
    assert_eq!(n.wait(false, open, 10).user, u);
    let remote = n.b.addr;
    let attempt = |n: &mut Net, key: u64, secret: Option<u128>| {
        let u = n.a.clients[ca].submit(Op::Connect {
            remote,
            user_data: key,
            secret,
        });
        let c = n.wait(true, ca, 2_000_000);
        assert_eq!((c.user, c.kind), (u, CqeKind::Connected));
        c.status
    };
    assert_eq!(attempt(&mut n, 1, None), Status::HandshakeTimeout);
    assert_eq!(
        attempt(&mut n, 1, Some(SECRET ^ 1)),
        Status::HandshakeTimeout
    );
    assert!(
        n.b.clients[cb].poll().is_none(),
        "an unauthenticated connect got in"
    );
    assert_eq!(attempt(&mut n, 1, Some(SECRET)), Status::Ok);
    let acc = n.wait(false, cb, 1000);
    assert_eq!((acc.kind, acc.tag), (CqeKind::Accepted, 1));
    assert_eq!(attempt(&mut n, 2, None), Status::Ok);
    let acc = n.wait(false, open, 1000);
    assert_eq!((acc.kind, acc.tag), (CqeKind::Accepted, 2));
    // A key nobody listens on needs a MAC like any other while one key has a secret.
    assert_eq!(attempt(&mut n, 3, None), Status::HandshakeTimeout);
    // Unlisten revokes the secret's admission.
    let u = n.b.clients[cb].submit(Op::Unlisten { key: 1 });
    assert_eq!(n.wait(false, cb, 10).user, u);
    assert_eq!(attempt(&mut n, 1, Some(SECRET)), Status::Refused);
}

/// A client's memory the engine reaches only by copying: a flat byte array standing for
/// another process's address space, with holes (addresses outside `valid`) that fault.
#[derive(Debug, Clone)]
struct FakeProcess {
    mem: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    base: u64,
    hole: core::ops::Range<u64>,
}

impl FakeProcess {
    fn check(&self, addr: u64, len: usize) -> Option<usize> {
        let m = self.mem.lock().unwrap();
        let end = addr.checked_add(len as u64)?;
        let inside = addr >= self.base && end <= self.base + m.len() as u64;
        let holed = addr < self.hole.end && end > self.hole.start;
        (inside && !holed).then(|| (addr - self.base) as usize)
    }
}

impl crate::engine::ForeignMemory for FakeProcess {
    fn read(&mut self, addr: u64, dst: &mut [u8]) -> bool {
        let Some(at) = self.check(addr, dst.len()) else {
            return false;
        };
        dst.copy_from_slice(&self.mem.lock().unwrap()[at..at + dst.len()]);
        true
    }

    fn write(&mut self, addr: u64, src: &[u8]) -> bool {
        let Some(at) = self.check(addr, src.len()) else {
            return false;
        };
        self.mem.lock().unwrap()[at..at + src.len()].copy_from_slice(src);
        true
    }
}

/// Regions in foreign memory: sends are copied in when posted, receives copied out when
/// they complete, bytes intact across the wire; peers may not write into them; addresses
/// the client does not have fail with `Fault` (at registration, at a send, at a receive's
/// copy-out) and never reach another region; the shadow budget is enforced.
#[test]
fn foreign_memory_moves_by_copy_and_faults_cleanly() {
    const BASE: u64 = 0x7f00_0000_0000;
    const LEN: usize = 1 << 20;
    let cfg = EngineConfig {
        max_shadow_bytes: 3 << 20,
        ..EngineConfig::default()
    };
    let mut n = Net::with(cfg);
    let ca = n.a.client(64, 0);
    let cb = n.b.client(64, 0);
    let proc_of = |seed: u8| FakeProcess {
        mem: std::sync::Arc::new(std::sync::Mutex::new(
            (0..LEN).map(|i| (i as u8).wrapping_mul(seed)).collect(),
        )),
        base: BASE,
        hole: BASE + 900_000..BASE + 901_000,
    };
    let pa = proc_of(7);
    let pb = proc_of(0);
    let id_a = n.a.clients[ca].id;
    let id_b = n.b.clients[cb].id;
    assert_eq!(
        n.a.eng.add_foreign_segment(id_a, Box::new(pa.clone())),
        Some(1)
    );
    assert_eq!(
        n.b.eng.add_foreign_segment(id_b, Box::new(pb.clone())),
        Some(1)
    );
    assert_eq!(
        n.b.eng.add_foreign_segment(id_b, Box::new(pb.clone())),
        None
    );
    let (ha, hb) = n.connect(ca, cb, 9);
    let reg = |n: &mut Net, on_a: bool, c: usize, addr: u64, len: u64, rw: bool| {
        let side = if on_a { &mut n.a } else { &mut n.b };
        side.clients[c].submit(Op::Register {
            segment: 1,
            offset: addr,
            len,
            remote_write: rw,
        });
        n.wait(on_a, c, 10)
    };
    assert_eq!(
        reg(&mut n, false, cb, BASE, 4096, true).status,
        Status::Unsupported
    );
    assert_eq!(
        reg(&mut n, true, ca, BASE - 4096, 8192, false).status,
        Status::Fault
    );
    assert_eq!(
        reg(&mut n, true, ca, BASE, LEN as u64 + 1, false).status,
        Status::Fault
    );
    let ra = reg(&mut n, true, ca, BASE, LEN as u64, false);
    assert_eq!(ra.status, Status::Ok);
    let rb = reg(&mut n, false, cb, BASE, LEN as u64, false);
    assert_eq!(rb.status, Status::Ok);
    // The shadow budget (3 MiB): one more MiB fits, the next does not.
    assert_eq!(
        reg(&mut n, true, ca, BASE, LEN as u64, false).status,
        Status::Ok
    );
    assert_eq!(
        reg(&mut n, true, ca, BASE, LEN as u64, false).status,
        Status::Ok
    );
    assert_eq!(
        reg(&mut n, true, ca, BASE, 4096, false).status,
        Status::TooMany
    );
    // 600 KB from A's memory into B's at offset 100,000.
    let recv = n.b.clients[cb].submit(Op::Recv {
        conn: hb,
        region: rb.region,
        offset: 100_000,
        len: 700_000,
        tag: None,
    });
    let send = n.a.clients[ca].submit(Op::Send {
        conn: ha,
        region: ra.region,
        offset: 0,
        len: 600_000,
        tag: 0,
    });
    // The client changes its memory once the send is posted: the engine copied it already.
    n.step();
    pa.mem.lock().unwrap()[..600_000].fill(0xEE);
    let s = n.wait(true, ca, 100_000);
    assert_eq!((s.user, s.status), (send, Status::Ok));
    let r = n.wait(false, cb, 100_000);
    assert_eq!((r.user, r.status, r.len), (recv, Status::Ok, 600_000));
    let want: Vec<u8> = (0..600_000usize)
        .map(|i| (i as u8).wrapping_mul(7))
        .collect();
    assert!(pb.mem.lock().unwrap()[100_000..700_000] == want[..]);
    assert!(pb.mem.lock().unwrap()[..100_000].iter().all(|&x| x == 0));
    // A send over the hole faults at once; nothing is sent.
    let bad = n.a.clients[ca].submit(Op::Send {
        conn: ha,
        region: ra.region,
        offset: 899_000,
        len: 4000,
        tag: 0,
    });
    let s = n.wait(true, ca, 10);
    assert_eq!(
        (s.user, s.kind, s.status),
        (bad, CqeKind::Send, Status::Fault)
    );
    // A receive whose copy-out lands on the hole completes with `Fault`.
    let recv = n.b.clients[cb].submit(Op::Recv {
        conn: hb,
        region: rb.region,
        offset: 899_500,
        len: 4000,
        tag: None,
    });
    let send = n.a.clients[ca].submit(Op::Send {
        conn: ha,
        region: ra.region,
        offset: 0,
        len: 4000,
        tag: 0,
    });
    assert_eq!(n.wait(true, ca, 100_000).user, send);
    let r = n.wait(false, cb, 100_000);
    assert_eq!(
        (r.user, r.kind, r.status),
        (recv, CqeKind::Recv, Status::Fault)
    );
    // Out of the region's bounds: refused before any copy.
    n.a.clients[ca].submit(Op::Send {
        conn: ha,
        region: ra.region,
        offset: LEN as u64 - 10,
        len: 20,
        tag: 0,
    });
    assert_eq!(n.wait(true, ca, 10).status, Status::OutOfBounds);
    // Deregistering frees the budget.
    n.a.clients[ca].submit(Op::Deregister { region: ra.region });
    assert_eq!(n.wait(true, ca, 10).status, Status::Ok);
    assert_eq!(reg(&mut n, true, ca, BASE, 4096, false).status, Status::Ok);
}

/// A communicator's listen: one range of keys (rank `r` connects with `first + r`) counts once
/// against `max_listen_keys` however many ranks it covers, routes every key in it to its
/// client, and nothing outside it; another client may not listen on an overlapping range, a
/// descriptor whose range overflows is refused, and unlistening the range frees it.
#[test]
fn a_listen_range_takes_every_key_in_it_and_counts_once() {
    const FIRST: u64 = 1_000;
    const RANKS: u32 = 200;
    let cfg = EngineConfig {
        max_listen_keys: 2,
        ..EngineConfig::default()
    };
    let mut n = Net::with(cfg);
    let ca = n.a.client(512, 64);
    let cb = n.b.client(512, 64);
    let other = n.b.client(64, 64);
    let listen = |n: &mut Net, c: usize, key: u64, span: u32| {
        let u = n.b.clients[c].submit(Op::Listen {
            key,
            secret: None,
            span,
        });
        let r = n.wait(false, c, 10);
        assert_eq!(r.user, u);
        r.status
    };
    assert_eq!(listen(&mut n, cb, FIRST, RANKS), Status::Ok);
    // A repeat of the same range is no new listen.
    assert_eq!(listen(&mut n, cb, FIRST, RANKS), Status::Ok);
    // Overlaps, from either side and from inside, are refused.
    for (key, span) in [(FIRST - 5, 10), (FIRST + 199, 3), (FIRST + 50, 1)] {
        assert_eq!(
            listen(&mut n, other, key, span),
            Status::InUse,
            "{key}+{span}"
        );
    }
    // Just past either end is free.
    assert_eq!(
        listen(&mut n, other, FIRST + u64::from(RANKS), 1),
        Status::Ok
    );
    assert_eq!(listen(&mut n, other, FIRST - 1, 1), Status::Ok);
    assert_eq!(listen(&mut n, other, 7, 1), Status::TooMany);
    // Every key of the range reaches `cb`, with the key as the connection's tag.
    let remote = n.b.addr;
    let mut want = Vec::new();
    for r in (0..u64::from(RANKS))
        .step_by(13)
        .chain([u64::from(RANKS) - 1])
    {
        n.a.clients[ca].submit(Op::Connect {
            remote,
            user_data: FIRST + r,
            secret: None,
        });
        want.push(FIRST + r);
    }
    let mut got = Vec::new();
    for _ in 0..2_000_000 {
        if let Some(c) = n.b.clients[cb].poll()
            && c.kind == CqeKind::Accepted
        {
            assert_eq!(c.status, Status::Ok);
            got.push(c.tag);
            if got.len() == want.len() {
                break;
            }
        }
        n.step();
    }
    got.sort_unstable();
    assert_eq!(got, want);
    assert_eq!(n.b.eng.stats().unrouted_accepts, 0);
    // A range that would run past the last key is refused at decoding.
    let mut raw = Sqe {
        op: Op::Listen {
            key: u64::MAX - 2,
            secret: None,
            span: 1,
        },
        user: 9,
    }
    .encode();
    raw[20..24].copy_from_slice(&5u32.to_le_bytes());
    assert_eq!(Sqe::decode(&raw), Err(crate::desc::DecodeError::Reserved));
    // Unlisten the range: its keys are free for another client.
    let u = n.b.clients[cb].submit(Op::Unlisten { key: FIRST });
    assert_eq!(n.wait(false, cb, 10).user, u);
    n.b.clients[other].submit(Op::Unlisten { key: FIRST - 1 });
    n.wait(false, other, 10);
    assert_eq!(listen(&mut n, other, FIRST + 50, 1), Status::Ok);
}
