//! Losing everything in flight at once (issue 12): a whole window dropped while the window
//! holds new data back, the probe and the retransmissions lost too, a blackout long enough for
//! several retransmission timeouts under a controller that collapses its window, and — as a
//! property — any loss pattern that ends in a working network: every message completes exactly
//! once and intact, and a lost window is recovered by the tail-loss probe, not a timeout.

use std::cell::RefCell;
use std::rc::Rc;

use proptest::prelude::*;
use weir_base::{Duration, Instant, Rate};
use weir_congestion::CcConfig;
use weir_tests::{Fate, Link, Net, Tapped};
use weir_transport::{CompletionKind, Config, ConnStats, Event, WorkRequest};
use weir_wire::{Flags, Opcode, PayloadMode};

const PAYLOAD: u32 = 4096;

fn config(cc: CcConfig) -> Config {
    let mut c = Config::default();
    c.cc = cc;
    c.max_payload = PAYLOAD;
    c.line_rate = Rate::from_gbps(100);
    c.min_rto = Duration::from_micros(200);
    c.initial_rto = Duration::from_micros(500);
    c.peer_timeout = Duration::from_secs(30);
    c.keepalive = Duration::from_millis(100);
    c
}

/// A fixed window of `pkts` full packets.
fn fixed(pkts: u64) -> CcConfig {
    CcConfig::Fixed {
        window: pkts * u64::from(PAYLOAD),
        rate: None,
    }
}

fn link() -> Link {
    Link {
        latency: Duration::from_micros(5),
        rate: Rate::from_gbps(100),
        ..Link::default()
    }
}

/// What a datagram is, as the tap sees it.
#[derive(Clone, Copy, Debug)]
struct Seen {
    src: usize,
    at: Instant,
    opcode: Option<Opcode>,
    retx: bool,
    probe: bool,
}

fn seen(t: &Tapped, bytes: &[u8]) -> Seen {
    let h = weir_wire::parse(bytes, PayloadMode::Bytes).ok();
    let flags = h.as_ref().map_or(Flags::empty(), |p| p.header.common.flags);
    let opcode = h.as_ref().map(|p| p.header.common.opcode);
    Seen {
        src: t.src,
        at: t.at,
        opcode,
        retx: flags.contains(Flags::RETX),
        // A tail-loss probe is a PROBE packet (a data-less request for an ACK); keepalives
        // are PROBEs too, but none is due in these short runs.
        probe: opcode == Some(Opcode::Probe),
    }
}

/// Byte `i` of message `m`.
fn pattern(m: usize, i: usize) -> u8 {
    (m as u8)
        .wrapping_mul(29)
        .wrapping_add((i as u8).wrapping_mul(13))
        .wrapping_add((i >> 8) as u8)
}

struct Run {
    done: bool,
    /// From posting to the last completion (virtual time).
    elapsed: Duration,
    sender: ConnStats,
}

/// Send `sizes` from endpoint 0 to endpoint 1 with `drop` deciding the fate of each datagram
/// (after the handshake). Checks every completion once, every receive intact.
fn transfer(
    cfg: Config,
    sizes: &[usize],
    seed: u64,
    limit: Duration,
    mut drop: impl FnMut(&Seen) -> bool + 'static,
) -> Run {
    let mut net = Net::new(2, cfg, link(), seed);
    let (c0, c1) = net
        .connect(0, 1, Duration::from_millis(10))
        .expect("connect");
    net.tap = Some(Box::new(move |t, bytes| {
        if drop(&seen(t, bytes)) {
            Fate::Drop
        } else {
            Fate::Pass
        }
    }));
    let start = net.now;
    let mut expect = Vec::new();
    for (m, &len) in sizes.iter().enumerate() {
        let (src, _) = net.region(0, len, |i| pattern(m, i), false);
        let (dst, dptr) = net.region(1, len, |_| 0xEE, false);
        let rw = net.eps[1]
            .post(
                start,
                c1,
                WorkRequest::Recv {
                    region: dst,
                    offset: 0,
                    len: len as u64,
                    tag: Some(m as u64),
                },
            )
            .unwrap();
        let sw = net.eps[0]
            .post(
                start,
                c0,
                WorkRequest::Send {
                    region: src,
                    offset: 0,
                    len: len as u64,
                    tag: m as u64,
                },
            )
            .unwrap();
        expect.push((m, rw, sw, dptr, len));
    }
    let total = sizes.len();
    let count = |n: &Net, ep: usize, kind: CompletionKind| {
        n.completions(ep).filter(|c| c.kind == kind).count()
    };
    let done = net.run_until(limit, |n| {
        count(n, 0, CompletionKind::Send) >= total && count(n, 1, CompletionKind::Recv) >= total
    });
    let elapsed = net.now.saturating_since(start);
    if done {
        // Let stray duplicates and ACKs land: nothing may complete twice afterwards.
        net.run_until(Duration::from_millis(5), |_| false);
    }
    for ep in 0..2 {
        for e in &net.events[ep] {
            assert!(
                !matches!(e, Event::ConnectionLost { .. }),
                "connection lost: {e:?}"
            );
        }
    }
    if done {
        assert_eq!(
            count(&net, 0, CompletionKind::Send),
            total,
            "sends once each"
        );
        assert_eq!(
            count(&net, 1, CompletionKind::Recv),
            total,
            "receives once each"
        );
        for (m, rw, sw, dptr, len) in expect {
            let r = net.completions(1).find(|c| c.wr == rw).unwrap();
            assert!(r.status.is_ok() && r.len == len as u64, "{r:?}");
            let s = net.completions(0).find(|c| c.wr == sw).unwrap();
            assert!(s.status.is_ok(), "{s:?}");
            let got = net.bytes(dptr, len);
            assert!(
                got.iter().enumerate().all(|(i, &b)| b == pattern(m, i)),
                "message {m} corrupted"
            );
        }
    }
    Run {
        done,
        elapsed,
        sender: net.eps[0].conn_stats(c0).unwrap(),
    }
}

