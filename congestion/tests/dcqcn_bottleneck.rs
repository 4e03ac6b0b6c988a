//! Scenario: four DCQCN flows share one 100 Gb/s bottleneck with RED ECN marking
//! (Kmin 100 KB, Kmax 400 KB, Pmax 0.2). After warm-up they must fill the link (≥ 90 %) and
//! share it fairly (Jain's index ≥ 0.9).
//!
//! The model is a tiny packet-level simulation, deterministic from its seed: each sender
//! paces 4 KB packets at its controller's rate; packets reach a FIFO queue after 1 µs, are
//! ECN-marked there with RED's probability on the backlog they find, leave at line rate, and
//! their ACK (echoing the mark) is back at the sender 8 µs after leaving. Buffers are
//! unbounded, so only ECN drives the controllers, as in a lossless RoCE fabric.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use weir_base::{Duration, Instant, Rate, Rng};
use weir_congestion::{CongestionControl, Dcqcn, DcqcnParams, Feedback, PathInfo, Sent};

const LINK: Rate = Rate::from_gbps(100);
const PACKET: u32 = 4096;
const TO_QUEUE: Duration = Duration::from_micros(1);
const BACK: Duration = Duration::from_micros(8);
const K_MIN: u64 = 100_000;
const K_MAX: u64 = 400_000;
const P_MAX: f64 = 0.2;

struct Outcome {
    /// Fraction of the link carried between warm-up and the end.
    utilisation: f64,
    /// Jain's fairness index over the flows' bytes in the same interval.
    jain: f64,
    per_flow_gbps: Vec<f64>,
    mean_queue_kb: f64,
    max_queue_kb: f64,
    /// Rate cuts per flow over the whole run.
    cuts: Vec<u64>,
}

