//! One-sided writes and two-sided tag matching.
//!
//! Writes: bytes land at the remote offset and nowhere else, a write with notify produces a
//! `WriteReceived { imm }` at the target, a write outside the region (or with a bad key) fails
//! with `RemoteAccess`; on a clean link and under loss, mixed with sends.
//!
//! Sends: message *k* takes the first posted receive whose tag matches (receives posted in
//! another order than the sends, wildcard receives); a message that arrives before its receive
//! is buffered and delivered when the receive is posted; a message longer than its receive
//! completes it with `Truncated` and writes nothing past the buffer.

use std::collections::BTreeMap;

use proptest::prelude::*;
use weir_base::Duration;
use weir_tests::{Fate, Link, Net};
use weir_transport::{
    Completion, CompletionKind, Config, ConnError, ConnId, Event, RemoteRegion, WorkRequest,
    WrError, WrId,
};
use weir_wire::{Ext, NackReason, Opcode, PayloadMode};

fn config() -> Config {
    let mut c = Config::default();
    c.max_payload = 1024;
    c.rwnd_packets = 256;
    c.min_rto = Duration::from_micros(200);
    c.initial_rto = Duration::from_micros(500);
    c.peer_timeout = Duration::from_secs(30);
    c.keepalive = Duration::from_millis(100);
    c
}

fn lossy() -> Link {
    Link {
        loss: 0.10,
        reorder: 0.10,
        duplicate: 0.02,
        ..Link::default()
    }
}

/// Byte `i` of source `m`.
fn pattern(m: usize, i: usize) -> u8 {
    (m as u8)
        .wrapping_mul(29)
        .wrapping_add((i as u8).wrapping_mul(3))
        .wrapping_add((i >> 7) as u8)
        | 1
}

fn pair(link: Link, seed: u64) -> (Net, ConnId, ConnId) {
    let mut net = Net::new(2, config(), link, seed);
    let (c0, c1) = net
        .connect(0, 1, Duration::from_millis(50))
        .expect("connect");
    (net, c0, c1)
}

fn post(net: &mut Net, ep: usize, conn: ConnId, wr: WorkRequest) -> WrId {
    let now = net.now;
    net.eps[ep].post(now, conn, wr).expect("post")
}

/// The completion of `wr` at `ep`; exactly one.
fn completion(net: &Net, ep: usize, wr: WrId) -> Completion {
    let found: Vec<&Completion> = net.completions(ep).filter(|c| c.wr == wr).collect();
    assert_eq!(found.len(), 1, "completions of {wr:?} at {ep}: {found:?}");
    *found[0]
}

fn run(net: &mut Net, want: [usize; 2]) {
    let done = net.run_until(Duration::from_secs(5), |n| {
        n.completions(0).count() >= want[0] && n.completions(1).count() >= want[1]
    });
    assert!(
        done,
        "not done: {} / {} completions",
        net.completions(0).count(),
        net.completions(1).count()
    );
}

/// Where one write goes: (remote offset, length, notify).
const WRITES: [(u64, u64, Option<u32>); 6] = [
    (5000, 10_000, Some(0xC0FFEE)),
    (0, 1, None),
    (60_000 - 3000, 3000, Some(2)),
    (20_000, 0, Some(3)),
    (30_000, 4096, None),
    (40_000, 17_000, Some(u32::MAX)),
];
const TARGET: usize = 60_000;
const GUARD: usize = 64;

