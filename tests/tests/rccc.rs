//! RCCC, receiver credit for last-hop incast (UE 1.0 RCCC as in uet-htsim; docs/references.md):
//! many senders to one receiver whose downlink is the bottleneck (a drop-tail FIFO in front of it,
//! [`Net::set_ingress`]). With credit the bottleneck queue stays within a few pulls and the
//! link stays busy; a fixed window overflows it and retransmits. Lost credit packets are
//! recovered, and senders that do not speak credit share the receiver unaffected.

use weir_base::{Duration, Rate};
use weir_congestion::{CcConfig, RcccParams};
use weir_tests::{Fate, IngressStats, Link, Net};
use weir_transport::{Config, ConnStats, Endpoint, WorkRequest};
use weir_wire::Opcode;

/// Messages per sender and their size.
const MSGS: usize = 8;
const SIZE: usize = 64 << 10;
/// The bottleneck: the receiver's downlink.
const RATE: Rate = Rate::from_gbps(100);
/// Its buffer: 32 data packets of 8 KiB.
const BUFFER: u64 = 256 << 10;
/// A data packet on the wire (8 KiB payload + 72-byte header).
const PACKET: u64 = 8192 + 72;

fn config(cc: CcConfig) -> Config {
    let mut c = Config::default();
    c.cc = cc;
    c.line_rate = RATE;
    c.min_rto = Duration::from_micros(200);
    c.initial_rto = Duration::from_micros(500);
    c
}

fn rccc(speculative: bool, max_wnd: u64) -> CcConfig {
    let mut p = RcccParams::default();
    p.speculative = speculative;
    p.max_wnd = max_wnd;
    CcConfig::Rccc(p)
}

fn fixed() -> CcConfig {
    CcConfig::Fixed {
        window: 4 << 20,
        rate: None,
    }
}

/// What one incast run measured.
#[derive(Debug)]
struct Outcome {
    /// From posting the sends to the last receive completing.
    elapsed: Duration,
    /// Payload bytes delivered.
    bytes: u64,
    /// Bottleneck counters.
    ingress: IngressStats,
    /// Senders' counters, summed.
    retransmits: u64,
    credit_reqs: u64,
    credits: u64,
    /// Per-sender counters.
    senders: Vec<ConnStats>,
}

impl Outcome {
    /// Goodput as a fraction of the bottleneck rate.
    fn utilisation(&self) -> f64 {
        let bits = self.bytes as f64 * 8.0;
        bits / self.elapsed.as_secs_f64() / RATE.bps_f64()
    }
}

