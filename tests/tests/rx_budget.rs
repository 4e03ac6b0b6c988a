//! A receiver that shares a small receive buffer among its senders
//! (`Config::rx_budget_packets`, what the UDP host sets from its socket's buffer): 16 senders
//! that connected one after another start at the same instant into a drop-tail buffer that
//! holds exactly the budget. The handshake offers, the shares the ACKs carry (which may shrink a
//! window a sender was given earlier) and an ACK at least every half window must keep what is
//! in flight within the buffer and the buffer busy.

use weir_base::{Duration, Rate};
use weir_tests::{IngressStats, Link, Net};
use weir_transport::{Config, ConnStats, Endpoint, WorkRequest};

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
    /// First post → last receive completion.
    elapsed: Duration,
    senders: Vec<ConnStats>,
}

fn incast(seed: u64) -> Outcome {
    let mut receiver = Config::default();
    receiver.rx_budget_packets = BUDGET;
    receiver.line_rate = RATE;
    let mut net = Net::new(SENDERS + 1, receiver, Link::default(), seed);
    for i in 1..=SENDERS {
        let mut e = Endpoint::new(Config::default(), net.addrs[i], seed ^ (i as u64) << 8).unwrap();
        e.listen(true);
        net.eps[i] = e;
    }
    net.set_ingress(0, RATE, u64::from(BUDGET) * PACKET);
    let conns: Vec<_> = (1..=SENDERS)
        .map(|i| {
            net.connect(i, 0, Duration::from_millis(10))
                .expect("connect")
        })
        .collect();
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
        assert_eq!(o.ingress.dropped, 0, "seed {seed}: {:?}", o.ingress);
        assert!(
            o.ingress.max_queue <= u64::from(BUDGET) * PACKET,
            "seed {seed}: {:?}",
            o.ingress
        );
        let retx: u64 = o.senders.iter().map(|s| s.retransmits).sum();
        assert_eq!(retx, 0, "seed {seed}: resends without a drop");
    }
}

/// The buffer stays busy: with two packets of window each, a receiver that acknowledged every
/// `ack_every` (8) packets would leave each sender waiting `ack_delay` per window; acknowledging
/// at least every half window keeps the last completion within 1.5× the ideal (every byte at
/// the downlink's rate, plus a base round trip).
#[test]
fn sixteen_senders_on_two_packet_windows_keep_the_downlink_busy() {
    let o = incast(4);
    let bytes = (SENDERS * MSGS * SIZE) as u64;
    let ideal = RATE.serialization_time(bytes * PACKET / 8192) + Duration::from_micros(10);
    assert!(
        o.elapsed.as_nanos() * 2 <= ideal.as_nanos() * 3,
        "last completion after {:?}, ideal {ideal:?}",
        o.elapsed
    );
}
