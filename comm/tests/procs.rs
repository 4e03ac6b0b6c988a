//! Ranks as real processes over UDP (`WEIR_SHM=0`), with and without 1 % injected loss, and a
//! process killed mid-operation.
//!
//! The test binary re-executes itself: the parent runs `current_exe() <test> --exact` with
//! the torchrun variables set and `WEIR_COMM_CHILD=1`; in the child the same test function
//! sees that variable and runs one rank's body. Each child exits 0 when its checks pass.
#![allow(clippy::disallowed_methods)]

mod common;

use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{Small, input, reduced};
use weir_comm::{CommOptions, Communicator, ReduceOp};

fn child_rank() -> Option<usize> {
    std::env::var("WEIR_COMM_CHILD").ok()?;
    std::env::var("RANK").ok()?.parse().ok()
}

/// A child marks that its body ran to the end (a child that matched no test would exit 0
/// without running anything).
fn done() {
    if let (Ok(dir), Some(r)) = (std::env::var("WEIR_COMM_DONE"), child_rank()) {
        std::fs::write(format!("{dir}/{r}"), b"ok").expect("done marker");
    }
}

/// Which ranks wrote their done marker in `dir`.
fn finished(dir: &std::path::Path, n: usize) -> Vec<bool> {
    (0..n).map(|r| dir.join(r.to_string()).exists()).collect()
}

/// Spawns `n` copies of this test binary running `test` as ranks, with `env` added.
fn spawn(test: &str, n: usize, env: &[(&str, String)]) -> Vec<Child> {
    let exe = std::env::current_exe().expect("current_exe");
    let addr = common::free_addr();
    let dir = marker_dir(test);
    let (host, port) = addr.rsplit_once(':').expect("addr");
    (0..n)
        .map(|r| {
            let mut c = Command::new(&exe);
            c.args([test, "--exact", "--nocapture", "--test-threads=1"])
                .env("WEIR_COMM_CHILD", "1")
                .env("RANK", r.to_string())
                .env("WORLD_SIZE", n.to_string())
                .env("LOCAL_RANK", r.to_string())
                .env("MASTER_ADDR", host)
                .env("MASTER_PORT", port)
                .env("WEIR_COMM_DONE", &dir)
                .stdout(Stdio::null());
            for (k, v) in env {
                c.env(k, v);
            }
            c.spawn().expect("spawn rank")
        })
        .collect()
}

/// Waits for every child (killing all after `limit`) and returns their statuses.
fn reap(mut kids: Vec<Child>, limit: Duration) -> Vec<Option<ExitStatus>> {
    let deadline = Instant::now() + limit;
    let mut out: Vec<Option<ExitStatus>> = vec![None; kids.len()];
    while out.iter().any(Option::is_none) && Instant::now() < deadline {
        for (k, o) in kids.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                *o = k.try_wait().expect("try_wait");
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for k in &mut kids {
        let _ = k.kill();
        let _ = k.wait();
    }
    out
}

/// The marker directory of `test` in this (parent) process.
fn marker_dir_of(test: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("weir-comm-{test}-{}", std::process::id()))
}

fn marker_dir(test: &str) -> std::path::PathBuf {
    let d = marker_dir_of(test);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("marker dir");
    d
}

fn options() -> CommOptions {
    let mut o = CommOptions::from_env().expect("options");
    if let Some(loss) = std::env::var("WEIR_TEST_LOSS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        o.host.fault_rx.drop = loss;
        o.host.fault_rx.seed = 0x1055 + std::process::id() as u64;
    }
    o
}

fn exchange<T: Small>(c: &Communicator, counts: &[usize]) {
    let (n, r) = (c.size(), c.rank());
    for &count in counts {
        for op in [ReduceOp::Sum, ReduceOp::Max] {
            let mut buf: Vec<T> = (0..count).map(|i| input(r, i, op)).collect();
            c.allreduce(&mut buf, op).expect("allreduce");
            assert_eq!(buf, reduced::<T>(n, count, op), "allreduce {count} {op:?}");
        }
        let mut buf: Vec<T> = (0..count).map(|i| input(r, i, ReduceOp::Sum)).collect();
        let own = c
            .reduce_scatter(&mut buf, ReduceOp::Sum)
            .expect("reduce_scatter");
        assert_eq!(buf[own.clone()], reduced::<T>(n, count, ReduceOp::Sum)[own]);
        let mut buf: Vec<T> = (0..count).map(|i| input(r, i, ReduceOp::Sum)).collect();
        c.allgather(&mut buf).expect("allgather");
        let want: Vec<T> = weir_collectives::chunks(count, n)
            .into_iter()
            .enumerate()
            .flat_map(|(q, ch)| ch.map(move |i| input(q, i, ReduceOp::Sum)))
            .collect();
        assert_eq!(buf, want, "allgather {count}");
    }
}