/// Endpoint 0 receives; endpoints 1..=n send `MSGS` messages of `SIZE` bytes each, all posted
/// at once, sender `i` with `senders[i - 1]`. Checks that every message arrives once and
/// intact.
fn incast(receiver: Config, senders: &[Config], link: Link, buffer: u64, seed: u64) -> Outcome {
    let n = senders.len();
    let mut net = Net::new(n + 1, receiver, link, seed);
    for (i, &cfg) in senders.iter().enumerate() {
        let mut e = Endpoint::new(cfg, net.addrs[i + 1], seed ^ (i as u64 + 1) << 8).unwrap();
        e.listen(true);
        net.eps[i + 1] = e;
    }
    net.set_ingress(0, RATE, buffer);
    let mut conns = Vec::new();
    for i in 1..=n {
        let (cs, cr) = net
            .connect(i, 0, Duration::from_millis(10))
            .expect("connect");
        conns.push((cs, cr));
    }
    let (dst, dptr) = net.region(0, n * MSGS * SIZE, |_| 0, false);
    let start = net.now;
    for (i, &(cs, cr)) in conns.iter().enumerate() {
        let s = i + 1;
        let (src, _) = net.region(
            s,
            MSGS * SIZE,
            |b| (b as u8) ^ (s as u8).wrapping_mul(37),
            false,
        );
        for m in 0..MSGS {
            let off = ((i * MSGS + m) * SIZE) as u64;
            net.eps[0]
                .post(
                    start,
                    cr,
                    WorkRequest::Recv {
                        region: dst,
                        offset: off,
                        len: SIZE as u64,
                        tag: Some(m as u64),
                    },
                )
                .unwrap();
            net.eps[s]
                .post(
                    start,
                    cs,
                    WorkRequest::Send {
                        region: src,
                        offset: (m * SIZE) as u64,
                        len: SIZE as u64,
                        tag: m as u64,
                    },
                )
                .unwrap();
        }
    }
    let total = n * MSGS;
    let done = net.run_until(Duration::from_secs(2), |net| {
        net.completions(0).filter(|c| c.status.is_ok()).count() == total
    });
    assert!(done, "incast did not finish: {:?}", net.ingress_stats(0));
    // `run_until` stops at the step that delivered the last message.
    let end = net.now;
    let recv: Vec<_> = net.completions(0).collect();
    assert_eq!(recv.len(), total, "every receive completes exactly once");
    let mut wrs: Vec<_> = recv.iter().map(|c| c.wr).collect();
    wrs.sort();
    wrs.dedup();
    assert_eq!(wrs.len(), total);
    for (i, &(cs, _)) in conns.iter().enumerate() {
        let s = i + 1;
        for m in 0..MSGS {
            let off = (i * MSGS + m) * SIZE;
            // SAFETY: the net owns the region and every receive into it completed.
            let got = net.bytes(unsafe { dptr.add(off) }, SIZE);
            let want = (0..SIZE).map(|b| ((m * SIZE + b) as u8) ^ (s as u8).wrapping_mul(37));
            assert!(
                got.iter().copied().eq(want),
                "sender {s} message {m} corrupted"
            );
        }
        // Every send completed too (or will with the last ACKs); none failed.
        assert!(!net.conn_failed(s, cs));
    }
    let senders: Vec<ConnStats> = conns
        .iter()
        .enumerate()
        .map(|(i, &(cs, _))| net.eps[i + 1].conn_stats(cs).unwrap())
        .collect();
    Outcome {
        elapsed: end.saturating_since(start),
        bytes: (total * SIZE) as u64,
        ingress: net.ingress_stats(0).unwrap(),
        retransmits: senders.iter().map(|s| s.retransmits).sum(),
        credit_reqs: senders.iter().map(|s| s.credit_reqs_sent).sum(),
        credits: senders.iter().map(|s| s.credits_received).sum(),
        senders,
    }
}

#[test]
fn incast_16_to_1_credit_keeps_the_last_hop_queue_short_and_busy() {
    let link = Link {
        latency: Duration::from_micros(2),
        rate: RATE,
        ..Link::default()
    };
    let pull = 4 * PACKET;
    let credit = config(rccc(false, 128 << 10));
    let r = incast(credit, &[credit; 16], link, BUFFER, 1);
    let fixed_cfg = config(fixed());
    let f = incast(fixed_cfg, &[fixed_cfg; 16], link, BUFFER, 1);
    let spec_cfg = config(rccc(true, 64 << 10));
    let s = incast(spec_cfg, &[spec_cfg; 16], link, BUFFER, 1);
    for (name, o) in [("rccc", &r), ("rccc+speculative", &s), ("fixed", &f)] {
        eprintln!(
            "{name:>16}: {:>8} util {:.3}  queue max {:>7} B  drops {:>5}  retx {:>5}  \
             credit reqs {:>5}  credits {:>5}",
            o.elapsed.to_string(),
            o.utilisation(),
            o.ingress.max_queue,
            o.ingress.dropped,
            o.retransmits,
            o.credit_reqs,
            o.credits,
        );
    }
    // Credit: nothing dropped at the last hop, the queue stays within a few pulls, and the
    // link stays busy (goodput over 90 % of the rate, headers and start-up included).
    assert_eq!(r.ingress.dropped, 0, "{r:?}");
    assert_eq!(r.retransmits, 0, "{r:?}");
    assert!(
        r.ingress.max_queue <= 3 * pull,
        "queue {} B",
        r.ingress.max_queue
    );
    assert!(r.utilisation() > 0.9, "utilisation {:.3}", r.utilisation());
    assert!(r.credit_reqs > 0 && r.credits > 0);
    // Every sender got its share of credit.
    for st in &r.senders {
        assert!(st.credits_received > 0 && st.data_packets > 0, "{st:?}");
    }
    // A fixed window overflows the same buffer and retransmits.
    assert!(f.ingress.dropped > 0, "{f:?}");
    assert!(f.retransmits > 0, "{f:?}");
    assert!(f.ingress.max_queue > 3 * pull);
    assert_eq!((f.credit_reqs, f.credits), (0, 0));
    assert!(r.utilisation() > f.utilisation(), "rccc {r:?}\nfixed {f:?}");
    // With a speculative first window the first RTT may overflow, but it recovers and ends
    // at least as fast as the fixed window, with far fewer drops.
    assert!(s.ingress.dropped < f.ingress.dropped, "{s:?}");
    assert!(s.utilisation() > 0.8, "{:.3}", s.utilisation());
}

