//! Kernel-side loss between two network namespaces.
//!
//! Each test creates two namespaces (names carry the test process id), a veth pair with one end
//! in each (`10.77.N.1/24` and `10.77.N.2/24`, MTU 9000 on both ends), and on *each* end an
//! nftables netdev ingress chain that counts every packet and drops 1 % at random
//! (`numgen random mod 100 < 1 counter drop`). Nothing outside the namespaces it creates is
//! touched, and a drop guard deletes them (which removes the veth pair) whatever happens.
//!
//! A `weir-test-peer exchange` runs inside each namespace (`ip netns exec`, bound to its
//! namespace's address) and both send 16 × 1 MiB and 2 × 8 MiB to the other at once, checking
//! every byte, as in `loopback_udp.rs`; the engine's `max_payload` is 8192 so datagrams fit the
//! 9000-byte MTU. The test asserts both peers succeeded and that the nft rules really dropped
//! packets (their counters), and prints the counters. Weir and go-back-N modes.
//!
//! Needs root, `ip` and `nft`. When any of that is missing, or the kernel refuses a step, the
//! test prints `SKIPPED netns_loss: <reason>` to stderr and returns (CI runs as root with
//! both installed, so there it runs).
// An I/O test: reads the clock, spawns processes and reader threads.
#![allow(clippy::disallowed_methods)]

use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use weir_bench::process::{Peer, json_u64 as num, serial};
use weir_bench::report_skipped;

/// The peer binary, built by cargo for the tests of this package.
const PEER_BIN: &str = env!("CARGO_BIN_EXE_weir-test-peer");

/// One namespace pair at a time: each run is two busy-polling processes.
static SERIAL: Mutex<()> = Mutex::new(());

const SIZES: &str = "1Mx16,8Mx2";
const TOTAL: u64 = 16 * (1 << 20) + 2 * (8 << 20);
const RESULT_TIMEOUT: Duration = Duration::from_secs(240);

#[test]
#[ignore = "needs root and network namespaces; run by scripts/test.sh (or: cargo test -p weir-tests --test netns_loss -- --ignored)"]
fn netns_loss_weir() {
    serial(&SERIAL, || run("weir", 1));
}

#[test]
#[ignore = "needs root and network namespaces; run by scripts/test.sh (or: cargo test -p weir-tests --test netns_loss -- --ignored)"]
fn netns_loss_go_back_n() {
    serial(&SERIAL, || run("gbn", 2));
}