fn ranks_over_udp(test: &str, n: usize, loss: f64) {
    ranks_over_udp_with(test, n, loss, &[]);
}

/// `n` ranks over the transport, `loss` injected (by each rank's engine, or by the daemon
/// that `extra` names in `WEIR_ENGINE`, whose counters stay in the daemon).
fn ranks_over_udp_with(test: &str, n: usize, loss: f64, extra: &[(&str, String)]) {
    if child_rank().is_some() {
        let c = Communicator::from_env(&options()).expect("bootstrap");
        assert_eq!(c.size(), n);
        exchange::<f32>(&c, &[1, 1001, 1 << 20]);
        exchange::<i64>(&c, &[3, 65_537]);
        let daemon = matches!(
            weir_firmware::net::Placement::from_env(),
            Ok(weir_firmware::net::Placement::Daemon(_))
        );
        let stats = c.transport_stats();
        assert!(daemon || stats.is_some(), "ranks talk over the transport");
        if let Some(stats) = stats {
            if loss > 0.0 {
                // The injected loss really happened, and the transport recovered from it.
                assert!(stats.fault_rx.dropped > 0, "{stats:?}");
            } else {
                assert_eq!(stats.fault_rx.dropped, 0, "{stats:?}");
            }
        }
        c.barrier().expect("final barrier");
        done();
        return;
    }
    let mut env = vec![
        ("WEIR_SHM", "0".to_string()),
        ("WEIR_TEST_LOSS", loss.to_string()),
        ("WEIR_TIMEOUT_MS", "60000".into()),
    ];
    env.extend(extra.iter().cloned());
    let kids = spawn(test, n, &env);
    let st = reap(kids, Duration::from_secs(240));
    for (r, s) in st.iter().enumerate() {
        assert!(
            s.is_some_and(|s| s.success()),
            "rank {r} of {n} (loss {loss}): {s:?}"
        );
    }
    assert_eq!(finished(&marker_dir_of(test), n), vec![true; n]);
}

#[test]
fn two_processes_over_udp() {
    ranks_over_udp("two_processes_over_udp", 2, 0.0);
}

#[test]
fn four_processes_over_udp() {
    ranks_over_udp("four_processes_over_udp", 4, 0.0);
}

#[test]
fn two_processes_over_udp_one_percent_loss() {
    ranks_over_udp("two_processes_over_udp_one_percent_loss", 2, 0.01);
}

#[test]
fn four_processes_over_udp_one_percent_loss() {
    ranks_over_udp("four_processes_over_udp_one_percent_loss", 4, 0.01);
}

/// Issue 14: the ranks' transport on a firmware engine thread of each process
/// (`WEIR_ENGINE=inproc`), everything through descriptor rings.
#[test]
fn four_processes_over_udp_inproc_engine() {
    ranks_over_udp_with(
        "four_processes_over_udp_inproc_engine",
        4,
        0.01,
        &[("WEIR_ENGINE", "inproc".into())],
    );
}

/// Issue 14: four ranks through one `weir engine` daemon (`WEIR_ENGINE=daemon:<socket>`),
/// as the processes of one host share it, the daemon injecting `loss` on its receive path;
/// the ranks' tensors are reached by copy.
fn through_one_daemon(test: &str, loss: f64) {
    let daemon = if child_rank().is_none() {
        let path =
            std::env::temp_dir().join(format!("weir-comm-{test}-{}.sock", std::process::id()));
        let mut cfg = weir_datapath::HostConfig::default();
        cfg.udp.bind = std::net::Ipv4Addr::LOCALHOST.into();
        cfg.fault_rx.drop = loss;
        cfg.fault_rx.seed = 11;
        let d = weir_firmware::daemon::Daemon::start(
            &path,
            cfg,
            weir_firmware::EngineConfig::default(),
        )
        .expect("daemon");
        Some((d, path))
    } else {
        None
    };
    let engine = daemon
        .as_ref()
        .map_or(String::new(), |(_, p)| format!("daemon:{}", p.display()));
    ranks_over_udp_with(test, 4, 0.0, &[("WEIR_ENGINE", engine)]);
    if let Some((d, _)) = daemon {
        let st = d.stats().expect("stats");
        assert!(st.engine.completions > 0, "{st:?}");
    }
}