#[test]
fn credit_survives_one_percent_loss() {
    // Loss on every datagram, credit and credit requests included.
    let link = Link {
        latency: Duration::from_micros(2),
        rate: RATE,
        loss: 0.01,
        ..Link::default()
    };
    let credit = config(rccc(true, 64 << 10));
    let o = incast(credit, &[credit; 8], link, BUFFER, 7);
    assert!(o.retransmits > 0, "the loss was felt: {o:?}");
    assert!(o.credit_reqs > 0 && o.credits > 0);
    assert!(o.utilisation() > 0.3, "{:.3}", o.utilisation());
}

#[test]
fn lost_credit_and_requests_are_recovered() {
    // Drop the first four CREDIT_REQs and every third CREDIT: the senders re-request on
    // their timer, the receiver repeats a CREDIT the request shows was missed.
    let credit = config(rccc(false, 64 << 10));
    let link = Link {
        latency: Duration::from_micros(2),
        rate: RATE,
        ..Link::default()
    };
    let mut net = Net::new(3, credit, link, 3);
    let (a, ra) = net.connect(1, 0, Duration::from_millis(10)).unwrap();
    let (b, rb) = net.connect(2, 0, Duration::from_millis(10)).unwrap();
    let mut reqs = 0;
    let mut credits = 0;
    net.tap = Some(Box::new(move |_, bytes| {
        match weir_wire::Opcode::try_from(bytes[1]) {
            Ok(Opcode::CreditReq) => {
                reqs += 1;
                if reqs <= 4 {
                    return Fate::Drop;
                }
            }
            Ok(Opcode::Credit) => {
                credits += 1;
                if credits % 3 == 0 {
                    return Fate::Drop;
                }
            }
            _ => {}
        }
        Fate::Pass
    }));
    let size = 1 << 20;
    let (dst, _) = net.region(0, 2 * size, |_| 0, false);
    for (i, (s, c, r)) in [(1, a, ra), (2, b, rb)].into_iter().enumerate() {
        let (src, _) = net.region(s, size, |_| 1, false);
        let now = net.now;
        net.eps[0]
            .post(
                now,
                r,
                WorkRequest::Recv {
                    region: dst,
                    offset: (i * size) as u64,
                    len: size as u64,
                    tag: None,
                },
            )
            .unwrap();
        net.eps[s]
            .post(
                now,
                c,
                WorkRequest::Send {
                    region: src,
                    offset: 0,
                    len: size as u64,
                    tag: 0,
                },
            )
            .unwrap();
    }
    let done = net.run_until(Duration::from_millis(100), |n| {
        n.completions(0).filter(|c| c.status.is_ok()).count() == 2
    });
    assert!(done, "stalled");
    let sa = net.eps[1].conn_stats(a).unwrap();
    let sb = net.eps[2].conn_stats(b).unwrap();
    let rx = net.eps[0].conn_stats(ra).unwrap();
    // More requests went out than arrived, and more CREDITs than the grants arrived.
    assert!(
        sa.credit_reqs_sent + sb.credit_reqs_sent >= 4 + 2,
        "{sa:?} {sb:?}"
    );
    assert!(rx.credits_sent > 0);
    assert_eq!(sa.retransmits + sb.retransmits, 0);
    let eps = net.eps[0].stats();
    assert!(eps.credit_grants > 0 && eps.credit_bytes_granted >= 2 * size as u64);
}