fn run(mode: &str, index: u8) {
    let net = match Netns::setup(index) {
        Ok(n) => n,
        Err(why) => {
            let install = if why.contains("`nft`") {
                Some("apt-get install -y nftables")
            } else if why.contains("`ip`") {
                Some("apt-get install -y iproute2")
            } else {
                None
            };
            report_skipped(&format!("netns_loss ({mode})"), &why, install);
            return;
        }
    };
    let t0 = Instant::now();
    let spawn = |role: &str, ns: &str, ip: &str| {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, PEER_BIN, "exchange", "--role", role])
            .args(["--mode", mode, "--bind", ip, "--sizes", SIZES])
            .args(["--max-payload", "8192", "--timeout-s", "200"]);
        Peer::spawn(&format!("peer {role} in {ns}"), cmd).unwrap_or_else(|e| panic!("{e}"))
    };
    let mut a = spawn("a", &net.ns[0], &net.ip[0]);
    let mut b = spawn("b", &net.ns[1], &net.ip[1]);
    let addr_a = a
        .expect("ADDR ", Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    let addr_b = b
        .expect("ADDR ", Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(addr_a.starts_with(&format!("{}:", net.ip[0])), "{addr_a}");
    assert!(addr_b.starts_with(&format!("{}:", net.ip[1])), "{addr_b}");
    a.send(&format!("PEER {addr_b}"));
    b.send(&format!("PEER {addr_a}"));
    let ra = a.json::<Value>(RESULT_TIMEOUT);
    let rb = b.json::<Value>(RESULT_TIMEOUT);
    let sa = a.finish(Duration::from_secs(10));
    let sb = b.finish(Duration::from_secs(10));
    let counters = [net.counters(0), net.counters(1)];
    let ra = ra.unwrap_or_else(|e| panic!("{mode}: {e}\ncounters {counters:?}"));
    let rb = rb.unwrap_or_else(|e| panic!("{mode}: {e}\ncounters {counters:?}"));
    assert!(
        ra["ok"] == true && rb["ok"] == true,
        "{mode}: a peer failed (nft counters {counters:?})\npeer a: {ra}\nstderr of a:\n{}\n\
         peer b: {rb}\nstderr of b:\n{}",
        a.stderr(),
        b.stderr()
    );
    for r in [&ra, &rb] {
        assert_eq!(num(r, &["bytes_sent"]), TOTAL, "{r}");
        assert_eq!(num(r, &["bytes_received"]), TOTAL, "{r}");
    }
    assert!(sa.is_some_and(|s| s.success()), "peer a exit {sa:?}");
    assert!(sb.is_some_and(|s| s.success()), "peer b exit {sb:?}");

    let mut dropped = 0;
    for (i, c) in counters.iter().enumerate() {
        let (seen, drop) = c
            .as_ref()
            .unwrap_or_else(|e| panic!("reading the nft counters in {}: {e}", net.ns[i]));
        eprintln!(
            "{mode}: nft ingress of {} ({}): {seen} packets, {drop} dropped ({:.2} %)",
            net.dev[i],
            net.ns[i],
            *drop as f64 * 100.0 / (*seen).max(1) as f64
        );
        assert!(*seen > 0, "the counting rule in {} saw nothing", net.ns[i]);
        dropped += drop;
    }
    assert!(
        dropped > 0,
        "{mode}: the nft rules dropped nothing: {counters:?}"
    );
    for (name, r, other) in [("a", &ra, &rb), ("b", &rb, &ra)] {
        eprintln!(
            "{mode} peer {name}: {} ms, {} data pkts, {} retx, {} rto; udp tx {} datagrams, the \
             other side received {} ({} GSO batches, {} GRO buffers)",
            r["elapsed_ms"].as_f64().unwrap_or(0.0).round(),
            num(r, &["conn", "data_packets"]),
            num(r, &["conn", "retransmits"]),
            num(r, &["conn", "rto_events"]),
            num(r, &["host", "udp_tx_datagrams"]),
            num(other, &["host", "udp_rx_datagrams"]),
            num(r, &["host", "udp_tx_gso_batches"]),
            num(other, &["host", "udp_rx_gro_buffers"]),
        );
    }
    eprintln!("{mode}: total {:?}", t0.elapsed());
}

/// Two namespaces joined by a veth pair with a lossy ingress chain on each end; deleted on drop.
#[derive(Debug)]
struct Netns {
    ns: [String; 2],
    dev: [String; 2],
    ip: [String; 2],
    /// Namespaces that exist (and must be deleted).
    created: Vec<String>,
}

impl Netns {
    /// Build it; `Err` carries why it cannot be built here (the test is then skipped).
    fn setup(index: u8) -> Result<Netns, String> {
        let euid = effective_uid()?;
        if euid != 0 {
            return Err(format!("needs root (effective uid {euid})"));
        }
        sh(Command::new("ip").arg("-V")).map_err(|e| format!("no usable `ip`: {e}"))?;
        sh(Command::new("nft").arg("--version")).map_err(|e| format!("no usable `nft`: {e}"))?;
        let pid = std::process::id();
        let subnet = (pid % 200) as u8 + index;
        let mut n = Netns {
            ns: [
                format!("weir-{pid}-{index}a"),
                format!("weir-{pid}-{index}b"),
            ],
            dev: [format!("w{pid}{index}a"), format!("w{pid}{index}b")],
            ip: [format!("10.77.{subnet}.1"), format!("10.77.{subnet}.2")],
            created: Vec::new(),
        };
        for ns in n.ns.clone() {
            sh(Command::new("ip").args(["netns", "add", &ns]))
                .map_err(|e| format!("`ip netns add {ns}` failed: {e}"))?;
            n.created.push(ns);
        }
        let (ns_b, dev_a, dev_b) = (&n.ns[1], &n.dev[0], &n.dev[1]);
        // Created inside namespace a with its peer end directly in b: the veth pair never
        // exists in the host's namespace.
        n.ip(
            0,
            &[
                "link", "add", dev_a, "type", "veth", "peer", "name", dev_b, "netns", ns_b,
            ],
        )?;
        for i in 0..2 {
            let (dev, ip) = (&n.dev[i], &n.ip[i]);
            n.ip(i, &["addr", "add", &format!("{ip}/24"), "dev", dev])?;
            n.ip(i, &["link", "set", dev, "mtu", "9000", "up"])?;
            n.ip(i, &["link", "set", "lo", "up"])?;
            n.nft(i, &["add", "table", "netdev", "weirloss"])?;
            let chain =
                format!("{{ type filter hook ingress device {dev} priority 0; policy accept; }}");
            n.nft(
                i,
                &["add", "chain", "netdev", "weirloss", "ingress", &chain],
            )?;
            n.nft(
                i,
                &["add", "rule", "netdev", "weirloss", "ingress", "counter"],
            )?;
            n.nft(
                i,
                &[
                    "add", "rule", "netdev", "weirloss", "ingress", "numgen", "random", "mod",
                    "100", "<", "1", "counter", "drop",
                ],
            )?;
        }
        Ok(n)
    }

    /// `ip -n NS ARGS` for side `i`.
    fn ip(&self, i: usize, args: &[&str]) -> Result<String, String> {
        sh(Command::new("ip").args(["-n", &self.ns[i]]).args(args))
            .map_err(|e| format!("`ip -n {} {}` failed: {e}", self.ns[i], args.join(" ")))
    }

    /// `nft ARGS` inside side `i`'s namespace.
    fn nft(&self, i: usize, args: &[&str]) -> Result<String, String> {
        sh(Command::new("ip")
            .args(["netns", "exec", &self.ns[i], "nft"])
            .args(args))
        .map_err(|e| format!("`nft {}` in {} failed: {e}", args.join(" "), self.ns[i]))
    }

    /// (packets seen, packets dropped) by side `i`'s ingress chain.
    fn counters(&self, i: usize) -> Result<(u64, u64), String> {
        let out = self.nft(i, &["-j", "list", "chain", "netdev", "weirloss", "ingress"])?;
        let v: Value = serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))?;
        let (mut seen, mut dropped) = (None, None);
        for item in v["nftables"].as_array().into_iter().flatten() {
            let Some(expr) = item["rule"]["expr"].as_array() else {
                continue;
            };
            let packets = expr.iter().find_map(|e| e["counter"]["packets"].as_u64());
            if expr.iter().any(|e| e.get("drop").is_some()) {
                dropped = packets;
            } else {
                seen = packets;
            }
        }
        match (seen, dropped) {
            (Some(s), Some(d)) => Ok((s, d)),
            _ => Err(format!("counters not found in {out}")),
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for ns in self.created.drain(..) {
            if let Err(e) = sh(Command::new("ip").args(["netns", "del", &ns])) {
                eprintln!("netns_loss: cleaning up {ns}: {e}");
            }
        }
    }
}

/// Run a command to completion; its stdout, or what went wrong (with its stderr).
fn sh(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn effective_uid() -> Result<u32, String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("cannot read /proc/self/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|euid| euid.parse().ok())
        .ok_or_else(|| "no Uid line in /proc/self/status".to_string())
}
