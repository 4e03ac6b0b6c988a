//! Runs the built `weir` binary: `weir bench incast --senders 4 --quick --json` end to end, a
//! receiver and four sender processes per phase. Asserts on the output's shape and on
//! completion, never on timing (the CI machine is shared).

use std::process::Command;

use serde_json::Value;

const WEIR: &str = env!("CARGO_BIN_EXE_weir");

/// Keys every `--json` row carries.
const KEYS: [&str; 14] = [
    "senders",
    "sender",
    "size",
    "messages",
    "expected",
    "goodput_gbps",
    "p50_us",
    "p99_us",
    "max_us",
    "retransmits",
    "rtos",
    "spurious_retransmits",
    "ratio_to_single",
    "complete",
];

/// `weir bench incast --senders 4 --quick --json` with `extra` arguments: its rows, its
/// summary and its stdout (for messages).
fn quick_rows(extra: &[&str]) -> (Vec<Value>, Value, String) {
    let out = Command::new(WEIR)
        .args(["bench", "incast", "--senders", "4", "--quick", "--json"])
        .args(extra)
        .output()
        .expect("run weir");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "weir failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let mut rows: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let summary = rows.pop().expect("a summary line");
    let summary = summary["summary"].clone();
    assert!(
        summary.is_object(),
        "the last line is the summary: {stdout}"
    );
    (rows, summary, stdout)
}

#[test]
fn quick_incast_completes_every_message() {
    let (rows, summary, stdout) = quick_rows(&["--repeat", "2"]);
    // Per round: one sender and its aggregate, then four senders and theirs.
    assert_eq!(rows.len(), 2 * (2 + 5), "{stdout}");
    for row in &rows {
        for key in KEYS {
            assert!(row.get(key).is_some(), "missing {key}: {row}");
        }
        assert_eq!(row["complete"], true, "{row}");
        assert_eq!(row["messages"], row["expected"], "{row}");
    }
    for round in [1, 2] {
        let of_round: Vec<&Value> = rows.iter().filter(|r| r["round"] == round).collect();
        assert_eq!(of_round.len(), 7, "{stdout}");
        // The reference's one sender moves what the four move together.
        assert_eq!(of_round[0]["senders"], 1);
        assert_eq!(of_round[0]["messages"], 32);
        let per_sender: Vec<&&Value> = of_round
            .iter()
            .filter(|r| r["senders"] == 4 && !r["sender"].is_null())
            .collect();
        assert_eq!(per_sender.len(), 4);
        for (i, r) in per_sender.iter().enumerate() {
            assert_eq!(r["sender"], i as u64);
            assert_eq!(r["messages"], 8);
        }
        let agg = of_round.last().expect("aggregate");
        assert!(agg["sender"].is_null());
        assert_eq!(agg["messages"], 32);
        assert!(agg["goodput_gbps"].as_f64().is_some(), "{agg}");
        assert!(agg["single_gbps"].as_f64().is_some(), "{agg}");
    }
    assert_eq!(summary["rounds"], 2);
    assert_eq!(summary["complete"], true);
    assert_eq!(summary["ratios"].as_array().map(Vec::len), Some(2));
    assert!(summary["ratio_median"].as_f64().is_some(), "{summary}");
}

/// Issue 14: the four senders attached to one `weir engine` daemon the bench starts; every
/// message completes and the rows carry their sender counters (through the rings).
#[test]
fn quick_incast_through_one_daemon() {
    let (rows, summary, stdout) = quick_rows(&["--engine", "daemon"]);
    assert_eq!(summary["rounds"], 1);
    assert_eq!(rows.len(), 2 + 5, "{stdout}");
    for row in &rows {
        assert_eq!(row["complete"], true, "{row}");
        assert_eq!(row["messages"], row["expected"], "{row}");
        if !row["sender"].is_null() {
            assert!(
                row["retransmits"].is_u64(),
                "counters through the rings: {row}"
            );
        }
    }
}