#[test]
fn credit_and_non_credit_senders_share_a_receiver() {
    let link = Link {
        latency: Duration::from_micros(2),
        rate: RATE,
        ..Link::default()
    };
    let credit = config(rccc(true, 64 << 10));
    let small_fixed = config(CcConfig::Fixed {
        window: 64 << 10,
        rate: None,
    });
    let nscc = config(CcConfig::by_name("nscc").unwrap());
    // The receiver itself runs a fixed window: credit is served whatever its own controller.
    let senders = [
        credit,
        small_fixed,
        nscc,
        credit,
        small_fixed,
        credit,
        nscc,
        credit,
    ];
    let o = incast(small_fixed, &senders, link, 1 << 20, 5);
    for (cfg, st) in senders.iter().zip(&o.senders) {
        if matches!(cfg.cc, CcConfig::Rccc(_)) {
            assert!(st.credit_reqs_sent > 0 && st.credits_received > 0, "{st:?}");
        } else {
            assert_eq!((st.credit_reqs_sent, st.credits_received), (0, 0), "{st:?}");
        }
    }
}

#[test]
fn the_receiver_paces_grants_at_its_link_rate() {
    // One sender, no speculation, a receiver whose credit rate is a quarter of the line
    // rate: the transfer takes as long as the credit rate says, not the line rate.
    let mut p = RcccParams::default();
    p.speculative = false;
    p.max_wnd = 64 << 10;
    p.link_rate = Rate::from_gbps(25);
    let receiver = config(CcConfig::Rccc(p));
    let sender = config(rccc(false, 64 << 10));
    let link = Link {
        latency: Duration::from_micros(1),
        rate: RATE,
        ..Link::default()
    };
    let o = incast(receiver, &[sender], link, 1 << 30, 11);
    // 512 KiB at 25 Gb/s is 168 µs. The last pull is granted one pull's time before the
    // credit clock reaches the total, the wire bytes add under 1 %, the first RTT a little.
    let ideal = Rate::from_gbps(25).serialization_time(o.bytes);
    let pull = Rate::from_gbps(25).serialization_time(4 * PACKET);
    assert!(o.elapsed + pull >= ideal, "{} < {ideal}", o.elapsed);
    assert!(
        o.elapsed < ideal + Duration::from_micros(20),
        "{} vs {ideal}",
        o.elapsed
    );
}