/// Drop first transmissions of data packets number `from..from + n` (counting first
/// transmissions from endpoint 0 only).
fn drop_window(from: u64, n: u64) -> impl FnMut(&Seen) -> bool + 'static {
    let mut data = 0u64;
    move |s| {
        if s.src != 0 || s.opcode != Some(Opcode::Data) || s.retx {
            return false;
        }
        data += 1;
        (from..from + n).contains(&(data - 1))
    }
}

#[test]
fn a_whole_window_lost_while_new_data_waits_is_recovered_by_the_probe() {
    // A 16-packet window; packets 64..80 are dropped: that is everything in flight, no ACK
    // comes back to open the window, and 1 MiB is still to send. The tail-loss probe (armed
    // because the window holds new data back) reveals the loss two round trips later; a
    // retransmission timeout is never needed.
    let r = transfer(
        config(fixed(16)),
        &[1 << 20],
        1,
        Duration::from_secs(1),
        drop_window(64, 16),
    );
    assert!(r.done, "{:?}", r.sender);
    assert_eq!(r.sender.rto_events, 0, "{:?}", r.sender);
    assert!(r.sender.tlp_probes >= 1, "{:?}", r.sender);
    // Every lost packet is resent once; the probe carries no data.
    assert!(r.sender.retransmits <= 16, "{:?}", r.sender);
    // The lost packets waited a few round trips, well under one timeout (1 ms).
    assert!(r.sender.max_repair_us >= 1, "{:?}", r.sender);
    assert!(r.sender.max_repair_us < 1000, "{:?}", r.sender);
    // 1 MiB at 100 Gb/s with a 16-packet window over a ~10 µs RTT is ~1.6 ms ... far below
    // what a timeout-driven recovery would add; the loss costs a few RTTs.
    let lossless = transfer(
        config(fixed(16)),
        &[1 << 20],
        1,
        Duration::from_secs(1),
        |_| false,
    );
    assert!(
        r.elapsed < lossless.elapsed + Duration::from_micros(100),
        "{} vs lossless {}",
        r.elapsed,
        lossless.elapsed
    );
}

#[test]
fn lost_probes_and_lost_retransmissions_are_recovered() {
    // The whole window, then both probes and the first three retransmissions: after the
    // probes, a timeout; after a timeout one packet goes until an ACK returns, so each lost
    // retransmission costs one more (backed-off) timeout, and then the rest is resent.
    let mut window = drop_window(64, 16);
    let (mut probes, mut retx) = (0, 0);
    let r = transfer(
        config(fixed(16)),
        &[1 << 20, 3000, 0, 200_000],
        2,
        Duration::from_secs(2),
        move |s| {
            if window(s) {
                return true;
            }
            if s.src == 0 && s.probe {
                probes += 1;
                return probes <= 2;
            }
            if s.src == 0 && s.opcode == Some(Opcode::Data) && s.retx {
                retx += 1;
                return retx <= 3;
            }
            false
        },
    );
    assert!(r.done, "{:?}", r.sender);
    assert!(r.sender.rto_events >= 1, "{:?}", r.sender);
    assert!(r.sender.rto_events <= 4, "{:?}", r.sender);
    // The lost window and the lost retransmissions, each resent once more (probes carry no
    // data and are not retransmissions).
    assert!(r.sender.tlp_probes >= 2, "{:?}", r.sender);
    assert!(r.sender.retransmits <= 16 + 3 + 2, "{:?}", r.sender);
}

