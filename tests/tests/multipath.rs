//! Multipath spraying: Weir mode spreads a connection's packets over all its entropy values,
//! stops using dead ones (except for occasional probes), uses lossy ones less, and the
//! go-back-N baseline keeps to a single path.

use std::collections::BTreeMap;

use weir_base::Duration;
use weir_tests::{Fate, Link, Net};
use weir_transport::{Config, ConnId, Event, Mode, PathStats, WorkRequest};
use weir_wire::{Flags, Opcode, PayloadMode};

const MIB: u64 = 1 << 20;

fn config(mode: Mode) -> Config {
    let mut c = if mode == Mode::GoBackN {
        Config::go_back_n()
    } else {
        Config::default()
    };
    c.paths = 8;
    c.min_rto = Duration::from_micros(200);
    c.initial_rto = Duration::from_micros(500);
    c
}

/// A one-way transfer of `count` messages of `size` bytes from endpoint 0 to 1 over a virtual
/// link: the sender's per-path counters after `warmup` and at the end.
struct Transfer {
    net: Net,
    conn: ConnId,
    early: Vec<PathStats>,
    end: Vec<PathStats>,
}

/// Connect and post the transfer; returns the net and the sender's connection.
fn start(config: Config, link: Link, count: usize, size: u64) -> (Net, ConnId) {
    let link = Link {
        virtual_payload: true,
        ..link
    };
    let mut net = Net::new(2, config, link, 21);
    let (c0, c1) = net
        .connect(0, 1, Duration::from_millis(50))
        .expect("connect");
    let (src, _) = net.region(0, size as usize, |_| 0, false);
    let (dst, _) = net.region(1, size as usize, |_| 0, false);
    for m in 0..count {
        let now = net.now;
        net.eps[1]
            .post(
                now,
                c1,
                WorkRequest::Recv {
                    region: dst,
                    offset: 0,
                    len: size,
                    tag: None,
                },
            )
            .unwrap();
        net.eps[0]
            .post(
                now,
                c0,
                WorkRequest::Send {
                    region: src,
                    offset: 0,
                    len: size,
                    tag: m as u64,
                },
            )
            .unwrap();
    }
    (net, c0)
}

fn all_done(net: &Net, count: usize) -> bool {
    net.completions(0).count() >= count && net.completions(1).count() >= count
}

/// Run for `d` of virtual time; the transfer must still be going.
fn run_for(net: &mut Net, count: usize, d: Duration) {
    let done = net.run_until(d, |n| all_done(n, count));
    assert!(!done, "finished within {d}");
}

/// Run to the end; every completion must succeed.
fn finish(net: &mut Net, conn: ConnId, count: usize) {
    let done = net.run_until(Duration::from_secs(10), |n| all_done(n, count));
    for ep in 0..2 {
        for e in &net.events[ep] {
            assert!(
                !matches!(e, Event::ConnectionLost { .. }),
                "endpoint {ep}: {e:?}"
            );
        }
        for c in net.completions(ep) {
            assert_eq!(c.status, Ok(()), "{c:?}");
        }
    }
    assert!(
        done,
        "transfer did not finish: {:?}",
        net.eps[0].conn_stats(conn)
    );
}

fn transfer(config: Config, link: Link, count: usize, size: u64, warmup: Duration) -> Transfer {
    let (mut net, conn) = start(config, link, count, size);
    run_for(&mut net, count, warmup);
    let early = net.eps[0].path_stats(conn).unwrap();
    finish(&mut net, conn, count);
    let end = net.eps[0].path_stats(conn).unwrap();
    Transfer {
        net,
        conn,
        early,
        end,
    }
}

/// Packets sent on each path between the two snapshots.
fn sent_between(early: &[PathStats], end: &[PathStats]) -> Vec<u64> {
    early
        .iter()
        .zip(end)
        .map(|(a, b)| b.sent - a.sent)
        .collect()
}

#[test]
fn sprays_over_every_path() {
    let t = transfer(
        config(Mode::Weir),
        Link::default(),
        16,
        MIB,
        Duration::from_micros(100),
    );
    let paths = &t.end;
    assert_eq!(paths.len(), 8);
    let total: u64 = paths.iter().map(|p| p.sent).sum();
    let data = t.net.eps[0].conn_stats(t.conn).unwrap().data_packets;
    assert_eq!(total, data, "lossless: every packet sent once");
    for (i, p) in paths.iter().enumerate() {
        // Round-robin in bursts: every path within one burst of an equal share.
        let share = p.sent as f64 / total as f64;
        assert!(
            (share - 0.125).abs() < 0.01,
            "path {i} carried {:.3} of the packets: {paths:?}",
            share
        );
        assert_eq!(p.delivered, p.sent, "path {i}: {p:?}");
        assert_eq!(p.lost, 0);
    }
    // The entropy values on the wire are exactly the path numbers, with the same counts.
    let wire: BTreeMap<u16, u64> = t.net.entropy_counts(0);
    let engine: BTreeMap<u16, u64> = paths
        .iter()
        .enumerate()
        .map(|(i, p)| (i as u16, p.sent))
        .collect();
    assert_eq!(wire, engine);
}

