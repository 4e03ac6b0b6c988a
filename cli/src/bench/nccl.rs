//! `weir bench nccl-abi`: the NCCL net plugin's data path as a bandwidth test, against an
//! NCCL-socket-like plain TCP path measured in the same run (see `nccl_side` for both).
//!
//! Every point is one pair of fresh peer processes. At each size the socket baseline runs
//! first, then the plugin at each requested loss, so each ratio compares neighbours in time.
//! Columns follow nccl-tests' `sendrecv_perf`: `time` is the receiver's time per message
//! (GO → last completion, divided by the messages), `algbw` = size / time and `busbw` =
//! `algbw` (a point-to-point transfer has no bus factor).

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use super::peer::{self, PairOutcome, PeerParams, Role, Test};
use super::sys::{self};
use super::{BenchError, Mode, median_by, rt_permitted, units};

/// Options of `weir bench nccl-abi`.
#[derive(Debug, Args)]
pub(crate) struct NcclAbiArgs {
    /// Message sizes, comma-separated; K/M/G are KiB/MiB/GiB [default:
    /// 8K,32K,128K,512K,2M,8M,32M,64M; --quick: 1M,8M]
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = units::parse_size)]
    pub(crate) sizes: Option<Vec<u64>>,

    /// Loss injected at the plugin receiver, fractions or percentages [default: 0]
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = units::parse_loss)]
    pub(crate) loss: Option<Vec<f64>>,

    /// Data requests in flight per comm (NCCL keeps NCCL_STEPS = 8 per channel); at most 30,
    /// as two more of the plugin's 32 carry the start and end markers
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=30))]
    pub(crate) inflight: u32,

    /// Payload bytes per point [default: 128M below 1 MiB messages, 512M from 1 MiB;
    /// --quick: 32M]
    #[arg(long, value_name = "SIZE", value_parser = units::parse_size)]
    pub(crate) bytes_per_point: Option<u64>,

    /// Time limit per point: the sender posts no new message after it [default: 2]
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    pub(crate) point_secs: f64,

    /// Runs per point; the run with the median bandwidth is reported [default: 3; --quick: 1]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=99))]
    pub(crate) repeat: Option<u32>,

    /// `dlopen` this plugin (e.g. target/release/libnccl-net-weir.so) instead of using the
    /// ncclNetPlugin_v12 table linked into `weir`
    #[arg(long, value_name = "PATH")]
    pub(crate) lib: Option<PathBuf>,

    /// Pin the sender to core 0 and the receiver to core 1
    #[arg(long)]
    pub(crate) pin: bool,

    /// Run the peers under SCHED_FIFO priority 10 (needs root or RLIMIT_RTPRIO)
    #[arg(long)]
    pub(crate) rt: bool,

    /// Print one JSON object per row instead of the table
    #[arg(long)]
    pub(crate) json: bool,

    /// A short run: 1 MiB and 8 MiB, one run each, 32 MiB per point
    #[arg(long)]
    pub(crate) quick: bool,
}

/// One measured point.
#[derive(Clone, Debug, Default, Serialize)]
struct NcclRow {
    /// `socket` or `weir`.
    net: &'static str,
    loss: f64,
    size: u64,
    /// Messages received.
    count: u64,
    /// Receiver time per message, µs.
    time_us: Option<f64>,
    /// GB/s (1e9 B/s).
    algbw: Option<f64>,
    busbw: Option<f64>,
    /// algbw / the socket path's algbw at this size.
    vs_socket: Option<f64>,
    /// Sender: per-message post → completion (plugin only), µs.
    p50_us: Option<f64>,
    complete: bool,
    note: Option<String>,
}

struct Plan {
    sizes: Vec<u64>,
    losses: Vec<f64>,
    inflight: u32,
    bytes_per_point: Option<u64>,
    quick: bool,
    point_ms: u64,
    repeat: u32,
    lib: Option<PathBuf>,
    pin: bool,
    rt: bool,
}

impl Plan {
    fn new(a: &NcclAbiArgs) -> Result<Plan, BenchError> {
        let sizes = a.sizes.clone().unwrap_or_else(|| {
            if a.quick {
                vec![1 << 20, 8 << 20]
            } else {
                [
                    8 << 10,
                    32 << 10,
                    128 << 10,
                    512 << 10,
                    2 << 20,
                    8 << 20,
                    32 << 20,
                    64 << 20,
                ]
                .to_vec()
            }
        });
        if sizes.is_empty() {
            return Err(BenchError::new("--sizes needs at least one value"));
        }
        if let Some(&s) = sizes.iter().find(|&&s| s == 0 || s > (1 << 30)) {
            return Err(BenchError::new(format!(
                "message size {} is outside 1 B..=1 GiB (the plugin's maxP2pBytes)",
                units::fmt_size(s)
            )));
        }
        if !(0.01..=600.0).contains(&a.point_secs) {
            return Err(BenchError::new("--point-secs must lie within 0.01..=600"));
        }
        if let Some(lib) = &a.lib
            && !lib.exists()
        {
            return Err(BenchError::new(format!(
                "--lib {}: no such file",
                lib.display()
            )));
        }
        Ok(Plan {
            sizes,
            losses: a.loss.clone().unwrap_or_else(|| vec![0.0]),
            inflight: a.inflight,
            bytes_per_point: a.bytes_per_point,
            quick: a.quick,
            point_ms: (a.point_secs * 1e3) as u64,
            repeat: a.repeat.unwrap_or(if a.quick { 1 } else { 3 }),
            lib: a.lib.clone(),
            pin: a.pin,
            rt: a.rt,
        })
    }

    fn bytes_for(&self, size: u64) -> u64 {
        self.bytes_per_point.unwrap_or(if self.quick {
            32 << 20
        } else if size >= 1 << 20 {
            512 << 20
        } else {
            128 << 20
        })
    }