/// Writes from 0 into a guarded region of 1, interleaved with sends both ways; checks every
/// byte of the target and the notifications.
fn writes_and_sends(link: Link, seed: u64) {
    let (mut net, c0, c1) = pair(link, seed);
    let (target, tptr) = net.guarded_region(1, TARGET, GUARD, |_| 0x11, true);
    let rkey = net.eps[1].rkey(target);
    assert_ne!(rkey, 0);
    let mut expect = vec![0x11u8; TARGET];
    let mut writes = Vec::new();
    let mut sends = Vec::new();
    for (m, &(offset, len, notify)) in WRITES.iter().enumerate() {
        let (src, _) = net.region(0, len as usize + 7, |i| pattern(m, i), false);
        // Write from offset 7 of the source, so the source offset matters too.
        let wr = post(
            &mut net,
            0,
            c0,
            WorkRequest::Write {
                region: src,
                offset: 7,
                len,
                remote: RemoteRegion { rkey, offset },
                notify,
            },
        );
        for i in 0..len as usize {
            expect[offset as usize + i] = pattern(m, i + 7);
        }
        writes.push((wr, len, notify));
        // A send each way between the writes.
        for (s, r, cs, cr) in [(0, 1, c0, c1), (1, 0, c1, c0)] {
            let k = 100 + 2 * m + s;
            let len = 1500 * m + 10;
            let (src, _) = net.region(s, len, |i| pattern(k, i), false);
            let (dst, dptr) = net.region(r, len, |_| 0, false);
            let rw = post(
                &mut net,
                r,
                cr,
                WorkRequest::Recv {
                    region: dst,
                    offset: 0,
                    len: len as u64,
                    tag: Some(k as u64),
                },
            );
            let sw = post(
                &mut net,
                s,
                cs,
                WorkRequest::Send {
                    region: src,
                    offset: 0,
                    len: len as u64,
                    tag: k as u64,
                },
            );
            sends.push((s, sw, r, rw, dptr, len, k));
        }
    }
    let notified = WRITES.iter().filter(|w| w.2.is_some()).count();
    // 0: writes + its sends + its receives; 1: notifications + its sends + receives.
    run(
        &mut net,
        [WRITES.len() + sends.len(), notified + sends.len()],
    );
    for &(wr, len, _) in &writes {
        let c = completion(&net, 0, wr);
        assert_eq!(
            (c.kind, c.len, c.status),
            (CompletionKind::Write, len, Ok(()))
        );
    }
    // One notification per notifying write, with its immediate and length, none for others.
    let mut got: Vec<(u32, u64)> = net
        .completions(1)
        .filter_map(|c| match c.kind {
            CompletionKind::WriteReceived { imm } => {
                assert_eq!(c.conn, c1);
                assert_eq!(c.status, Ok(()));
                Some((imm, c.len))
            }
            _ => None,
        })
        .collect();
    let mut want: Vec<(u32, u64)> = WRITES
        .iter()
        .filter_map(|&(_, len, n)| n.map(|imm| (imm, len)))
        .collect();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want);
    assert!(
        net.bytes(tptr, TARGET) == expect.as_slice(),
        "target region differs"
    );
    assert!(
        net.guards_intact(tptr, TARGET, GUARD),
        "wrote outside the region"
    );
    for &(s, sw, r, rw, dptr, len, k) in &sends {
        let c = completion(&net, s, sw);
        assert_eq!((c.kind, c.status), (CompletionKind::Send, Ok(())));
        let c = completion(&net, r, rw);
        assert_eq!(
            (c.kind, c.len, c.tag, c.status),
            (CompletionKind::Recv, len as u64, k as u64, Ok(()))
        );
        let got = net.bytes(dptr, len);
        assert!(
            got.iter().enumerate().all(|(i, &b)| b == pattern(k, i)),
            "send {k} corrupted"
        );
    }
}

#[test]
fn writes_land_at_their_offset() {
    writes_and_sends(Link::default(), 1);
}

#[test]
fn writes_land_at_their_offset_under_loss() {
    for seed in 1..=8 {
        writes_and_sends(lossy(), seed);
    }
}