#[test]
fn a_blackout_under_a_collapsing_window_ends_within_a_few_round_trips_after_it() {
    // NSCC cuts its window on every timeout. Everything both ways is lost for 3 ms: several
    // timeouts fire (backed off), each declaring everything in flight lost. When the network
    // comes back, the next timeout resends from the oldest packet and the whole transfer
    // completes without waiting one more backed-off timeout per packet.
    let blackout = Rc::new(RefCell::new(None::<Instant>));
    let b = blackout.clone();
    let mut data = 0u64;
    let cfg = config(CcConfig::by_name("nscc").unwrap());
    let r = transfer(cfg, &[4 << 20], 3, Duration::from_secs(5), move |s| {
        if s.src == 0 && s.opcode == Some(Opcode::Data) && !s.retx {
            data += 1;
            if data == 200 {
                *b.borrow_mut() = Some(s.at);
            }
        }
        let start = *b.borrow();
        start.is_some_and(|t| s.at < t + Duration::from_millis(3))
    });
    assert!(r.done, "{:?}", r.sender);
    let s = r.sender;
    assert!(s.rto_events >= 2, "{s:?}");
    // Backoff: timeouts at ~0.2, 0.6, 1.4, 3.0 ms, … after the blackout began; the one after
    // it ends brings everything back. Bounded well below the seconds a one-packet-per-timeout
    // recovery takes.
    assert!(r.elapsed < Duration::from_millis(12), "{} {s:?}", r.elapsed);
    assert!(s.rto_events <= 6, "{s:?}");
}

