//! Receives posted ahead of sends: the receiver never runs out of buffers, so the sender must
//! see no receiver-not-ready NACK.

use weir_base::Duration;
use weir_tests::{Link, Net};
use weir_transport::{CompletionKind, Config, Event, WorkRequest};

#[test]
fn streaming_with_receives_posted_ahead_needs_no_rnr() {
    let size = 1 << 20;
    let window = 4;
    let total = 64;
    let mut net = Net::new(2, Config::default(), Link::default(), 5);
    let (c0, c1) = net.connect(0, 1, Duration::from_secs(1)).unwrap();
    let (src, _) = net.region(0, size * window, |i| i as u8, false);
    let (dst, _) = net.region(1, size * 2 * window, |_| 0, false);
    let now = net.now;
    for slot in 0..2 * window {
        let wr = WorkRequest::Recv {
            region: dst,
            offset: (slot * size) as u64,
            len: size as u64,
            tag: None,
        };
        net.eps[1].post(now, c1, wr).unwrap();
    }
    for slot in 0..window {
        let wr = WorkRequest::Send {
            region: src,
            offset: (slot * size) as u64,
            len: size as u64,
            tag: 0,
        };
        net.eps[0].post(now, c0, wr).unwrap();
    }
    let (mut sent, mut sends_done, mut recvs_done) = (window, 0, 0);
    let (mut seen0, mut seen1) = (0, 0);
    // Drive the network step by step so every completion triggers a repost at once.
    let deadline = net.now + Duration::from_secs(10);
    while (sends_done < total || recvs_done < total) && net.now < deadline {
        if !net.step(deadline) {
            break;
        }
        let now = net.now;
        while seen0 < net.events[0].len() {
            if let Event::Completion(c) = net.events[0][seen0] {
                assert!(c.status.is_ok());
                if c.kind == CompletionKind::Send {
                    sends_done += 1;
                    if sent < total {
                        let slot = sent % window;
                        let wr = WorkRequest::Send {
                            region: src,
                            offset: (slot * size) as u64,
                            len: size as u64,
                            tag: 0,
                        };
                        net.eps[0].post(now, c0, wr).unwrap();
                        sent += 1;
                    }
                }
            }
            seen0 += 1;
        }
        while seen1 < net.events[1].len() {
            if let Event::Completion(c) = net.events[1][seen1] {
                assert!(c.status.is_ok());
                if c.kind == CompletionKind::Recv {
                    recvs_done += 1;
                    let wr = WorkRequest::Recv {
                        region: dst,
                        offset: ((recvs_done % (2 * window)) * size) as u64,
                        len: size as u64,
                        tag: None,
                    };
                    net.eps[1].post(now, c1, wr).unwrap();
                }
            }
            seen1 += 1;
        }
    }
    let st = net.eps[0].conn_stats(c0).unwrap();
    assert_eq!((sends_done, recvs_done), (total, total));
    assert_eq!(st.rnr_nacks, 0, "{st:?}");
}
