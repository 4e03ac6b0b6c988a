//! A receiver that shares a small receive buffer among its senders
//! (`Config::rx_budget_packets`, what the UDP host sets from its socket's buffer): 16 senders
//! that connected one after another start at the same instant into a drop-tail buffer that
//! holds exactly the budget. The handshake offers, the shares the ACKs carry (which may shrink a
//! window a sender was given earlier), an ACK at least every half window and the turns the
//! receiver grants (`Config::rx_grants`) must keep what is in flight within the buffer and the
//! buffer busy.

use weir_base::{Duration, Rate};
use weir_tests::{IngressStats, Link, Net};
use weir_transport::{Config, ConnStats, Endpoint, EndpointStats, WorkRequest};

const SENDERS: usize = 16;
const MSGS: usize = 8;
const SIZE: usize = 64 << 10;
/// The receiver's downlink.
const RATE: Rate = Rate::from_gbps(100);
/// The receive budget in packets, and a buffer that holds exactly that many.
const BUDGET: u32 = 32;
/// A data packet on the wire (8 KiB payload + 72-byte header).
const PACKET: u64 = 8192 + 72;

struct Outcome {
    ingress: IngressStats,
    receiver: EndpointStats,
    /// First post → last receive completion.
    elapsed: Duration,
    senders: Vec<ConnStats>,
}

fn incast(seed: u64) -> Outcome {
    incast_with(seed, |_| {}, 0.0)
}

/// The last completion came within `num / den` times the ideal (`ideal`; `what` names the
/// run).
fn assert_near_ideal(o: &Outcome, num: u64, den: u64, what: &str) {
    let ideal = ideal();
    assert!(
        o.elapsed.as_nanos() * den <= ideal.as_nanos() * num,
        "{what}: last completion after {:?}, ideal {ideal:?}; {:?}",
        o.elapsed,
        o.receiver
    );
}

/// The buffer never overflowed and no sender resent anything (`what` names the run).
fn assert_no_drop_no_resend(o: &Outcome, what: &str) {
    assert_eq!(o.ingress.dropped, 0, "{what}: {:?}", o.ingress);
    let retx: u64 = o.senders.iter().map(|s| s.retransmits).sum();
    assert_eq!(retx, 0, "{what}: resends without a drop");
}

/// The incast with the receiver's configuration adjusted by `tune`, and each of its links
/// back to the senders (ACKs, window updates) dropping `back_loss` of its datagrams.
fn incast_with(seed: u64, tune: impl FnOnce(&mut Config), back_loss: f64) -> Outcome {
    let back = Link {
        loss: back_loss,
        ..Link::default()
    };
    incast_links(seed, tune, Link::default(), back)
}

/// The incast with `fwd` impairing every sender's link to the receiver and `back` every
/// link back, from the first data on (the handshakes run clean).
fn incast_links(seed: u64, tune: impl FnOnce(&mut Config), fwd: Link, back: Link) -> Outcome {
    let mut receiver = Config::default();
    receiver.rx_budget_packets = BUDGET;
    receiver.line_rate = RATE;
    tune(&mut receiver);
    let buffer = u64::from(receiver.rx_budget_packets) * PACKET;
    let mut net = Net::new(SENDERS + 1, receiver, Link::default(), seed);
    for i in 1..=SENDERS {
        let mut e = Endpoint::new(Config::default(), net.addrs[i], seed ^ (i as u64) << 8).unwrap();
        e.listen(true);
        net.eps[i] = e;
    }
    net.set_ingress(0, RATE, buffer);
    let conns: Vec<_> = (1..=SENDERS)
        .map(|i| {
            net.connect(i, 0, Duration::from_millis(10))
                .expect("connect")
        })
        .collect();
    for i in 1..=SENDERS {
        net.set_link(0, i, back);
        net.set_link(i, 0, fwd);
    }
    let (dst, dptr) = net.region(0, SENDERS * MSGS * SIZE, |_| 0, false);
    let mut srcs = Vec::new();
    for s in 1..=SENDERS {
        srcs.push(net.region(
            s,
            MSGS * SIZE,
            |b| (b as u8) ^ (s as u8).wrapping_mul(37),
            false,
        ));
    }
    // Every receive first, then every send, all at one instant.
    let start = net.now;
    for (i, &(_, cr)) in conns.iter().enumerate() {
        for m in 0..MSGS {
            let wr = WorkRequest::Recv {
                region: dst,
                offset: ((i * MSGS + m) * SIZE) as u64,
                len: SIZE as u64,
                tag: Some(m as u64),
            };
            net.eps[0].post(start, cr, wr).unwrap();
        }
    }
    for (i, &(cs, _)) in conns.iter().enumerate() {
        for m in 0..MSGS {
            let wr = WorkRequest::Send {
                region: srcs[i].0,
                offset: (m * SIZE) as u64,
                len: SIZE as u64,
                tag: m as u64,
            };
            net.eps[i + 1].post(start, cs, wr).unwrap();
        }
    }
    let total = SENDERS * MSGS;
    let done = net.run_until(Duration::from_secs(2), |net| {
        net.completions(0).filter(|c| c.status.is_ok()).count() == total
    });
    assert!(done, "incast did not finish: {:?}", net.ingress_stats(0));
    let elapsed = net.now.saturating_since(start);
    for (i, (_, sptr)) in srcs.iter().enumerate() {
        let sent = net.bytes(*sptr, MSGS * SIZE).to_vec();
        let got = net.bytes(dptr.wrapping_add(i * MSGS * SIZE), MSGS * SIZE);
        assert!(got == &sent[..], "sender {i}: payload differs");
    }
    Outcome {
        ingress: net.ingress_stats(0).unwrap(),
        receiver: *net.eps[0].stats(),
        elapsed,
        senders: (1..=SENDERS)
            .map(|i| net.eps[i].conn_stats(conns[i - 1].0).unwrap())
            .collect(),
    }
}

