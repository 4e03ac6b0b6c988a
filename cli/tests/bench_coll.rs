//! `weir bench allreduce|allgather|reduce-scatter` end to end: the executable spawns its ranks
//! (and, where Open MPI is installed, the MPI baseline), checks every result and prints one
//! JSON row per size and data-path pair.

use std::process::Command;

fn mpi_installed() -> bool {
    ["mpicc", "mpirun"].iter().all(|p| {
        Command::new(p)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// Runs `weir bench OP --ranks N --json ARGS…` and checks that it prints, for each Weir data
/// path in `paths` in turn, one correct row per size in `sizes`.
fn bench(
    op: &str,
    ranks: &str,
    args: &[&str],
    paths: &[&str],
    sizes: &[u64],
) -> Vec<serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["bench", op, "--ranks", ranks, "--json", "--timeout", "120"])
        .args(args)
        .output()
        .expect("run weir");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "weir failed: {stdout}\n{stderr}");
    let rows: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json row"))
        .collect();
    assert_eq!(rows.len(), paths.len() * sizes.len(), "{stdout}");
    let n: u64 = ranks.parse().expect("ranks");
    let want = paths
        .iter()
        .flat_map(|p| sizes.iter().map(move |s| (*p, *s)));
    for (r, (path, size)) in rows.iter().zip(want) {
        assert_eq!(r["op"], op, "{r}");
        assert_eq!(r["weir_path"], path, "{r}");
        assert!(r.get("mpi_btl").is_some(), "{r}");
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

/// Without Open MPI the bench still measures both Weir data paths (and says MPI is missing);
/// with it, each path is paired with Open MPI's path of the same kind.
#[test]
fn quick_allreduce_pairs_each_weir_path_with_its_like() {
    let mpi = mpi_installed();
    let rows = bench(
        "allreduce",
        "2",
        &["--quick"],
        &["shm", "udp"],
        &[8, 8 << 20],
    );
    for r in &rows {
        if mpi {
            let like = if r["weir_path"] == "shm" {
                "vader"
            } else {
                "tcp"
            };
            assert_eq!(r["mpi_btl"], like, "{r}");
            assert_eq!(r["mpi_wrong"].as_u64(), Some(0), "{r}");
            assert!(r["mpi_busbw_gbps"].as_f64().is_some_and(|b| b > 0.0), "{r}");
            assert!(r["ratio"].as_f64().is_some_and(|x| x > 0.0), "{r}");
        } else {
            assert!(r["mpi_btl"].is_null(), "{r}");
            assert!(r.get("ratio").is_none(), "{r}");
        }
    }
    if !mpi {
        weir_bench::report_skipped(
            "weir-cli bench_coll (the Open MPI baseline part)",
            "Open MPI not installed (no mpicc/mpirun)",
            Some("apt-get install -y openmpi-bin libopenmpi-dev"),
        );
    }
}

const SHORT: [&str; 4] = ["--sizes", "8,100,1M", "--budget", "0.05"];

#[test]
fn allgather_and_reduce_scatter_over_udp() {
    let udp = [&SHORT[..], &["--no-mpi", "--path", "udp"]].concat();
    let sizes = [8, 100, 1 << 20];
    for r in bench("allgather", "2", &udp, &["udp"], &sizes) {
        assert!(r["mpi_btl"].is_null(), "{r}");
    }
    // `--transport` is the old spelling of `--path`.
    let old = [&SHORT[..], &["--no-mpi", "--transport", "udp"]].concat();
    bench("reduce-scatter", "3", &old, &["udp"], &sizes);
}

#[test]
fn allreduce_four_ranks_shared_memory() {
    let shm = [&SHORT[..], &["--no-mpi", "--path", "shm"]].concat();
    bench("allreduce", "4", &shm, &["shm"], &[8, 100, 1 << 20]);
}
