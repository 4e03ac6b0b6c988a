//! `weir bench nccl-abi` end to end: the real executable spawns its peer processes, drives
//! the plugin's v12 table and the socket baseline, and prints one JSON row per point.

use std::process::Command;

/// `weir bench nccl-abi --loss 0,1% --bytes-per-point 8M --repeat 1 --json` with `extra`
/// arguments, on loopback: its JSON rows (and its stdout, for messages).
fn json_rows(extra: &[&str]) -> (Vec<serde_json::Value>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "bench",
            "nccl-abi",
            "--loss",
            "0,1%",
            "--bytes-per-point",
            "8M",
        ])
        .args(["--repeat", "1", "--json"])
        .args(extra)
        .env("WEIR_IFNAME", "lo")
        .output()
        .expect("run weir");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "weir {extra:?} failed: {stdout}\n{stderr}"
    );
    let rows = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json row"))
        .collect();
    (rows, stdout)
}

#[test]
fn nccl_abi_quick_run_moves_everything() {
    let (rows, stdout) = json_rows(&["--sizes", "64K,1M"]);
    // Per size: the socket baseline, then weir at 0 and 1 %.
    assert_eq!(rows.len(), 6, "{stdout}");
    for r in &rows {
        assert_eq!(r["complete"], true, "{r}");
        assert!(r["algbw"].as_f64().is_some_and(|b| b > 0.0), "{r}");
        assert_eq!(r["algbw"], r["busbw"], "{r}");
        let size = r["size"].as_u64().expect("size");
        assert_eq!(r["count"].as_u64(), Some((8 << 20) / size), "{r}");
    }
    assert_eq!(rows[0]["net"], "socket");
    assert_eq!(rows[1]["net"], "weir");
    assert!(rows[1]["vs_socket"].as_f64().is_some());
}

/// Issue 14: the plugin rows through each firmware placement (`--engine inproc`: an engine
/// thread in each peer; `--engine daemon`: a `weir engine` daemon per peer, the receiver's
/// injecting the loss) move every byte and carry their placement; the socket rows carry
/// none.
#[test]
fn nccl_abi_rows_through_each_engine_placement() {
    for engine in ["inproc", "daemon"] {
        let (rows, stdout) = json_rows(&["--sizes", "1M", "--engine", engine]);
        assert_eq!(rows.len(), 3, "{engine}: {stdout}");
        assert!(rows[0].get("engine").is_none(), "{}", rows[0]);
        for r in &rows[1..] {
            assert_eq!(r["engine"], engine, "{r}");
            assert_eq!(r["complete"], true, "{engine}: {r}");
            assert_eq!(r["count"].as_u64(), Some(8), "{r}");
        }
    }
}