/// Runs `starts.len()` flows, flow `i` starting at `starts[i]`, until `end`; measures from
/// `warm` on.
fn run(seed: u64, starts: &[Instant], warm: Instant, end: Instant) -> Outcome {
    let path = PathInfo {
        mtu: PACKET,
        line_rate: LINK,
        base_rtt: Some(TO_QUEUE + BACK),
        paths: 1,
    };
    let mut rng = Rng::new(seed);
    let mut flows: Vec<Dcqcn> = starts
        .iter()
        .map(|&t| Dcqcn::new(t, &path, DcqcnParams::default()))
        .collect();
    // Each pacer releases the next packet one packet-time (at the *current* rate) after the
    // previous one, so a rate change takes effect at once, as in a NIC rate limiter.
    let mut last_send: Vec<Option<Instant>> = vec![None; flows.len()];
    let mut delivered = vec![0u64; flows.len()];
    // ACKs in flight: (arrival at the sender, sequence for deterministic ties, flow, marked).
    let mut acks: BinaryHeap<Reverse<(Instant, u64, usize, bool)>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut clock = Instant::ZERO;
    // The queue drains everything it holds by `busy_until`.
    let mut busy_until = Instant::ZERO;
    let (mut queue_sum, mut queue_max, mut samples) = (0u128, 0u64, 0u64);

    loop {
        let ack_at = acks.peek().map(|Reverse((t, ..))| *t);
        let (sender, send_at) = flows
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let at = match last_send[i] {
                    Some(t) => {
                        let rate = f.limits().rate.expect("DCQCN paces");
                        t + rate.serialization_time(u64::from(PACKET))
                    }
                    None => starts[i],
                };
                (i, at)
            })
            .min_by_key(|&(_, t)| t)
            .expect("at least one flow");
        let timer = flows
            .iter()
            .enumerate()
            .filter_map(|(i, f)| f.next_timeout().map(|t| (t, i)))
            .min();
        // A pacer whose rate rose after a long gap may be due in the past: it sends now.
        let send_at = send_at.max(clock);
        let now = [ack_at, Some(send_at), timer.map(|(t, _)| t)]
            .into_iter()
            .flatten()
            .min()
            .expect("a send is always pending");
        clock = now;
        if now > end {
            break;
        }
        if ack_at == Some(now) {
            let Some(Reverse((_, _, i, marked))) = acks.pop() else {
                unreachable!("peeked above")
            };
            let fb = Feedback {
                acked_bytes: u64::from(PACKET),
                acked_packets: 1,
                ecn_bytes: if marked { u64::from(PACKET) } else { 0 },
                ..Feedback::default()
            };
            flows[i].on_feedback(now, &fb);
        } else if let Some((_, i)) = timer.filter(|&(t, _)| t == now) {
            flows[i].on_timeout(now);
        } else {
            let i = sender;
            flows[i].on_sent(
                now,
                &Sent {
                    bytes: PACKET,
                    ..Sent::default()
                },
            );
            // Every packet takes the same time to the queue, so arrivals are in send order.
            let arrival = now + TO_QUEUE;
            let backlog = LINK.bytes_in(busy_until - arrival);
            let p = if backlog <= K_MIN {
                0.0
            } else if backlog >= K_MAX {
                1.0
            } else {
                P_MAX * (backlog - K_MIN) as f64 / (K_MAX - K_MIN) as f64
            };
            let marked = rng.chance(p);
            let departure = busy_until.max(arrival) + LINK.serialization_time(u64::from(PACKET));
            busy_until = departure;
            if departure >= warm && departure <= end {
                delivered[i] += u64::from(PACKET);
                queue_sum += u128::from(backlog);
                queue_max = queue_max.max(backlog);
                samples += 1;
            }
            acks.push(Reverse((departure + BACK, seq, i, marked)));
            seq += 1;
            last_send[i] = Some(now);
        }
    }

    let span = (end - warm).as_secs_f64();
    let bits: Vec<f64> = delivered.iter().map(|&b| b as f64 * 8.0).collect();
    let total: f64 = bits.iter().sum();
    let squares: f64 = bits.iter().map(|b| b * b).sum();
    Outcome {
        utilisation: total / (LINK.bps_f64() * span),
        jain: total * total / (bits.len() as f64 * squares),
        per_flow_gbps: bits.iter().map(|b| b / span / 1e9).collect(),
        mean_queue_kb: queue_sum as f64 / samples.max(1) as f64 / 1e3,
        max_queue_kb: queue_max as f64 / 1e3,
        cuts: flows.iter().map(|f| f.stats().cuts).collect(),
    }
}

#[test]
fn four_flows_fill_a_red_marked_bottleneck_fairly() {
    let ms = |m: u64| Instant::ZERO + Duration::from_millis(m);
    let us = |u: u64| Instant::ZERO + Duration::from_micros(u);
    // Staggered starts, so each new flow has to take bandwidth from the ones already there.
    let starts = [us(0), us(1_000), us(2_000), us(3_000)];
    for seed in [1, 2, 3] {
        let o = run(seed, &starts, ms(5), ms(25));
        eprintln!(
            "seed {seed}: utilisation {:.3}, Jain {:.4}, per flow {:.2?} Gb/s, queue mean {:.0} KB \
             max {:.0} KB, cuts {:?}",
            o.utilisation, o.jain, o.per_flow_gbps, o.mean_queue_kb, o.max_queue_kb, o.cuts
        );
        assert!(
            o.utilisation >= 0.9,
            "seed {seed}: utilisation {}",
            o.utilisation
        );
        assert!(o.jain >= 0.9, "seed {seed}: Jain {}", o.jain);
        // Not full by brute force: the controllers hold the queue inside the marking band.
        assert!(
            o.mean_queue_kb * 1e3 <= K_MAX as f64,
            "seed {seed}: queue {} KB",
            o.mean_queue_kb
        );
        assert!(
            o.cuts.iter().all(|&c| c > 0),
            "seed {seed}: cuts {:?}",
            o.cuts
        );
    }
}