#[test]
fn go_back_n_uses_one_path() {
    for cfg in [config(Mode::GoBackN), {
        // Even when asked to spray, the baseline keeps to one entropy value.
        let mut c = config(Mode::GoBackN);
        c.paths = 8;
        c
    }] {
        let link = Link {
            loss: 0.01,
            ..Link::default()
        };
        let t = transfer(cfg, link, 8, MIB, Duration::from_micros(100));
        assert_eq!(t.end.len(), 1, "{:?}", t.end);
        let wire = t.net.entropy_counts(0);
        assert_eq!(
            wire.len(),
            1,
            "go-back-N data on several entropies: {wire:?}"
        );
        let data = t.net.eps[0].conn_stats(t.conn).unwrap();
        assert_eq!(wire.values().sum::<u64>(), t.end[0].sent);
        assert_eq!(t.end[0].sent, data.data_packets + data.retransmits);
    }
}

/// Entropies 2 and 3 drop everything. After the first few round trips the sender has marked
/// them and sends them almost nothing; the transfer completes.
#[test]
fn dead_paths_are_avoided() {
    let link = Link {
        dead_entropy: Some((2, 3)),
        ..Link::default()
    };
    let t = transfer(config(Mode::Weir), link, 64, MIB, Duration::from_millis(1));
    let after = sent_between(&t.early, &t.end);
    let total: u64 = after.iter().sum();
    let dead = after[2] + after[3];
    let s = t.net.eps[0].conn_stats(t.conn).unwrap();
    println!(
        "dead paths: early {:?}\n end {:?}\n after warm-up per path {after:?}; {:?}",
        t.early, t.end, s
    );
    assert!(
        (dead as f64) < 0.05 * total as f64,
        "dead paths carried {dead} of {total} packets after the warm-up: {after:?}"
    );
    for (i, p) in t.end.iter().enumerate() {
        if i == 2 || i == 3 {
            assert_eq!(p.delivered, 0);
            assert!(p.penalty > 6, "dead path {i} not penalised: {p:?}");
        } else {
            assert!(
                after[i] as f64 > 0.10 * total as f64,
                "healthy path {i} underused: {after:?}"
            );
        }
    }
}

/// Entropy 5 loses 30 % of its packets: it ends up carrying clearly less than the healthy
/// paths, and the transfer completes.
#[test]
fn lossy_path_is_used_less() {
    let link = Link {
        lossy_entropy: Some((5, 5, 0.3)),
        ..Link::default()
    };
    let t = transfer(config(Mode::Weir), link, 64, MIB, Duration::from_millis(1));
    let after = sent_between(&t.early, &t.end);
    let healthy: Vec<u64> = after
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != 5)
        .map(|(_, &n)| n)
        .collect();
    let mean = healthy.iter().sum::<u64>() as f64 / healthy.len() as f64;
    println!(
        "lossy path 5: after warm-up per path {after:?}; end {:?}",
        t.end
    );
    assert!(
        (after[5] as f64) < 0.5 * mean,
        "lossy path carried {} packets, healthy ones {mean:.0} on average: {after:?}",
        after[5]
    );
}

/// A single data packet arriving 30 µs late (reordered: beyond RACK's 10 µs reorder window, so
/// one spurious retransmission is fair) must cost about one retransmission.
///
/// Regression (fixed: RACK trusts a retransmission's send time only when the ACK echoes it).
/// Was (`SendState::acked`): when the late original
/// arrives, its acknowledgement is credited to the retransmission, and `rack_xmit` jumps to the
/// retransmission's send time. With a deep sender queue (the 4 MiB window here queues ~330 µs at
/// the NIC) every packet still in flight was sent more than a reorder window before that, so the
/// next ACK declares its `cum_psn` packet lost, that packet's retransmission is again
/// acknowledged by its original, `rack_xmit` jumps again, and so on: one spurious
/// retransmission per ACK until the transfer ends (178 here, 2048 packets; with 1 % random
/// reordering, 4276 spurious retransmissions for 8192 packets). RFC 8985 §6.2 step 2 skips
/// retransmitted packets whose ACK came sooner than min_RTT after the retransmission (or the
/// engine could match the echoed `tx_ts` against the retransmission's).
#[test]
fn one_late_packet_does_not_start_a_retransmission_cascade() {
    const SIZE: u64 = 16 * MIB;
    let (mut net, conn) = start(config(Mode::Weir), Link::default(), 1, SIZE);
    let mut first_tx = 0u64;
    net.tap = Some(Box::new(move |t, bytes| {
        let Ok(p) = weir_wire::parse(bytes, PayloadMode::Virtual) else {
            return Fate::Pass;
        };
        let c = p.header.common;
        if t.src == 0 && c.opcode == Opcode::Data && !c.flags.contains(Flags::RETX) {
            first_tx += 1;
            if first_tx == 600 {
                return Fate::Delay(Duration::from_micros(30));
            }
        }
        Fate::Pass
    }));
    finish(&mut net, conn, 1);
    let s = net.eps[0].conn_stats(conn).unwrap();
    assert_eq!(s.data_packets, 2048);
    assert!(
        s.retransmits <= 2,
        "one late packet cost {} retransmissions: {s:?}",
        s.retransmits
    );
}

