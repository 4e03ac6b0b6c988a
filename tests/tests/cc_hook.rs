//! The congestion-control hook: the engine feeds its controller ECN echoes and obeys the
//! window or rate it returns.

use weir_base::{Duration, Rate};
use weir_congestion::{CcConfig, DcqcnParams};
use weir_tests::{Link, Net};
use weir_transport::{Config, Event, WorkRequest};

/// Move `total` bytes in 256 KiB messages from endpoint 0 to 1; returns the virtual time it
/// took and the sender's controller state at the end.
fn run(cc: CcConfig, ecn: f64) -> (Duration, &'static str, weir_congestion::Limits, u64) {
    let mut config = Config::default();
    config.cc = cc;
    config.line_rate = Rate::from_gbps(100);
    let link = Link {
        ecn,
        rate: Rate::from_gbps(100),
        ..Link::default()
    };
    let mut net = Net::new(2, config, link, 9);
    let (c0, c1) = net.connect(0, 1, Duration::from_secs(1)).unwrap();
    let size = 256 << 10;
    let count = 32;
    let (src, _) = net.region(0, size, |i| i as u8, false);
    let (dst, ptr) = net.region(1, size * count, |_| 0, false);
    let start = net.now;
    for m in 0..count {
        let now = net.now;
        net.eps[1]
            .post(
                now,
                c1,
                WorkRequest::Recv {
                    region: dst,
                    offset: (m * size) as u64,
                    len: size as u64,
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
                    len: size as u64,
                    tag: m as u64,
                },
            )
            .unwrap();
    }
    let done = net.run_until(Duration::from_secs(5), |n| {
        n.events[1]
            .iter()
            .filter(|e| matches!(e, Event::Completion(c) if c.status.is_ok()))
            .count()
            == count
    });
    assert!(done, "transfer did not finish");
    // SAFETY: the harness keeps the memory alive and every receive completed.
    let got = unsafe { std::slice::from_raw_parts(ptr, size * count) };
    assert!(
        got.chunks(size)
            .all(|c| c.iter().enumerate().all(|(i, &b)| b == i as u8))
    );
    let (name, limits) = net.eps[0].congestion(c0).unwrap();
    let ecn_bytes = net.eps[1].conn_stats(c1).unwrap().rx_ecn_bytes;
    (net.now - start, name, limits, ecn_bytes)
}

#[test]
fn dcqcn_slows_down_on_ecn_marks_and_fixed_does_not() {
    let dcqcn = CcConfig::Dcqcn(DcqcnParams::default());
    let fixed = CcConfig::Fixed {
        window: 4 << 20,
        rate: None,
    };
    let (t_fixed, name_f, lim_f, _) = run(fixed, 0.05);
    let (t_clean, name_d, lim_clean, ecn_clean) = run(dcqcn, 0.0);
    let (t_marked, _, lim_marked, ecn_marked) = run(dcqcn, 0.05);
    assert_eq!((name_f, name_d), ("fixed", "dcqcn"));
    assert_eq!(lim_f.window, Some(4 << 20));
    assert_eq!(ecn_clean, 0);
    assert!(ecn_marked > 0, "the receiver counted CE-marked bytes");
    // Without marks DCQCN stays at line rate; with marks it cuts its rate and the transfer
    // takes longer than the same transfer under a fixed window.
    assert_eq!(lim_clean.rate, Some(Rate::from_gbps(100)));
    assert!(
        lim_marked.rate.unwrap() < Rate::from_gbps(100),
        "{lim_marked:?}"
    );
    assert!(
        t_marked > t_clean && t_marked > t_fixed,
        "dcqcn {t_marked} vs clean {t_clean} / fixed {t_fixed}"
    );
}