#[test]
fn a_stalled_sender_undoes_its_spurious_timeout() {
    // Every ACK in a window of time is delayed past the retransmission timeout (a stalled
    // receiver host or a slow ACK path): nothing was lost, so the first late ACK shows the
    // timeout was spurious, and the packets it declared lost are not all resent.
    let mut acks = 0u64;
    let r = transfer(
        config(fixed(64)),
        &[2 << 20],
        4,
        Duration::from_secs(1),
        |_| false,
    );
    assert_eq!(r.sender.rto_events, 0);
    let mut net_delay = Net::new(2, config(fixed(64)), link(), 4);
    let (c0, c1) = net_delay.connect(0, 1, Duration::from_millis(10)).unwrap();
    net_delay.tap = Some(Box::new(move |t, bytes| {
        if t.src == 1 && bytes.get(1).copied() == Some(Opcode::Ack as u8) {
            acks += 1;
            if acks == 40 {
                return Fate::Delay(Duration::from_micros(800));
            }
            if (41..60).contains(&acks) {
                return Fate::Delay(Duration::from_micros(800));
            }
        }
        Fate::Pass
    }));
    let len = 2 << 20;
    let (src, _) = net_delay.region(0, len, |i| i as u8, false);
    let (dst, _) = net_delay.region(1, len, |_| 0, false);
    let now = net_delay.now;
    net_delay.post_transfer(now, (0, c0, src), (1, c1, dst), len as u64);
    let done = net_delay.run_until(Duration::from_secs(1), |n| {
        n.completions(0).count() == 1 && n.completions(1).count() == 1
    });
    assert!(done);
    let s = net_delay.eps[0].conn_stats(c0).unwrap();
    assert!(s.rto_events >= 1, "{s:?}");
    assert!(s.spurious_rtos >= 1, "{s:?}");
    // Without the undo every packet in flight (64) would be resent.
    assert!(s.retransmits < 32, "{s:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Any pattern of lost datagrams (both directions: data, ACKs, probes, retransmissions)
    /// among the first few hundred, then a working network: every message completes exactly
    /// once and intact, the connection survives.
    #[test]
    fn any_loss_then_a_working_network_completes_everything_once(
        bursts in prop::collection::vec((0u64..600, 1u64..80), 0..6),
        singles in prop::collection::vec(0u64..600, 0..40),
        nscc in any::<bool>(),
        window in 2u64..48,
        sizes in prop::collection::vec(0usize..300_000, 1..5),
        seed in any::<u64>(),
    ) {
        let cc = if nscc { CcConfig::by_name("nscc").unwrap() } else { fixed(window) };
        let mut n = 0u64;
        let r = transfer(config(cc), &sizes, seed, Duration::from_secs(20), move |_| {
            n += 1;
            let i = n - 1;
            bursts.iter().any(|&(a, l)| (a..a + l).contains(&i)) || singles.contains(&i)
        });
        prop_assert!(r.done, "did not finish: {:?}", r.sender);
    }
}

#[test]
fn resends_of_packets_that_were_only_late_are_detected_and_widen_the_window() {
    // Every 16th first transmission is held back 60 µs (a slow path): later packets overtake
    // it by more than the 10 µs reordering window, so RACK resends it although it was never
    // lost. The ACK of the late original echoes its timestamp: the resend is counted spurious
    // and the window widens, so later late packets are waited for instead of resent.
    let mut data = 0u64;
    let mut delayed = 0u64;
    let delayed_count = Rc::new(RefCell::new(0u64));
    let dc = delayed_count.clone();
    let mut net = Net::new(2, config(fixed(64)), link(), 6);
    let (c0, c1) = net.connect(0, 1, Duration::from_millis(10)).unwrap();
    net.tap = Some(Box::new(move |t, bytes| {
        let s = seen(t, bytes);
        if s.src == 0 && s.opcode == Some(Opcode::Data) && !s.retx {
            data += 1;
            if data.is_multiple_of(16) {
                delayed += 1;
                *dc.borrow_mut() = delayed;
                return Fate::Delay(Duration::from_micros(60));
            }
        }
        Fate::Pass
    }));
    let len = 8 << 20;
    let (src, _) = net.region(0, len, |i| i as u8, false);
    let (dst, _) = net.region(1, len, |_| 0, false);
    let now = net.now;
    net.post_transfer(now, (0, c0, src), (1, c1, dst), len as u64);
    assert!(net.run_until(Duration::from_secs(1), |n| {
        n.completions(0).count() == 1 && n.completions(1).count() == 1
    }));
    let s = net.eps[0].conn_stats(c0).unwrap();
    let late = *delayed_count.borrow();
    assert!(late >= 100, "{late}");
    assert!(s.spurious_retransmits >= 1, "{s:?}");
    assert_eq!(
        s.spurious_retransmits, s.retransmits,
        "nothing was lost: {s:?}"
    );
    // Without adaptation every late packet would be resent; the window grows by one step per
    // round trip until it covers the 60 µs, then nothing more is resent.
    assert!(
        s.retransmits * 4 < late,
        "{} resends for {late} late packets: {s:?}",
        s.retransmits
    );
}

#[test]
fn probes_that_prove_spurious_lengthen_the_probe_timeout() {
    // One 8-byte message at a time (a ping-pong): every 4th ACK is held back 25 µs, two and a
    // half round trips (a descheduled peer). Each such stall would earn a tail-loss probe two
    // smoothed RTTs in, whose original then turns out to have arrived. Spurious probes lengthen the probe
    // timeout (up to four smoothed RTTs), so most stalls pass without one.
    let mut net = Net::new(2, config(fixed(16)), link(), 8);
    let (c0, c1) = net.connect(0, 1, Duration::from_millis(10)).unwrap();
    let mut acks = 0u64;
    net.tap = Some(Box::new(move |t, bytes| {
        if t.src == 1 && bytes.get(1).copied() == Some(Opcode::Ack as u8) {
            acks += 1;
            if acks.is_multiple_of(4) {
                return Fate::Delay(Duration::from_micros(25));
            }
        }
        Fate::Pass
    }));
    let (src, _) = net.region(0, 8, |i| i as u8, false);
    let (dst, _) = net.region(1, 8, |_| 0, false);
    let rounds = 400;
    for m in 0..rounds {
        let now = net.now;
        net.post_transfer(now, (0, c0, src), (1, c1, dst), 8);
        assert!(net.run_until(Duration::from_millis(50), |n| {
            n.completions(0).count() > m && n.completions(1).count() > m
        }));
    }
    let s = net.eps[0].conn_stats(c0).unwrap();
    eprintln!("{s:?}");
    assert_eq!(s.rto_events, 0, "{s:?}");
    // Nothing was lost, so nothing is sent twice: a probe asks for an ACK, it resends nothing.
    assert_eq!(s.retransmits, 0, "{s:?}");
    assert!(s.spurious_probes >= 1, "{s:?}");
    // About 100 stalls; without adaptation about one probe each.
    assert!(s.tlp_probes < 30, "{s:?}");
}
