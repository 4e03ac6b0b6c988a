//! `weir bench allreduce|allgather|reduce-scatter` end to end: the executable spawns its ranks
//! (and, where Open MPI is installed, the MPI baseline), checks every result and prints one
//! JSON row per size.

use std::process::Command;

fn mpi_installed() -> bool {
    ["mpicc", "mpirun"].iter().all(|p| {
        Command::new(p)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

fn bench(op: &str, ranks: &str, extra: &[&str]) -> Vec<serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "bench", op, "--ranks", ranks, "--sizes", "8,100,1M", "--budget", "0.05",
        ])
        .args(["--json", "--timeout", "120"])
        .args(extra)
        .output()
        .expect("run weir");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "weir failed: {stdout}\n{stderr}");
    let rows: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json row"))
        .collect();
    assert_eq!(rows.len(), 3, "{stdout}");
    let n: u64 = ranks.parse().expect("ranks");
    for (r, size) in rows.iter().zip([8u64, 100, 1 << 20]) {
        assert_eq!(r["op"], op, "{r}");
        assert_eq!(r["ranks"].as_u64(), Some(n), "{r}");
        assert_eq!(r["size"].as_u64(), Some(size), "{r}");
        assert_eq!(r["wrong"].as_u64(), Some(0), "{r}");
        // Element counts are rounded up to a multiple of the ranks.
        let count = r["count"].as_u64().expect("count");
        assert!(count % n == 0 && count >= size.div_ceil(4), "{r}");
        assert!(r["busbw_gbps"].as_f64().is_some_and(|b| b > 0.0), "{r}");
    }
    rows
}

#[test]
fn allreduce_two_ranks_shared_memory_against_mpi() {
    let mpi = mpi_installed();
    let rows = bench("allreduce", "2", if mpi { &[] } else { &["--no-mpi"] });
    if mpi {
        for r in &rows {
            assert_eq!(r["mpi_wrong"].as_u64(), Some(0), "{r}");
            assert!(r["mpi_busbw_gbps"].as_f64().is_some_and(|b| b > 0.0), "{r}");
            assert!(r["ratio"].as_f64().is_some_and(|x| x > 0.0), "{r}");
        }
    } else {
        eprintln!("SKIPPED (MPI part): Open MPI not installed");
    }
}

#[test]
fn allgather_and_reduce_scatter_over_udp() {
    bench("allgather", "2", &["--no-mpi", "--transport", "udp"]);
    bench("reduce-scatter", "3", &["--no-mpi", "--transport", "udp"]);
}

#[test]
fn allreduce_four_ranks() {
    bench("allreduce", "4", &["--no-mpi"]);
}