/// Writes that fall outside the target region, partly or wholly, or use a wrong key, fail
/// with `RemoteAccess`, write nothing outside the region, and do not notify. As with an RDMA
/// remote access error the connection then fails on both sides: a good write posted before
/// the bad one succeeds, one posted after it completes with `ConnectionLost(RemoteAccess)`.
///
/// A write only partly outside its region places none of its packets either: every packet
/// carries the write's whole extent and the receiver checks all of it, as InfiniBand checks
/// `[offset, offset + length)` on the first packet (case 3 goes to a region of its own).
fn out_of_bounds(link: Link, seed: u64) {
    let cases: [(u8, u64, u64); 5] = [
        (0, 8192, 1),            // just past the end
        (0, 8000, 1000),         // straddles the end, one packet
        (0, u64::MAX - 10, 100), // offset + length overflows
        (1, 0, 8193),            // longer than the region: the last packet is outside
        (2, 0, 100),             // wrong key
    ];
    for (i, &(which, offset, len)) in cases.iter().enumerate() {
        let (mut net, c0, c1) = pair(link, seed.wrapping_mul(31).wrapping_add(i as u64));
        let (target, tptr) = net.guarded_region(1, 8192, GUARD, |_| 0x11, true);
        let (partial, pptr) = net.guarded_region(1, 8192, GUARD, |_| 0x11, true);
        let (good, gptr) = net.region(1, 500, |_| 0x11, true);
        let [rkey, pkey, gkey] = [target, partial, good].map(|r| net.eps[1].rkey(r));
        let key = match which {
            0 => rkey,
            1 => pkey,
            _ => rkey ^ 0x0100_0000,
        };
        let (src, _) = net.region(0, 20_000, |i| pattern(1, i), false);
        let write = |key, offset, len, notify| WorkRequest::Write {
            region: src,
            offset: 0,
            len,
            remote: RemoteRegion { rkey: key, offset },
            notify,
        };
        let before = post(&mut net, 0, c0, write(gkey, 0, 100, None));
        run(&mut net, [1, 0]);
        let bad = post(&mut net, 0, c0, write(key, offset, len, Some(i as u32)));
        let after = post(&mut net, 0, c0, write(gkey, 100, 100, None));
        run(&mut net, [3, 0]);
        assert_eq!(completion(&net, 0, before).status, Ok(()));
        let c = completion(&net, 0, bad);
        assert_eq!(
            c.status,
            Err(WrError::RemoteAccess),
            "bad write {i} {:?}: {c:?}",
            cases[i]
        );
        assert_eq!(
            completion(&net, 0, after).status,
            Err(WrError::ConnectionLost(ConnError::RemoteAccess))
        );
        // The target learns why the connection ended.
        // (If the CLOSE is lost, the target's next keepalive draws it again.)
        let told = net.run_until(Duration::from_secs(2), |n| {
            n.events[1].iter().any(|e| {
                matches!(e, Event::ConnectionLost { conn, reason: ConnError::RemoteAccess, .. } if *conn == c1)
            })
        });
        assert!(told, "target not told of the access error");
        assert_eq!(
            net.completions(1).count(),
            0,
            "a refused write notified the target"
        );
        assert!(
            net.guards_intact(tptr, 8192, GUARD),
            "wrote outside the region"
        );
        assert!(
            net.guards_intact(pptr, 8192, GUARD),
            "wrote outside the region"
        );
        assert!(
            net.bytes(tptr, 8192).iter().all(|&b| b == 0x11),
            "a wholly refused write changed the target"
        );
        assert!(
            net.bytes(pptr, 8192).iter().all(|&b| b == 0x11),
            "a partly out-of-bounds write placed some of its packets"
        );
        let g = net.bytes(gptr, 100);
        assert!(g.iter().enumerate().all(|(i, &b)| b == pattern(1, i)));
    }
}

#[test]
fn out_of_bounds_writes_fail_remote_access() {
    out_of_bounds(Link::default(), 3);
}

/// Regression (fixed: refused write packets are never acknowledged and the connection fails
/// with a remote access error, as in RDMA). Was: the receiver reported a refused write with a single NACK (`AccessError`) but
/// still acknowledges the packet's PSN, and the writer marks the request failed only when
/// that NACK arrives. If the NACK is lost (or overtaken by the ACK, which then completes the
/// request first), the write completes `Ok(())` although nothing was written. Under 10 % loss
/// some of the refused writes here report success. Deterministic reproducer:
/// `refused_write_reports_success_when_its_nack_is_lost`.
#[test]
fn out_of_bounds_writes_fail_remote_access_under_loss() {
    for seed in 1..=8 {
        out_of_bounds(lossy(), seed);
    }
}