#[test]
fn four_processes_through_one_daemon() {
    through_one_daemon("four_processes_through_one_daemon", 0.0);
}

#[test]
fn four_processes_through_one_daemon_one_percent_loss() {
    through_one_daemon("four_processes_through_one_daemon_one_percent_loss", 0.01);
}

#[test]
fn four_processes_shared_memory() {
    if child_rank().is_some() {
        let c = Communicator::from_env(&options()).expect("bootstrap");
        exchange::<f32>(&c, &[7, 1 << 20]);
        exchange::<half::bf16>(&c, &[4099]);
        c.barrier().expect("final barrier");
        done();
        return;
    }
    let kids = spawn(
        "four_processes_shared_memory",
        4,
        &[("WEIR_SHM", "1".into())],
    );
    let st = reap(kids, Duration::from_secs(120));
    for (r, s) in st.iter().enumerate() {
        assert!(s.is_some_and(|s| s.success()), "rank {r}: {s:?}");
    }
    assert_eq!(
        finished(&marker_dir_of("four_processes_shared_memory"), 4),
        vec![true; 4]
    );
}

/// Rank 1 cannot allocate its shared-memory file (a file-size limit stands in for a full
/// `/dev/shm`): every rank falls back to the transport, says why, and still computes right.
#[test]
fn shm_setup_failure_falls_back_to_the_transport() {
    if let Some(r) = child_rank() {
        if r == 1 {
            // SAFETY: plain process-wide calls in a child process made for this test.
            unsafe {
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                let lim = libc::rlimit {
                    rlim_cur: 64 << 10,
                    rlim_max: libc::RLIM_INFINITY,
                };
                libc::setrlimit(libc::RLIMIT_FSIZE, &lim);
            }
        }
        let c = Communicator::from_env(&options()).expect("bootstrap");
        let why = c.shm_fallback().expect("a fallback reason");
        assert!(why.contains("rank 1"), "{why}");
        assert!(c.transport_stats().is_some());
        exchange::<f32>(&c, &[9, 100_003]);
        c.barrier().expect("final barrier");
        done();
        return;
    }
    let test = "shm_setup_failure_falls_back_to_the_transport";
    let kids = spawn(test, 3, &[("WEIR_SHM", "1".into())]);
    let st = reap(kids, Duration::from_secs(120));
    for (r, s) in st.iter().enumerate() {
        assert!(s.is_some_and(|s| s.success()), "rank {r}: {s:?}");
    }
    assert_eq!(finished(&marker_dir_of(test), 3), vec![true; 3]);
}

/// Rank 2 of 3 aborts (a crash: no goodbye) while the others are in an allreduce; both
/// survivors must fail naming rank 2, well within their timeout.
fn killed(test: &str, shm: bool) {
    if let Some(r) = child_rank() {
        let c = Communicator::from_env(&options()).expect("bootstrap");
        c.barrier().expect("barrier");
        if r == 2 {
            // Start the operation, then die in the middle of it.
            let mut buf = vec![1f32; 1 << 22];
            let mut req = c.iallreduce(&mut buf, ReduceOp::Sum).expect("start");
            let _ = req.test();
            std::process::abort();
        }
        let mut buf = vec![1f32; 1 << 22];
        let t0 = Instant::now();
        let e = c.allreduce(&mut buf, ReduceOp::Sum).expect_err("must fail");
        eprintln!("rank {r}: {e} after {:?}", t0.elapsed());
        assert_eq!(e.peer(), Some(2), "rank {r}: {e}");
        assert!(t0.elapsed() < Duration::from_secs(30));
        done();
        return;
    }
    let shm_env = if shm { "1" } else { "0" };
    let kids = spawn(
        test,
        3,
        &[
            ("WEIR_SHM", shm_env.into()),
            ("WEIR_TIMEOUT_MS", "30000".into()),
        ],
    );
    let st = reap(kids, Duration::from_secs(90));
    for (r, s) in st.iter().enumerate().take(2) {
        assert!(s.is_some_and(|s| s.success()), "rank {r}: {s:?}");
    }
    assert!(
        st[2].is_some_and(|s| !s.success()),
        "rank 2 should have aborted: {:?}",
        st[2]
    );
    assert_eq!(finished(&marker_dir_of(test), 3), vec![true, true, false]);
}

#[test]
fn killed_process_is_named_on_every_rank_udp() {
    killed("killed_process_is_named_on_every_rank_udp", false);
}

#[test]
fn killed_process_is_named_on_every_rank_shm() {
    killed("killed_process_is_named_on_every_rank_shm", true);
}
