//! A lost last packet costs a few round trips (tail-loss probe), not a retransmission timeout.
#![allow(clippy::needless_range_loop)]

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ptr::NonNull;

use weir_base::{Duration, Instant};
use weir_transport::{CompletionKind, Config, Endpoint, Event, Mode, Payload, RxMeta, WorkRequest};
use weir_wire::{Ecn, MAX_HEADER_LEN, Opcode, PayloadMode};

const ONE_WAY: Duration = Duration::from_micros(5);

/// Send one message of `len` bytes from A to B over a link with a fixed one-way delay and
/// no serialisation time, dropping the first transmission of the message's last data packet
/// when `drop_last`. Returns the time from posting to the send completion.
fn transfer(config: Config, len: usize, drop_last: bool) -> (Duration, weir_transport::ConnStats) {
    let addr = |i| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)), 4791);
    let mut eps = [
        Endpoint::new(config, addr(1), 1).unwrap(),
        Endpoint::new(config, addr(2), 2).unwrap(),
    ];
    eps[1].listen(true);
    let mut src = vec![7u8; len.max(1)].into_boxed_slice();
    let mut dst = vec![0u8; len.max(1)].into_boxed_slice();
    // SAFETY: both boxes outlive the endpoints (dropped at the end of this function).
    let (rs, rd) = unsafe {
        (
            eps[0].register(NonNull::new(src.as_mut_ptr()).unwrap(), len as u64, false),
            eps[1].register(NonNull::new(dst.as_mut_ptr()).unwrap(), len as u64, false),
        )
    };
    let mut now = Instant::ZERO;
    let conn = eps[0].connect(now, addr(2), 0);
    let mut wire: VecDeque<(Instant, usize, Vec<u8>)> = VecDeque::new();
    let mut accepted = None;
    let mut connected = false;
    let mut posted_at = None;
    let mut done_at = None;
    let mut dropped = false;
    let mut hdr = [0u8; MAX_HEADER_LEN];
    let last_offset =
        (len.saturating_sub(1) / config.max_payload as usize) * config.max_payload as usize;
    while done_at.is_none() && now < Instant::ZERO + Duration::from_secs(1) {
        for i in 0..2 {
            while let Some(t) = eps[i].poll_transmit(now, &mut hdr) {
                let mut bytes = hdr[..t.header_len].to_vec();
                if let Payload::Region { .. } = t.payload {
                    bytes.extend_from_slice(eps[i].payload(&t.payload).unwrap());
                }
                let p = weir_wire::parse(&bytes, PayloadMode::Bytes).unwrap();
                let is_last = p.header.common.opcode == Opcode::Data
                    && matches!(p.header.ext, weir_wire::Ext::Data(d) if d.msg_offset as usize == last_offset && d.msg_len as usize == len);
                if drop_last && is_last && !dropped {
                    dropped = true;
                    continue;
                }
                wire.push_back((now + ONE_WAY, 1 - i, bytes));
            }
            while let Some(e) = eps[i].poll_event() {
                match e {
                    Event::Connected { .. } => connected = true,
                    Event::Accepted { conn, .. } => accepted = Some(conn),
                    Event::Completion(c) if c.kind == CompletionKind::Send => done_at = Some(now),
                    _ => {}
                }
            }
        }
        if connected
            && posted_at.is_none()
            && let Some(c1) = accepted
        {
            eps[1]
                .post(
                    now,
                    c1,
                    WorkRequest::Recv {
                        region: rd,
                        offset: 0,
                        len: len as u64,
                        tag: None,
                    },
                )
                .unwrap();
            eps[0]
                .post(
                    now,
                    conn,
                    WorkRequest::Send {
                        region: rs,
                        offset: 0,
                        len: len as u64,
                        tag: 1,
                    },
                )
                .unwrap();
            posted_at = Some(now);
            continue;
        }
        let next_pkt = wire.front().map(|w| w.0);
        let next_timer = eps.iter().filter_map(|e| e.poll_timeout()).min();
        now = match (next_pkt, next_timer) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap(),
        }
        .max(now);
        while wire.front().is_some_and(|w| w.0 <= now) {
            let (_, to, bytes) = wire.pop_front().unwrap();
            let meta = RxMeta {
                from: addr(2 - to as u8),
                ecn: Ecn::NotEct,
                virtual_payload: false,
                int_hop: None,
            };
            eps[to].handle(now, meta, &bytes);
        }
        for e in &mut eps {
            if e.poll_timeout().is_some_and(|t| t <= now) {
                e.handle_timeout(now);
            }
        }
    }
    let stats = eps[0].conn_stats(conn).unwrap();
    assert!(dst.iter().take(len).all(|&b| b == 7), "payload intact");
    (done_at.expect("completed") - posted_at.unwrap(), stats)
}

#[test]
fn lost_last_packet_costs_round_trips_not_a_timeout() {
    let rtt = ONE_WAY.saturating_mul(2);
    for len in [100, 64 << 10] {
        let (clean, _) = transfer(Config::default(), len, false);
        let (lossy, stats) = transfer(Config::default(), len, true);
        let extra = lossy - clean;
        eprintln!(
            "{len} B: clean {clean}, last packet lost {lossy} (+{extra} = {:.1} RTT), {stats:?}",
            extra.as_ps() as f64 / rtt.as_ps() as f64
        );
        assert_eq!(stats.rto_events, 0, "recovered by a probe, not a timeout");
        assert!(stats.tlp_probes >= 1);
        assert!(
            extra <= rtt.saturating_mul(4),
            "tail loss cost {extra}, more than 4 RTTs of {rtt}"
        );
    }
}

#[test]
fn go_back_n_waits_for_the_timeout() {
    // The baseline has no probe: RoCE NICs wait for the ACK timeout.
    let cfg = Config::go_back_n();
    let (clean, _) = transfer(cfg, 64 << 10, false);
    let (lossy, stats) = transfer(cfg, 64 << 10, true);
    assert_eq!(cfg.mode, Mode::GoBackN);
    assert!(stats.rto_events >= 1, "{stats:?}");
    assert!(lossy - clean >= cfg.min_rto, "{clean} vs {lossy}");
}