/// Paths 2 and 3 are dead for the first millisecond, then heal. The path scorer promises one
/// probe packet every `PROBE_EVERY` (256) packets on a penalised path "so it can recover", so
/// over the next ~7000 packets the healed paths should see a few dozen probes and deliver them.
///
/// Regression (fixed: probes every `PROBE_EVERY` packets in turn, a delivered probe restores
/// the path). Was (`Paths::pick_after`):
///
/// * with the default `spray_burst = 8`, `pick_after` runs only at burst boundaries (and for
///   retransmissions), when `sent_total` is a multiple of 8 unless retransmissions shifted it,
///   so the probe condition `sent_total % 256 == 255` almost never holds: 0 probes in ~6400
///   packets here;
/// * even with `spray_burst = 1`, a probe goes only to the path right after the current one in
///   round-robin order, so of two adjacent penalised paths the second (3 here) is never probed
///   (measured: path 2 one probe, path 3 none);
/// * a probe that is delivered pays back 1/16 of a penalty point, so a healed path needs 144
///   delivered probes (≈ 37 000 packets at one probe per 256) to drop below `AVOID_ABOVE`.
///
/// So a path that was dead or lossy for a moment is abandoned for the rest of the connection
/// (the lossy path of `lossy_path_is_used_less` gets 0 packets after the warm-up too).
#[test]
fn healed_paths_are_probed_again() {
    const COUNT: usize = 64;
    let link = Link {
        dead_entropy: Some((2, 3)),
        ..Link::default()
    };
    let (mut net, conn) = start(config(Mode::Weir), link, COUNT, MIB);
    run_for(&mut net, COUNT, Duration::from_millis(1));
    net.link.dead_entropy = None;
    let healed = net.eps[0].path_stats(conn).unwrap();
    let healed_at = net.now;
    finish(&mut net, conn, COUNT);
    let end = net.eps[0].path_stats(conn).unwrap();
    let after = sent_between(&healed, &end);
    let total: u64 = after.iter().sum();
    println!("healed at {healed_at:?}: per path after {after:?}\n end {end:?}");
    for p in [2, 3] {
        assert!(
            after[p] > 0 && end[p].delivered > 0,
            "healed path {p} got {} of {total} packets after healing: {after:?}",
            after[p]
        );
    }
}

/// Entropy 2 is dead only in the reverse direction: data sent on it arrives, the ACKs it
/// triggers (which echo the data's entropy) are lost. Later ACKs on other paths cover its
/// packets (cumulative and SACK), so the sender keeps using path 2 at its full share.
#[test]
fn path_dead_for_acks_only_keeps_carrying_data() {
    const COUNT: usize = 64;
    let (mut net, conn) = start(config(Mode::Weir), Link::default(), COUNT, MIB);
    net.set_link(
        1,
        0,
        Link {
            dead_entropy: Some((2, 2)),
            virtual_payload: true,
            ..Link::default()
        },
    );
    run_for(&mut net, COUNT, Duration::from_millis(1));
    let early = net.eps[0].path_stats(conn).unwrap();
    finish(&mut net, conn, COUNT);
    let end = net.eps[0].path_stats(conn).unwrap();
    let after = sent_between(&early, &end);
    let total: u64 = after.iter().sum();
    println!("ACK path 2 dead: after warm-up per path {after:?}; end {end:?}");
    assert!(net.stats.dropped > 0, "no ACK was lost");
    assert!(
        after[2] as f64 > 0.10 * total as f64,
        "path 2 carried {} of {total} packets: {after:?}",
        after[2]
    );
    let s = net.eps[0].conn_stats(conn).unwrap();
    assert_eq!(s.retransmits, 0, "{s:?}");
}