    fn params(&self, role: Role, mode: Mode, size: u64, loss: f64, run: u32) -> PeerParams {
        PeerParams {
            role,
            mode,
            test: Test::NcclStream,
            size,
            bytes: self.bytes_for(size),
            window: self.inflight,
            loss,
            seed: 1 + u64::from(run),
            point_ms: self.point_ms,
            drain_ms: 3000,
            iters: 0,
            remote: None,
            cpu: self.pin.then_some(match role {
                Role::Sender => 0,
                Role::Receiver => 1,
            }),
            rt: self.rt,
            handle: None,
            lib: self.lib.clone(),
            cc: None,
        }
    }
}

/// Run `weir bench nccl-abi`.
pub(crate) fn run(a: &NcclAbiArgs) -> Result<(), BenchError> {
    let mut plan = Plan::new(a)?;
    let mut notes = Vec::new();
    if plan.rt && !rt_permitted() {
        notes.push("# note: --rt not permitted; peers run under normal scheduling".to_string());
        plan.rt = false;
    }
    let psi_before = sys::cpu_pressure_some_avg10();
    if !a.json {
        let lib = plan.lib.as_ref().map_or_else(
            || "ncclNetPlugin_v12 linked into this executable".to_string(),
            |p| format!("{} (dlopen RTLD_NOW|RTLD_LOCAL)", p.display()),
        );
        println!("# weir bench nccl-abi: NCCL net plugin data path vs NCCL-socket-like TCP");
        println!("# plugin: {lib}; device weir-lo (WEIR_IFNAME=lo unless set)");
        println!(
            "# {} requests in flight per comm; receiver-timed; {} run(s) per point, median \
             shown; cpus {}; cpu pressure avg10 {}",
            plan.inflight,
            plan.repeat,
            sys::cpus(),
            psi_before.map_or("n/a".into(), |v| format!("{v:.1}%"))
        );
        println!(
            "# sched: {}; {}",
            if plan.rt {
                "SCHED_FIFO 10 (--rt)"
            } else {
                "normal"
            },
            if plan.pin {
                "pinned (sender 0, receiver 1)"
            } else {
                "not pinned"
            }
        );
        for n in &notes {
            println!("{n}");
        }
        println!("#");
        println!(
            "# {:>10} {:>7} {:>6} {:>8} {:>10} {:>8} {:>8} {:>8}  note",
            "size", "net", "loss", "count", "time(us)", "algbw", "busbw", "vs sock"
        );
        println!(
            "# {:>10} {:>7} {:>6} {:>8} {:>10} {:>8} {:>8} {:>8}",
            "(B)", "", "", "", "", "(GB/s)", "(GB/s)", ""
        );
    } else {
        for n in &notes {
            eprintln!("{n}");
        }
    }
    for &size in &plan.sizes {
        let sock = measure(&plan, Mode::Tcp, size, 0.0);
        let base = sock.algbw;
        emit(a.json, &sock);
        for &loss in &plan.losses {
            let mut row = measure(&plan, Mode::Weir, size, loss);
            row.vs_socket = match (row.algbw, base) {
                (Some(w), Some(b)) if b > 0.0 => Some(w / b),
                _ => None,
            };
            emit(a.json, &row);
        }
    }
    if !a.json {
        println!(
            "# cpu pressure avg10 after: {}",
            sys::cpu_pressure_some_avg10().map_or("n/a".into(), |v| format!("{v:.1}%"))
        );
    }
    Ok(())
}

fn emit(json: bool, r: &NcclRow) {
    if json {
        if let Ok(s) = serde_json::to_string(r) {
            println!("{s}");
        }
        return;
    }
    let f = |v: Option<f64>, prec: usize| v.map_or("-".to_string(), |x| format!("{x:.prec$}"));
    let loss = if r.net == "socket" {
        "-".to_string()
    } else {
        units::fmt_loss(r.loss)
    };
    let mut note = r.note.clone().unwrap_or_default();
    if !r.complete && note.is_empty() {
        note = "incomplete".into();
    }
    println!(
        "  {:>10} {:>7} {:>6} {:>8} {:>10} {:>8} {:>8} {:>8}  {}",
        r.size,
        r.net,
        loss,
        r.count,
        f(r.time_us, 1),
        f(r.algbw, 3),
        f(r.busbw, 3),
        r.vs_socket.map_or(String::new(), |v| format!("{v:.2}x")),
        note
    );
}

fn measure(plan: &Plan, mode: Mode, size: u64, loss: f64) -> NcclRow {
    let runs: Vec<NcclRow> = (0..plan.repeat.max(1))
        .map(|run| {
            let rp = plan.params(Role::Receiver, mode, size, loss, run);
            let sp = plan.params(Role::Sender, mode, size, loss, run);
            row(mode, size, loss, &peer::run_pair(&rp, &sp))
        })
        .collect();
    median_by(runs, |r| r.algbw)
}

fn row(mode: Mode, size: u64, loss: f64, o: &PairOutcome) -> NcclRow {
    let mut r = NcclRow {
        net: if mode == Mode::Tcp { "socket" } else { "weir" },
        loss,
        size,
        ..NcclRow::default()
    };
    if let Ok(rep) = &o.receiver {
        r.count = rep.messages;
        if rep.messages > 0 && rep.elapsed_ns > 0 {
            r.time_us = Some(rep.elapsed_ns as f64 / 1e3 / rep.messages as f64);
            r.algbw = rep.gbps();
            r.busbw = r.algbw;
        }
    }
    if let Ok(s) = &o.sender {
        r.p50_us = s.lat_p50_us;
    }
    r.complete = o.complete();
    r.note = o.note();
    r
}