/// A long-running RCCC incast: `n` senders each with `msgs` messages of `SIZE` posted at once
/// into endpoint 0 behind its bottleneck. `step(net, done)` runs before every simulation step
/// with the number of receives completed so far; the returned trace has, per sender, how many
/// of its receives had completed each time `done` crossed a multiple of `every`.
fn staged(
    receiver: Config,
    n: usize,
    msgs: usize,
    every: usize,
    mut step: impl FnMut(&mut Net, usize),
) -> (Net, Vec<Vec<usize>>, Vec<weir_base::Instant>) {
    let sender = config(rccc(false, 128 << 10));
    let link = Link {
        latency: Duration::from_micros(2),
        rate: RATE,
        ..Link::default()
    };
    let mut net = Net::new(n + 1, receiver, link, 21);
    for i in 1..=n {
        let mut e = Endpoint::new(sender, net.addrs[i], 21 ^ (i as u64) << 8).unwrap();
        e.listen(true);
        net.eps[i] = e;
    }
    net.set_ingress(0, RATE, BUFFER);
    let mut conns = Vec::new();
    for i in 1..=n {
        conns.push(
            net.connect(i, 0, Duration::from_millis(10))
                .expect("connect"),
        );
    }
    let (dst, _) = net.region(0, SIZE, |_| 0, false);
    let start = net.now;
    for (i, &(cs, cr)) in conns.iter().enumerate() {
        let (src, _) = net.region(i + 1, SIZE, |b| b as u8, false);
        for m in 0..msgs {
            let recv = WorkRequest::Recv {
                region: dst,
                offset: 0,
                len: SIZE as u64,
                tag: Some(m as u64),
            };
            net.eps[0].post(start, cr, recv).unwrap();
            let send = WorkRequest::Send {
                region: src,
                offset: 0,
                len: SIZE as u64,
                tag: m as u64,
            };
            net.eps[i + 1].post(start, cs, send).unwrap();
        }
    }
    let total = n * msgs;
    let mut trace = Vec::new();
    let mut times = Vec::new();
    let deadline = start + Duration::from_secs(2);
    loop {
        let done: Vec<usize> = conns
            .iter()
            .map(|&(_, cr)| {
                net.completions(0)
                    .filter(|c| c.conn == cr && c.status.is_ok())
                    .count()
            })
            .collect();
        let sum: usize = done.iter().sum();
        if sum >= every * (trace.len() + 1) {
            trace.push(done);
            times.push(net.now);
        }
        if sum == total {
            break;
        }
        step(&mut net, sum);
        assert!(
            net.now < deadline && net.step(deadline),
            "stalled at {sum}/{total}"
        );
    }
    (net, trace, times)
}

fn jain(xs: &[f64]) -> f64 {
    let s: f64 = xs.iter().sum();
    let q: f64 = xs.iter().map(|x| x * x).sum();
    if q == 0.0 {
        1.0
    } else {
        s * s / (xs.len() as f64 * q)
    }
}

/// Eight backlogged RCCC senders get equal shares of the receiver's credit: at every
/// quarter of the transfer, each has had (nearly) the same number of messages delivered.
#[test]
fn eight_credit_senders_share_the_link_fairly() {
    let (net, trace, _) = staged(config(fixed()), 8, 32, 64, |_, _| {});
    assert_eq!(trace.len(), 4);
    for (k, done) in trace.iter().enumerate() {
        let xs: Vec<f64> = done.iter().map(|&d| d as f64).collect();
        let j = jain(&xs);
        eprintln!(
            "after {} messages: per sender {done:?}, Jain {j:.4}",
            64 * (k + 1)
        );
        assert!(j >= 0.95, "Jain {j} with {done:?}");
    }
    let q = net.ingress_stats(0).unwrap();
    assert_eq!(q.dropped, 0, "{q:?}");
}

/// The receiver's link steps from 100 to 25 Gb/s and back; its operator reloads RCCC with the
/// new rate (`Endpoint::set_cc`). Credit follows: no drops at the bottleneck, and goodput
/// tracks each rate.
#[test]
fn credit_follows_a_rate_step() {
    let at = |gbps| {
        let mut p = RcccParams::default();
        p.link_rate = Rate::from_gbps(gbps);
        CcConfig::Rccc(p)
    };
    let receiver = config(at(100));
    let (n, msgs, every) = (4, 48, 48);
    let mut stepped = [false; 2];
    let (net, _, times) = staged(receiver, n, msgs, every, |net, done| {
        let now = net.now;
        if done >= every && !stepped[0] {
            stepped[0] = true;
            net.set_ingress_rate(0, Rate::from_gbps(25));
            net.eps[0].set_cc(now, at(25));
        }
        if done >= 2 * every && !stepped[1] {
            stepped[1] = true;
            net.set_ingress_rate(0, RATE);
            net.eps[0].set_cc(now, at(100));
        }
    });
    let q = net.ingress_stats(0).unwrap();
    assert_eq!(q.dropped, 0, "{q:?}");
    // Goodput of each third (48 messages of 64 KiB) against the rate in force.
    let bits = (every * SIZE * 8) as f64;
    let phases = [(times[0], times[1], 25.0), (times[1], times[2], 100.0)];
    for (from, to, gbps) in phases {
        let got = bits / to.saturating_since(from).as_secs_f64() / 1e9;
        eprintln!("phase at {gbps} Gb/s: goodput {got:.1} Gb/s");
        assert!(
            got >= 0.9 * gbps && got <= 1.02 * gbps,
            "{got} Gb/s at {gbps} Gb/s"
        );
    }
}

