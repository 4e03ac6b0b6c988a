//! Runs the built `weir` binary: `weir bench transport --quick` end to end, two peer processes
//! per point. Asserts on the output's shape, never on timing (the CI machine is shared).

use std::process::Command;

use serde_json::Value;
use weir_bench::Mode;
use weir_bench::peer::PeerCmd;
use weir_bench::report;
use weir_bench::transport::{Event, TransportOptions};

const WEIR: &str = env!("CARGO_BIN_EXE_weir");

/// Keys every `--json` row carries.
const KEYS: [&str; 9] = [
    "mode",
    "loss",
    "size",
    "goodput_gbps",
    "tcp_gbps",
    "retx_ratio",
    "p50_us",
    "p99_us",
    "ratio_to_tcp",
];

fn json_rows(args: &[&str]) -> Vec<Value> {
    let out = Command::new(WEIR)
        .args(["bench", "transport", "--quick", "--json"])
        .args(args)
        .output()
        .expect("run weir");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "weir failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[test]
fn quick_tcp_json_rows() {
    let rows = json_rows(&["--modes", "tcp"]);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    for key in KEYS {
        assert!(row.get(key).is_some(), "missing {key}: {row}");
    }
    assert_eq!(row["mode"], "tcp");
    assert_eq!(row["loss"], 0.0);
    assert_eq!(row["size"], 1 << 20);
    assert_eq!(row["complete"], true, "{row}");
    let goodput = row["goodput_gbps"].as_f64().expect("goodput measured");
    assert!(goodput > 0.0);
    assert_eq!(row["tcp_gbps"].as_f64(), Some(goodput));
    assert_eq!(row["ratio_to_tcp"].as_f64(), Some(1.0));
    assert!(row["p50_us"].as_f64().expect("p50") > 0.0);
    assert!(row["p99_us"].as_f64() >= row["p50_us"].as_f64());
    assert!(row["tcp_rtt_p50_us"].as_f64().expect("ping-pong") > 0.0);
    assert_eq!(row["machine"]["cpus"].as_u64().map(|n| n >= 1), Some(true));
}

#[test]
fn quick_weir_rows_have_the_same_shape() {
    // Whether or not the engine is built, every weir row carries every key (null when not
    // measured) and a TCP reference.
    let rows = json_rows(&["--modes", "weir"]);
    let weir: Vec<&Value> = rows.iter().filter(|r| r["mode"] == "weir").collect();
    assert_eq!(weir.len(), 2, "{rows:?}");
    for row in &weir {
        for key in KEYS {
            assert!(row.get(key).is_some(), "missing {key}: {row}");
        }
        assert!(row["tcp_gbps"].as_f64().expect("tcp measured") > 0.0);
    }
    let losses: Vec<f64> = weir.iter().filter_map(|r| r["loss"].as_f64()).collect();
    assert_eq!(losses, vec![0.0, 0.01]);
}

/// Issue 14: the weir rows through each firmware placement — an engine thread in each peer
/// (`inproc`), and a `weir engine` daemon per peer that the bench starts and stops
/// (`daemon`) — move every byte, carry their placement, and leave no daemon socket behind.
#[test]
fn quick_weir_rows_through_each_engine_placement() {
    for engine in ["inproc", "daemon"] {
        let rows = json_rows(&["--modes", "weir", "--loss", "0,1%", "--engine", engine]);
        let weir: Vec<&Value> = rows.iter().filter(|r| r["mode"] == "weir").collect();
        assert_eq!(weir.len(), 2, "{engine}: {rows:?}");
        for row in &weir {
            assert_eq!(row["engine"], engine, "{row}");
            assert_eq!(row["complete"], true, "{engine}: {row}");
            assert!(
                row["goodput_gbps"].as_f64().expect("measured") > 0.0,
                "{row}"
            );
            assert_eq!(row["bytes"], 16 << 20, "{row}");
        }
        let tcp = rows.iter().find(|r| r["mode"] == "tcp").expect("tcp row");
        assert!(tcp.get("engine").is_none(), "tcp has no engine: {tcp}");
    }
    let pid_sockets = std::fs::read_dir(std::env::temp_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with("weir-bench-") && n.ends_with(".sock")
        })
        .count();
    assert_eq!(
        pid_sockets, 0,
        "daemon sockets left in the temporary directory"
    );
}

#[test]
fn table_has_header_rows_and_footer() {
    let out = Command::new(WEIR)
        .args(["bench", "transport", "--quick", "--modes", "tcp"])
        .output()
        .expect("run weir");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("# machine: "), "{text}");
    assert!(text.contains("cpu pressure (some avg10) before"), "{text}");
    assert!(text.contains("cpu pressure (some avg10) after"), "{text}");
    assert!(text.contains("# ping-pong 8 B  tcp: RTT median"), "{text}");
    let rows: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(rows.len(), 1, "{text}");
    assert!(rows[0].trim_start().starts_with("tcp"), "{text}");
}

/// Issue 13: a point whose sender process is killed mid-stream is a failure — no goodput for
/// it, the peer named, and an error for the command to exit non-zero with (`weir` prints it
/// as `weir: …` and exits 1). The peers here are `weir bench-peer` behind a shell that kills
/// the sender's with SIGKILL once it has started (whenever that is: the test does not depend
/// on how far the stream got, nor on any timing).
#[test]
fn a_killed_sender_fails_its_point() {
    let script = r#"read -r line
case "$line" in
*'"role":"sender"'*)
    "$0" bench-peer <<PARAMS &
$line
PARAMS
    sleep 0.5
    kill -KILL $! 2>/dev/null
    wait
    kill -KILL $$ ;;
*)
    printf '%s\n' "$line" | exec "$0" bench-peer ;;
esac"#;
    let peer = PeerCmd {
        program: "sh".into(),
        args: vec!["-c".into(), script.into(), WEIR.into()],
    };
    let opts = TransportOptions {
        modes: Some(vec![Mode::Tcp]),
        point_secs: Some(30.0),
        bytes_per_point: Some(64 << 30),
        pingpong: Some(100),
        quick: true,
        ..TransportOptions::default()
    };
    let mut rows = Vec::new();
    let result = weir_bench::transport::run(&opts, &peer, &mut |e| {
        if let Event::Row(r) = e {
            rows.push(r.clone());
        }
    });
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(row.goodput_gbps, None, "{row:?}");
    assert_eq!(row.sender_gbps, None, "{row:?}");
    let e = row.error.as_deref().expect("the point failed");
    assert!(e.contains("sender exited without a report"), "{e}");
    assert!(e.contains("SIGKILL") || e.contains("signal: 9"), "{e}");
    let line = report::table_row(row);
    assert!(line.contains("FAILED: sender exited"), "{line}");
    let err = result.expect_err("the run fails").to_string();
    assert!(err.contains("points failed"), "{err}");
    assert!(
        err.contains("tcp loss 0 size 1 MiB: sender exited without a report"),
        "{err}"
    );
}

#[test]
fn help_is_meaningful() {
    for args in [
        &["--help"][..],
        &["bench", "--help"],
        &["bench", "transport", "--help"],
    ] {
        let out = Command::new(WEIR).args(args).output().expect("run weir");
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("bench") || text.contains("transport"),
            "{text}"
        );
    }
    let out = Command::new(WEIR).arg("--help").output().expect("run weir");
    // The peer subcommand is internal.
    assert!(!String::from_utf8_lossy(&out.stdout).contains("bench-peer"));
}
