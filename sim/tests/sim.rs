//! End-to-end simulator runs on small topologies (fast in the test profile).

use weir_sim::{QueuePolicy, Routing, Scenario, Summary, Topology, Workload, run};

fn scenario(topology: Topology, workload: Workload) -> Scenario {
    let mut s = Scenario::from_toml(
        r#"
        [topology]
        kind = "fat_tree"
        k = 4
        [workload]
        kind = "permutation"
        bytes = 1
        "#,
    )
    .expect("base scenario");
    s.topology = topology;
    s.workload = Some(workload);
    s
}

fn k4() -> Topology {
    Topology::FatTree {
        k: 4,
        link_gbps: 100,
        link_delay_ns: 1000,
    }
}

fn perm(bytes: u64) -> Scenario {
    scenario(k4(), Workload::Permutation { bytes })
}

fn ok(s: &Scenario) -> Summary {
    let r = run(s).expect("runs");
    assert_eq!(r.bad_completions, 0, "{r:?}");
    r
}

#[test]
fn same_seed_same_summary_other_seed_differs() {
    let mut s = perm(200_000);
    s.switch.link_loss = 0.001;
    s.switch.routing = Routing::Spray;
    let a = ok(&s);
    let b = ok(&s);
    assert_eq!(a, b);
    s.seed = 2;
    let c = ok(&s);
    assert_ne!(a.fct_ps, c.fct_ps);
}

#[test]
fn single_flow_reaches_line_rate() {
    let s = scenario(
        Topology::LeafSpine {
            leaves: 1,
            spines: 1,
            hosts_per_leaf: 2,
            host_gbps: 100,
            fabric_gbps: 100,
            link_delay_ns: 1000,
        },
        Workload::Incast {
            bytes: 4_000_000,
            senders: 1,
        },
    );
    let r = ok(&s);
    assert_eq!(r.completed, 1);
    let gbps = 4_000_000.0 * 8.0 / (r.last_fct_ps as f64 * 1e-12) / 1e9;
    // Payload goodput; headers and framing take ~3 % of the wire.
    assert!(gbps > 90.0 && gbps <= 100.0, "{gbps} Gb/s, {r:?}");
    assert_eq!(r.drops, 0);
}

#[test]
fn sprayed_permutation_delivers_every_byte_once() {
    let mut s = perm(500_000);
    s.switch.routing = Routing::Spray;
    let r = ok(&s);
    assert_eq!(r.hosts, 16);
    assert_eq!(r.completed, 16);
    assert_eq!(r.bytes_delivered, 16 * 500_000);
    assert!(r.fct_ps.iter().all(Option::is_some));
    assert!(r.events > 0 && r.packets > 16 * 500_000 / 4096);
}

#[test]
fn spraying_beats_single_path_ecmp() {
    let mut single = perm(1_000_000);
    single.transport.paths = 1;
    single.switch.routing = Routing::Ecmp;
    let mut sprayed = single.clone();
    sprayed.transport.paths = 64;
    let mut switch_spray = single.clone();
    switch_spray.switch.routing = Routing::Spray;
    let (a, b, c) = (ok(&single), ok(&sprayed), ok(&switch_spray));
    for r in [&a, &b, &c] {
        assert_eq!(r.completed, 16);
    }
    // With this seed some flows share an uplink under per-flow ECMP.
    assert!(
        b.last_fct_ps * 3 < a.last_fct_ps * 2,
        "entropy spraying {} vs ECMP {}",
        b.last_fct_ps,
        a.last_fct_ps
    );
    assert!(c.last_fct_ps * 3 < a.last_fct_ps * 2);
    assert!(b.slowdown_p99 < a.slowdown_p99);
}

#[test]
fn weir_beats_go_back_n_under_one_percent_loss() {
    let mut weir = perm(500_000);
    weir.switch.link_loss = 0.01;
    weir.transport.paths = 1;
    let mut gbn = weir.clone();
    gbn.transport.mode = "go_back_n".into();
    let (w, g) = (ok(&weir), ok(&gbn));
    assert_eq!(w.completed, 16);
    assert_eq!(g.completed, 16);
    assert!(w.drops > 0 && g.drops > 0);
    // Go-back-N resends whole windows per loss.
    assert!(g.retransmits > 3 * w.retransmits, "{g:?} vs {w:?}");
    assert!(w.last_fct_ps < g.last_fct_ps, "{w:?} vs {g:?}");
}

#[test]
fn incast_with_trimming_completes_and_trims() {
    let mut s = scenario(
        k4(),
        Workload::Incast {
            bytes: 500_000,
            senders: 8,
        },
    );
    s.switch.policy = QueuePolicy::Trim;
    s.switch.buffer_bytes = 64 << 10;
    let r = ok(&s);
    assert_eq!(r.completed, 8);
    assert!(r.trims > 0, "{r:?}");
    let mut d = s.clone();
    d.switch.policy = QueuePolicy::DropTail;
    let rd = ok(&d);
    assert_eq!(rd.completed, 8);
    assert_eq!(rd.trims, 0);
    assert!(rd.drops > 0);
}