/// Minimal reproducer of the bug above: a one-packet write past the end of the target region,
/// on a clean link, with the receiver's one NACK dropped by a tap.
#[test]
fn refused_write_reports_success_when_its_nack_is_lost() {
    let (mut net, c0, _c1) = pair(Link::default(), 3);
    let (target, _) = net.region(1, 4096, |_| 0, true);
    let rkey = net.eps[1].rkey(target);
    let (src, _) = net.region(0, 100, |_| 1, false);
    let mut nacks = 0;
    net.tap = Some(Box::new(move |t, bytes| {
        match weir_wire::parse(bytes, PayloadMode::Bytes) {
            Ok(p)
                if t.src == 1 && p.header.common.opcode == Opcode::Nack && {
                    nacks += 1;
                    nacks == 1
                } =>
            {
                if let Ext::Nack(n) = p.header.ext {
                    assert_eq!(n.reason, NackReason::AccessError);
                }
                Fate::Drop
            }
            _ => Fate::Pass,
        }
    }));
    let wr = post(
        &mut net,
        0,
        c0,
        WorkRequest::Write {
            region: src,
            offset: 0,
            len: 100,
            remote: RemoteRegion { rkey, offset: 4096 },
            notify: None,
        },
    );
    run(&mut net, [1, 0]);
    assert_eq!(net.stats.tap_dropped, 1);
    assert_eq!(completion(&net, 0, wr).status, Err(WrError::RemoteAccess));
}

// ------------------------------------------------------------------------------------------
// Tag matching.

/// The matching rule (MPI's) as an oracle. Receives posted before the data (`early`):
/// messages in order, each takes the first untaken posted receive whose tag is `None` or
/// equal, and a message with no match stays unexpected without blocking later ones.
/// Receives posted after every message arrived: each receive, in posting order, takes the
/// earliest unmatched message it accepts. Returns message index → receive index.
fn oracle(msg_tags: &[u64], recv_tags: &[Option<u64>], early: bool) -> BTreeMap<usize, usize> {
    let accepts = |r: Option<u64>, tag: u64| r.is_none_or(|t| t == tag);
    let mut out = BTreeMap::new();
    if early {
        let mut taken = vec![false; recv_tags.len()];
        for (m, &tag) in msg_tags.iter().enumerate() {
            if let Some(r) = (0..recv_tags.len()).find(|&r| !taken[r] && accepts(recv_tags[r], tag))
            {
                taken[r] = true;
                out.insert(m, r);
            }
        }
    } else {
        let mut matched = vec![false; msg_tags.len()];
        for (r, &rt) in recv_tags.iter().enumerate() {
            if let Some(m) = (0..msg_tags.len()).find(|&m| !matched[m] && accepts(rt, msg_tags[m]))
            {
                matched[m] = true;
                out.insert(m, r);
            }
        }
    }
    out
}

/// Sends `msgs` (tag, length) from 0 to 1, with receives (tag, capacity) posted at 1 — before
/// the data when `early`, after the data arrived otherwise — and checks every receive against
/// the oracle: length, tag, status and bytes, and nothing written past any buffer.
fn matching(
    link: Link,
    seed: u64,
    msgs: &[(u64, usize)],
    recvs: &[(Option<u64>, usize)],
    early: bool,
) -> Result<(), TestCaseError> {
    const G: usize = 32;
    let (mut net, c0, c1) = pair(link, seed);
    let mut rwrs = Vec::new();
    let mut post_recvs = |net: &mut Net| {
        for &(tag, cap) in recvs {
            let (dst, ptr) = net.guarded_region(1, cap, G, |_| 0, false);
            let wr = post(
                net,
                1,
                c1,
                WorkRequest::Recv {
                    region: dst,
                    offset: 0,
                    len: cap as u64,
                    tag,
                },
            );
            rwrs.push((wr, ptr, cap));
        }
    };
    if early {
        post_recvs(&mut net);
    }
    let mut swrs = Vec::new();
    for (m, &(tag, len)) in msgs.iter().enumerate() {
        let (src, _) = net.region(0, len, |i| pattern(m, i), false);
        swrs.push(post(
            &mut net,
            0,
            c0,
            WorkRequest::Send {
                region: src,
                offset: 0,
                len: len as u64,
                tag,
            },
        ));
    }
    let expect = oracle(
        &msgs.iter().map(|m| m.0).collect::<Vec<_>>(),
        &recvs.iter().map(|r| r.0).collect::<Vec<_>>(),
        early,
    );
    if !early {
        // Every message is acknowledged (buffered as unexpected) before any receive exists.
        let sent = net.run_until(Duration::from_secs(5), |n| {
            n.completions(0).count() >= msgs.len()
        });
        prop_assert!(sent, "sends did not complete without receives");
        prop_assert_eq!(net.completions(1).count(), 0);
        post_recvs(&mut net);
    }
    let want = [msgs.len(), expect.len()];
    let done = net.run_until(Duration::from_secs(5), |n| {
        n.completions(0).count() >= want[0] && n.completions(1).count() >= want[1]
    });
    // Let stragglers show up, if any (there must be none).
    net.run_until(Duration::from_millis(2), |_| false);
    prop_assert!(
        done,
        "not done: {:?} / {:?}",
        net.completions(0).count(),
        net.completions(1).count()
    );
    prop_assert_eq!(
        net.completions(1).count(),
        expect.len(),
        "extra receive completions"
    );
    for &wr in &swrs {
        prop_assert_eq!(completion(&net, 0, wr).status, Ok(()));
    }
    for (&m, &r) in &expect {
        let (tag, len) = msgs[m];
        let (wr, ptr, cap) = rwrs[r];
        let c = completion(&net, 1, wr);
        let status = if len > cap {
            Err(WrError::Truncated {
                message: len as u64,
                buffer: cap as u64,
            })
        } else {
            Ok(())
        };
        prop_assert_eq!(
            (c.kind, c.len, c.tag, c.status),
            (CompletionKind::Recv, len as u64, tag, status),
            "receive {} (tag {:?}) should hold message {}",
            r,
            recvs[r].0,
            m
        );
        let n = len.min(cap);
        let got = net.bytes(ptr, cap);
        prop_assert!(
            got[..n]
                .iter()
                .enumerate()
                .all(|(i, &b)| b == pattern(m, i)),
            "receive {} does not hold message {}'s bytes",
            r,
            m
        );
        prop_assert!(
            got[n..].iter().all(|&b| b == 0),
            "receive {} written past the message",
            r
        );
        prop_assert!(
            net.guards_intact(ptr, cap, G),
            "receive {} written past its buffer",
            r
        );
    }
    Ok(())
}