/// A sender with 64 KiB posted to a receiver whose CREDITs (and the sender's CREDIT_REQs)
/// never arrive; keepalives and ACKs do. Peer timeout 20 ms.
fn starved_sender() -> (Net, weir_transport::ConnId) {
    let mut credit = config(rccc(false, 64 << 10));
    credit.peer_timeout = Duration::from_millis(20);
    credit.keepalive = Duration::from_millis(2);
    let link = Link {
        latency: Duration::from_micros(2),
        rate: RATE,
        ..Link::default()
    };
    let mut net = Net::new(2, credit, link, 5);
    let (c, r) = net.connect(1, 0, Duration::from_millis(10)).unwrap();
    net.tap = Some(Box::new(|_, bytes| {
        match weir_wire::Opcode::try_from(bytes[1]) {
            Ok(Opcode::Credit | Opcode::CreditReq) => Fate::Drop,
            _ => Fate::Pass,
        }
    }));
    let size = 64 << 10;
    let (dst, _) = net.region(0, size, |_| 0, false);
    let (src, _) = net.region(1, size, |_| 1, false);
    let now = net.now;
    let recv = WorkRequest::Recv {
        region: dst,
        offset: 0,
        len: size as u64,
        tag: None,
    };
    net.eps[0].post(now, r, recv).unwrap();
    let send = WorkRequest::Send {
        region: src,
        offset: 0,
        len: size as u64,
        tag: 0,
    };
    net.eps[1].post(now, c, send).unwrap();
    (net, c)
}

#[test]
fn a_peer_that_never_grants_credit_fails_the_sender_with_a_reason() {
    // The receiver's CREDITs never arrive (as with a peer that does not speak RCCC and drops
    // opcodes 9 and 10); keepalives and ACKs still do, so the peer is not silent. The send
    // must fail with the reason after the peer timeout instead of waiting forever.
    let (mut net, c) = starved_sender();
    let failed = net.run_until(Duration::from_millis(200), |n| {
        n.completions(1).any(|c| c.status.is_err())
    });
    assert!(failed, "the starved sender never failed");
    let err = net
        .completions(1)
        .find_map(|c| c.status.err())
        .expect("an error completion");
    let text = err.to_string();
    assert!(text.contains("no credit from the peer"), "{text}");
    assert!(net.eps[1].conn_stats(c).unwrap().credit_stalls >= 1);
}

#[test]
fn switching_a_starved_sender_away_from_credit_lets_it_finish() {
    // The same starved sender, reconfigured to a fixed window before the peer timeout: it
    // sends without credit from then on, and no credit stall fails it later.
    let (mut net, c) = starved_sender();
    net.run_until(Duration::from_millis(5), |_| false);
    assert!(net.eps[1].conn_stats(c).unwrap().credit_stalls >= 1);
    let now = net.now;
    net.eps[1].set_cc(now, fixed());
    let done = net.run_until(Duration::from_millis(200), |n| {
        n.completions(1).count() == 1
    });
    assert!(done, "the send never completed");
    assert!(net.completions(1).all(|c| c.status.is_ok()));
    // And nothing fails afterwards either (past the 20 ms peer timeout).
    net.run_until(Duration::from_millis(60), |_| false);
    assert!(!net.conn_failed(1, c));
}