/// Nothing dropped: the 16 windows together never exceed the buffer, though the first senders
/// were offered (and, before windows could shrink, kept) most of it when they connected alone.
#[test]
fn sixteen_senders_starting_together_stay_within_the_shared_buffer() {
    for seed in [1, 2, 3] {
        let o = incast(seed);
        assert_no_drop_no_resend(&o, &format!("seed {seed}"));
        assert!(
            o.ingress.max_queue <= u64::from(BUDGET) * PACKET,
            "seed {seed}: {:?}",
            o.ingress
        );
    }
}

/// The buffer stays busy: with two packets of window each, a receiver that acknowledged every
/// `ack_every` (8) packets would leave each sender waiting `ack_delay` per window; acknowledging
/// at least every half window keeps the last completion within 1.5× the ideal (every byte at
/// the downlink's rate, plus a base round trip).
#[test]
fn sixteen_senders_on_two_packet_windows_keep_the_downlink_busy() {
    let o = incast(4);
    assert_near_ideal(&o, 3, 2, "seed 4");
}

/// Turns (the default, `rx_grants` 1 with a 32-packet budget, too small for one window of a
/// bandwidth × delay product): the senders are served one at a time, the others waiting in
/// line (an `RNR` pause each), and nothing is dropped.
#[test]
fn a_small_budget_is_granted_in_turns() {
    let o = incast(5);
    assert_no_drop_no_resend(&o, "turns");
    assert!(o.receiver.rx_turns >= SENDERS as u64, "{:?}", o.receiver);
    let waited = o.senders.iter().filter(|s| s.rnr_pauses > 0).count();
    assert!(
        waited >= SENDERS - 2,
        "{waited} senders waited: {:?}",
        o.receiver
    );
}

/// Without turns (`rx_grants` 0) every receiving sender shares the budget at once: no
/// sender waits, and the shares still keep the buffer from overflowing.
#[test]
fn without_turns_every_sender_shares_the_budget() {
    let o = incast_with(6, |c| c.rx_grants = 0, 0.0);
    assert_eq!(o.receiver.rx_turns, 0);
    assert_eq!(o.ingress.dropped, 0, "{:?}", o.ingress);
    assert!(o.senders.iter().all(|s| s.rnr_pauses == 0));
}

/// A turn ends after `rx_turn_bytes` while others wait: with a turn of one 64 KiB message,
/// senders go back in line, and still every message arrives once, intact, with nothing
/// dropped. (The sender on deck moves data too, a packet of window at a time, so turns are
/// fewer than messages.)
#[test]
fn a_turn_ends_after_its_bytes_while_others_wait() {
    let o = incast_with(7, |c| c.rx_turn_bytes = SIZE as u64, 0.0);
    assert!(
        o.receiver.rx_turns_yielded >= SENDERS as u64,
        "{:?}",
        o.receiver
    );
    assert_eq!(o.ingress.dropped, 0, "{:?}", o.ingress);
}

/// A budget that gives every sender a full window (a bandwidth × delay product) needs no
/// turns: all 16 are granted at once and none waits.
#[test]
fn a_large_budget_grants_everyone_at_once() {
    let o = incast_with(8, |c| c.rx_budget_packets = 16 * 72 + 16 * 72 / 7 + 16, 0.0);
    assert_eq!(o.receiver.rx_turns_yielded, 0, "{:?}", o.receiver);
    assert_eq!(o.ingress.dropped, 0, "{:?}", o.ingress);
    assert!(o.senders.iter().all(|s| s.rnr_pauses == 0));
}

/// The time the incast takes at the downlink's rate, plus a base round trip.
fn ideal() -> Duration {
    let bytes = (SENDERS * MSGS * SIZE) as u64;
    RATE.serialization_time(bytes * PACKET / 8192) + Duration::from_micros(10)
}

/// The window updates that grant turns can be lost: with a fifth of everything the receiver
/// sends dropped, waiting senders still get their turns (the XON repeated, the receiver
/// taking a turn back from a sender that stays silent, on its own timer) and every message
/// arrives once, intact — without a turn left idle for a waiting sender's next probe.
#[test]
fn lost_grants_do_not_stall_the_line() {
    for seed in [9, 10] {
        let o = incast_with(seed, |_| {}, 0.2);
        assert!(o.receiver.rx_turns >= SENDERS as u64, "{:?}", o.receiver);
        assert_near_ideal(&o, 4, 1, &format!("seed {seed}"));
    }
}

/// Reordering both ways (a fifth of the packets 20 µs late): a sender's last packet may
/// arrive before the ones that said more were queued, and ACKs with and without `RNR`
/// overtake each other. No turn is granted to a sender with nothing left (its late packets
/// do not count), no sender stays stopped by a stale `RNR`, and the incast stays near its
/// ideal.
#[test]
fn reordering_leaves_no_phantom_turns() {
    let late = Link {
        reorder: 0.2,
        reorder_delay: Duration::from_micros(20),
        ..Link::default()
    };
    for seed in [11, 12] {
        let o = incast_links(seed, |_| {}, late, late);
        assert_near_ideal(&o, 2, 1, &format!("seed {seed}"));
        assert_eq!(
            o.receiver.rx_turns_silent, 0,
            "seed {seed}: {:?}",
            o.receiver
        );
    }
}