/// Receives posted with tags in the reverse order of the sends: each message lands in the
/// receive with its tag.
#[test]
fn receives_match_by_tag_not_order() {
    let msgs = [(3, 5000), (1, 100), (2, 20_000), (0, 0), (7, 3000)];
    let recvs = [
        (Some(0), 10),
        (Some(7), 3000),
        (Some(2), 20_000),
        (Some(1), 200),
        (Some(3), 8000),
    ];
    for early in [true, false] {
        matching(Link::default(), 5, &msgs, &recvs, early).unwrap();
        matching(lossy(), 6, &msgs, &recvs, early).unwrap();
    }
}

/// Wildcard receives take whatever message comes first that no earlier-posted receive wants;
/// two messages with the same tag fill same-tag receives in posting order.
#[test]
fn wildcards_and_repeated_tags() {
    let msgs = [(5, 1000), (5, 2000), (9, 300), (5, 400)];
    let recvs = [
        (Some(9), 500),
        (None, 1000),
        (Some(5), 4000),
        (Some(5), 4000),
    ];
    // Message 0 (tag 5) takes the wildcard (posted before the first tag-5 receive), message 1
    // the first tag-5 receive, message 2 the tag-9 receive, message 3 the last one.
    assert_eq!(
        oracle(&[5, 5, 9, 5], &[Some(9), None, Some(5), Some(5)], true),
        BTreeMap::from([(0, 1), (1, 2), (2, 0), (3, 3)])
    );
    for early in [true, false] {
        matching(Link::default(), 7, &msgs, &recvs, early).unwrap();
        matching(lossy(), 8, &msgs, &recvs, early).unwrap();
    }
}

/// A message longer than its receive completes the receive with `Truncated`, fills exactly
/// the buffer, writes nothing past it; whether the receive was posted before the data arrived
/// (direct placement) or after (from the unexpected buffer). The next message is unaffected.
#[test]
fn truncated_receive_writes_nothing_past_the_buffer() {
    let msgs = [(1, 50_000), (2, 3000), (3, 1025)];
    let recvs = [(Some(1), 10_000), (Some(2), 3000), (Some(3), 1024)];
    for early in [true, false] {
        matching(Link::default(), 9, &msgs, &recvs, early).unwrap();
        matching(lossy(), 10, &msgs, &recvs, early).unwrap();
    }
}