#[test]
fn red_marks_ecn_and_int_reaches_hpcc() {
    let mut s = scenario(
        k4(),
        Workload::Incast {
            bytes: 300_000,
            senders: 4,
        },
    );
    s.switch.ecn_kmin_bytes = Some(10_000);
    s.switch.ecn_kmax_bytes = Some(50_000);
    s.transport.cc = "dcqcn".into();
    let r = ok(&s);
    assert_eq!(r.completed, 4);
    assert!(r.ecn_marks > 0, "{r:?}");
    let mut h = s.clone();
    h.transport.cc = "hpcc".into();
    h.switch.ecn_kmin_bytes = None;
    let rh = ok(&h);
    assert_eq!(rh.completed, 4);
    assert_eq!(rh.ecn_marks, 0);
    assert!(rh.int_records > 0 && r.int_records == 0, "{rh:?}");
}

#[test]
fn example_file_parses_and_bad_keys_are_rejected() {
    let text = include_str!("../../examples/sim/perm-128.toml");
    let s = Scenario::from_toml(text).expect("example parses");
    assert_eq!(s.workload, Some(Workload::Permutation { bytes: 2_000_000 }));
    assert!(Scenario::from_toml(&text.replace("k = 8", "k = 7")).is_err());
    assert!(Scenario::from_toml(&format!("{text}\n[extra]\nx = 1\n")).is_err());
    assert!(Scenario::from_toml(&text.replace("\"nscc\"", "\"nope\"")).is_err());
}

/// Numbers that would wrap or overflow the simulator's integer time and byte arithmetic are
/// refused, and the error names the key and its line (issue: `frame_overhead_bytes =
/// 4294967295` used to simulate faster than 0; 4294967000 failed with "connections did not
/// establish").
#[test]
fn out_of_range_numbers_are_refused_with_key_and_line() {
    let base = "[topology]\nkind = \"fat_tree\"\nk = 4\n\n[workload]\nkind = \"permutation\"\nbytes = 1000\n";
    for (extra, key, line) in [
        (
            "[run]\nframe_overhead_bytes = 4294967295\n",
            "run.frame_overhead_bytes",
            9,
        ),
        (
            "[run]\nframe_overhead_bytes = 4294967000\n",
            "run.frame_overhead_bytes",
            9,
        ),
        (
            "[run]\nmax_time_us = 18446744073709551615\n",
            "run.max_time_us",
            9,
        ),
        (
            "[run]\nhost_delay_ns = 10000000000\n",
            "run.host_delay_ns",
            9,
        ),
        ("[switch]\nbuffer_bytes = 0\n", "switch.buffer_bytes", 9),
        ("[switch]\nlink_loss = -0.5\n", "switch.link_loss", 9),
        (
            "[transport]\nack_delay_ns = 5000000000\n",
            "transport.ack_delay_ns",
            9,
        ),
        (
            "[[events]]\nat_us = 999999999999999\nlink = [0, 16]\naction = \"down\"\n",
            "events.0.at_us",
            9,
        ),
    ] {
        let text = format!("{base}{extra}");
        let e = Scenario::from_toml(&text).expect_err(extra).to_string();
        assert!(e.contains(&format!("`{key}`")), "{e}");
        assert!(e.contains(&format!("line {line}:")), "{e}");
    }
    let delay = base.replace("k = 4\n", "k = 4\nlink_delay_ns = 9000000000000\n");
    let e = Scenario::from_toml(&delay).expect_err("delay").to_string();
    assert!(
        e.contains("`topology.link_delay_ns`") && e.contains("line 4:"),
        "{e}"
    );
    // The largest values in range still run.
    let edge = format!("{base}[run]\nframe_overhead_bytes = 1024\nmax_time_us = 100\n");
    let s = Scenario::from_toml(&edge).expect("in range");
    run(&s).expect("runs");
}

/// A wrong value inside a kind-tagged table (`[topology]`, `[workload]`) names its key and
/// that key's line, not only the table's header.
#[test]
fn type_errors_in_tagged_tables_name_the_key() {
    let text = "[topology]\nkind = \"fat_tree\"\nk = 4\nlink_delay_ns = \"abc\"\n\n[workload]\nkind = \"permutation\"\nbytes = 1000\n";
    let e = Scenario::from_toml(text).expect_err("type").to_string();
    assert!(
        e.contains("line 4:") && e.contains("`link_delay_ns`"),
        "{e}"
    );
    let e = Scenario::from_toml(&text.replace("link_delay_ns = \"abc\"", "bogus = 1"))
        .expect_err("unknown")
        .to_string();
    assert!(e.contains("`bogus`"), "{e}");
    let negative = text
        .replace("link_delay_ns = \"abc\"", "link_delay_ns = 1000")
        .replace("bytes = 1000", "bytes = -1");
    let e = Scenario::from_toml(&negative)
        .expect_err("negative")
        .to_string();
    assert!(e.contains("line 8:") && e.contains("`bytes`"), "{e}");
}