/// A message that arrives before its receive when the unexpected-message budget is too small
/// to hold it: refused (NACK, out of resources) and resent until the receive is posted, then
/// delivered intact.
#[test]
fn unexpected_message_over_budget_waits_for_its_receive() {
    let mut cfg = config();
    cfg.unexpected_bytes = 16 << 10;
    let mut net = Net::new(2, cfg, Link::default(), 12);
    let (c0, c1) = net.connect(0, 1, Duration::from_millis(50)).unwrap();
    let len = 100_000;
    let (src, _) = net.region(0, len, |i| pattern(4, i), false);
    let sw = post(
        &mut net,
        0,
        c0,
        WorkRequest::Send {
            region: src,
            offset: 0,
            len: len as u64,
            tag: 4,
        },
    );
    net.run_until(Duration::from_millis(2), |_| false);
    assert_eq!(net.completions(0).count(), 0, "acknowledged without buffer");
    let refused = net.eps[1].conn_stats(c1).unwrap().rx_no_resources;
    assert!(refused > 0);
    let (dst, ptr) = net.region(1, len, |_| 0, false);
    let rw = post(
        &mut net,
        1,
        c1,
        WorkRequest::Recv {
            region: dst,
            offset: 0,
            len: len as u64,
            tag: Some(4),
        },
    );
    run(&mut net, [1, 1]);
    assert_eq!(completion(&net, 0, sw).status, Ok(()));
    let c = completion(&net, 1, rw);
    assert_eq!((c.len, c.tag, c.status), (len as u64, 4, Ok(())));
    assert!(
        net.bytes(ptr, len)
            .iter()
            .enumerate()
            .all(|(i, &b)| b == pattern(4, i))
    );
}

/// MPI semantics: a message whose receive is not posted yet is buffered as unexpected, and
/// later messages still match their posted receives. Here message 0 (tag 1) has no receive
/// yet, message 1 (tag 2) does; the tag-2 receive should complete without waiting for a tag-1
/// receive.
///
/// (Regression: matching used to stop at the first message without a receive, so an
/// MPI-style program — wait for tag 2, then post tag 1 — deadlocked.)
#[test]
fn unmatched_message_does_not_block_later_ones() {
    let (mut net, c0, c1) = pair(Link::default(), 13);
    let (a, _) = net.region(0, 100, |_| 1, false);
    let (b, _) = net.region(0, 100, |_| 2, false);
    let (dst, _) = net.region(1, 100, |_| 0, false);
    let rw = post(
        &mut net,
        1,
        c1,
        WorkRequest::Recv {
            region: dst,
            offset: 0,
            len: 100,
            tag: Some(2),
        },
    );
    for (region, tag) in [(a, 1), (b, 2)] {
        post(
            &mut net,
            0,
            c0,
            WorkRequest::Send {
                region,
                offset: 0,
                len: 100,
                tag,
            },
        );
    }
    let got = net.run_until(Duration::from_millis(10), |n| {
        n.completions(1).any(|c| c.wr == rw)
    });
    assert!(got, "the tag-2 receive waits for message 0's receive");
}

/// Messages (tag, length) and receives (tag, capacity).
type Case = (Vec<(u64, usize)>, Vec<(Option<u64>, usize)>);

fn tags() -> impl Strategy<Value = Case> {
    let msgs = prop::collection::vec((0u64..4, prop_oneof![0..3usize, 1..5000usize]), 1..8);
    msgs.prop_flat_map(|msgs| {
        // As many receives as messages, tags permuted, some turned into wildcards, capacities
        // sometimes short.
        let n = msgs.len();
        let tags: Vec<u64> = msgs.iter().map(|m| m.0).collect();
        (
            Just(msgs),
            Just(tags).prop_shuffle(),
            prop::collection::vec((any::<bool>(), 0..6000usize), n),
        )
            .prop_map(|(msgs, tags, extra)| {
                let recvs = tags
                    .into_iter()
                    .zip(extra)
                    .map(|(t, (wild, cap))| {
                        (if wild && cap % 3 == 0 { None } else { Some(t) }, cap)
                    })
                    .collect();
                (msgs, recvs)
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// Random tags, wildcards and capacities, receives before or after the data, over a
    /// lossy link: every receive holds what the matching rule says.
    #[test]
    fn matching_follows_the_rule((msgs, recvs) in tags(), early in any::<bool>(), seed in any::<u64>()) {
        matching(lossy(), seed, &msgs, &recvs, early)?;
    }
}
