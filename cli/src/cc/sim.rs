//! `weir cc run`: one policy on the model bottleneck of `weir_congestion::testing`, with a
//! summary table, and optionally an SVG chart and a CSV of every sample.
//!
//! Contract: the run is deterministic for its arguments (seeded); the summary measures the
//! second half of the run, where a controller should have settled, and reports the whole
//! run's losses. Bad arguments (zero rates, steps outside the run) are refused with a message
//! before anything runs.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;
use weir_base::{Duration, Instant, Rate};
use weir_congestion::testing::{self, Config, FlowSpec, IntHops, Overflow, Red, Trace};

use super::policy::Policy;
use crate::args::{count, probability, real};
use weir_policy::faults::{Faults, HOOKS};

/// Options of `weir cc run`.
#[derive(Debug, Clone, Args)]
pub(crate) struct RunArgs {
    /// Policy: an algorithm name (`weir cc list`) or a TOML file with a `[cc]` table.
    #[arg(long, default_value = "dcqcn")]
    pub(crate) policy: String,
    /// Override one parameter, `NAME=VALUE` in the parameter's unit (repeatable; applied after
    /// the file).
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub(crate) set: Vec<String>,
    /// Long-running flows, all starting at time zero (see --stagger-us); 0 to 4096.
    #[arg(long, default_value_t = 8, allow_negative_numbers = true, value_parser = count(0, MAX_FLOWS))]
    pub(crate) flows: usize,
    /// Start flow i at i × this many µs (0 to 1e9).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true,
          value_parser = real(0.0, false, 1e9, "µs"))]
    pub(crate) stagger_us: f64,
    /// Extra flows that start together (an incast) at --incast-at-ms; 0 to 4096.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true, value_parser = count(0, MAX_FLOWS))]
    pub(crate) incast: usize,
    /// When the incast starts (0 to 10000 ms); default a third of the run.
    #[arg(long, allow_negative_numbers = true, value_parser = real(0.0, false, MAX_MS, "ms"))]
    pub(crate) incast_at_ms: Option<f64>,
    /// How long the incast flows send (more than 0, at most 10000 ms); default a third of the run.
    #[arg(long, allow_negative_numbers = true, value_parser = real(0.0, true, MAX_MS, "ms"))]
    pub(crate) incast_ms: Option<f64>,
    /// Length of the run (more than 0, at most 10000 ms).
    #[arg(long, default_value_t = 20.0, allow_negative_numbers = true,
          value_parser = real(0.0, true, MAX_MS, "ms"))]
    pub(crate) duration_ms: f64,
    /// Bottleneck link rate (also each sender's NIC rate), more than 0, at most 1e5 Gbit/s.
    #[arg(long, default_value_t = 100.0, allow_negative_numbers = true,
          value_parser = real(0.0, true, 1e5, "Gbit/s"))]
    pub(crate) link_gbps: f64,
    /// Propagation round-trip time of every flow (0 to 1e9 µs).
    #[arg(long, default_value_t = 10.0, allow_negative_numbers = true,
          value_parser = real(0.0, false, 1e9, "µs"))]
    pub(crate) rtt_us: f64,
    /// Receiver host delay, part of every RTT sample (0 to 1e9 µs).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true,
          value_parser = real(0.0, false, 1e9, "µs"))]
    pub(crate) host_delay_us: f64,
    /// Bottleneck buffer (0 to 1e9 KB).
    #[arg(long, default_value_t = 1000.0, allow_negative_numbers = true,
          value_parser = real(0.0, false, 1e9, "KB"))]
    pub(crate) buffer_kb: f64,
    /// Trim packets that do not fit (NACKed at once) instead of dropping them.
    #[arg(long)]
    pub(crate) trim: bool,
    /// RED/ECN marking: Kmin (0 to 1e9 KB).
    #[arg(long, default_value_t = 100.0, allow_negative_numbers = true,
          value_parser = real(0.0, false, 1e9, "KB"))]
    pub(crate) kmin_kb: f64,
    /// RED/ECN marking: Kmax (0 to 1e9 KB, above Kmin).
    #[arg(long, default_value_t = 400.0, allow_negative_numbers = true,
          value_parser = real(0.0, false, 1e9, "KB"))]
    pub(crate) kmax_kb: f64,
    /// RED/ECN marking: probability at Kmax (0..1).
    #[arg(long, default_value_t = 0.2, allow_negative_numbers = true, value_parser = probability())]
    pub(crate) pmax: f64,
    /// No ECN marking at all.
    #[arg(long)]
    pub(crate) no_ecn: bool,
    /// INT records: `off`, `bottleneck` or `nic` (NIC port and bottleneck).
    #[arg(long, default_value = "bottleneck")]
    pub(crate) int: String,
    /// Link-rate change, `MS:GBPS` (repeatable), e.g. `--step 10:40 --step 15:100`.
    #[arg(long = "step", value_name = "MS:GBPS", allow_hyphen_values = true,
          value_parser = |s: &str| parse_step(s).map(|_| s.to_string()))]
    pub(crate) steps: Vec<String>,
    /// Random loss probability per data packet (0..1).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true, value_parser = probability())]
    pub(crate) loss: f64,
    /// Receiver acknowledges every this many packets (1 to 1024).
    #[arg(long, default_value_t = 1, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub(crate) ack_every: u32,
    /// Data packet size on the wire (64 to 65536 bytes).
    #[arg(long, default_value_t = 4096, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(64..=65_536))]
    pub(crate) mtu: u32,
    /// Sample interval of the trace (and the CSV), more than 0, at most 1e9 µs; the run may
    /// hold at most 50 million samples (flows × duration / interval).
    #[arg(long, default_value_t = 10.0, allow_negative_numbers = true,
          value_parser = real(0.0, true, 1e9, "µs"))]
    pub(crate) sample_us: f64,
    /// Seed for marking, loss and jitter.
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    pub(crate) seed: u64,
    /// Write an SVG chart (rate/window per flow, queue depth) here.
    #[arg(long)]
    pub(crate) plot: Option<PathBuf>,
    /// Write every sample as CSV here.
    #[arg(long)]
    pub(crate) csv: Option<PathBuf>,
    /// eBPF policies: exit 0 even if the program faulted at run time (the faults are still
    /// reported). Without it a run whose program faulted exits 1.
    #[arg(long)]
    pub(crate) allow_faults: bool,
}

/// Most flows (`--flows` plus `--incast`) a run may have.
const MAX_FLOWS: u64 = 4096;

/// Longest run, incast start and incast length, ms.
const MAX_MS: f64 = 10_000.0;

/// Most trace samples (flows × samples per flow) a run may hold.
const MAX_SAMPLES: f64 = 50e6;

/// One `--step MS:GBPS`: when (ms, within 0..=10000) and the new rate (Gbit/s, above 0).
fn parse_step(s: &str) -> Result<(f64, f64), String> {
    let (at, rate) = s
        .split_once(':')
        .ok_or_else(|| format!("--step {s}: expected MS:GBPS"))?;
    let at = real(0.0, false, MAX_MS, "ms")(at).map_err(|e| format!("--step {s}: {e}"))?;
    let rate = real(0.0, true, 1e5, "Gbit/s")(rate).map_err(|e| format!("--step {s}: {e}"))?;
    Ok((at, rate))
}

/// What was run and what came out.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// The trace.
    pub(crate) trace: Trace,
    /// Human-readable summary.
    pub(crate) summary: String,
    /// eBPF policies: the program's run-time faults over the run (`None` for built-ins).
    pub(crate) faults: Option<Faults>,
}

/// Runs `policy` as `args` describe (files are written by the caller).
pub(crate) fn simulate(policy: &Policy, args: &RunArgs) -> Result<Outcome, String> {
    let (cfg, flows) = scenario(args)?;
    // An INT-driven law on a path without INT is refused, not run blind.
    if cfg.int == IntHops::Off
        && let Some(f) = flows.first()
        && policy.build(Instant::ZERO, &cfg.path_info(f)).needs_int()
    {
        return Err(format!(
            "{} needs in-band network telemetry, and this run has none (--int off); use \
             --int bottleneck or --int nic",
            policy.algorithm
        ));
    }
    let trace = testing::run_with(&cfg, &flows, |i, now, path| policy.build_flow(i, now, path));
    // `run_with` has dropped the flows: every run is counted.
    let faults = policy.faults();
    let mut summary = summary(policy, args, &cfg, &trace);
    match &faults {
        // Right under the first line, which names the policy: not to be missed.
        Some(f) if f.faults > 0 => {
            let at = summary.find('\n').map_or(summary.len(), |i| i + 1);
            summary.insert_str(at, &fault_lines(f, trace.specs.len()));
        }
        Some(f) => summary.push_str(&fault_lines(f, trace.specs.len())),
        None => {}
    }
    Ok(Outcome {
        trace,
        summary,
        faults,
    })
}

/// How many flows [`fault_lines`] names one by one.
const FLOWS_NAMED: usize = 16;

/// The summary's lines about an eBPF program's run-time faults.
pub(crate) fn fault_lines(f: &Faults, flows: usize) -> String {
    let mut s = String::new();
    if f.faults == 0 {
        let _ = writeln!(s, "program: {} runs, no faults", f.runs);
        return s;
    }
    let _ = writeln!(
        s,
        "POLICY FAULTED: {} of {} program runs ({:.3} %); each fault kept its flow's last good \
         limits, so the figures below are not the program's law",
        f.faults,
        f.runs,
        100.0 * f.faults as f64 / f.runs.max(1) as f64
    );
    let hooks: Vec<String> = HOOKS
        .iter()
        .zip(f.by_hook)
        .map(|(h, n)| format!("{h} {n}"))
        .collect();
    let _ = writeln!(s, "  faults by hook  {}", hooks.join(", "));
    let mut named: Vec<String> = f
        .by_flow
        .iter()
        .take(FLOWS_NAMED)
        .map(|(i, n)| format!("f{i} {n}"))
        .collect();
    if f.by_flow.len() > FLOWS_NAMED {
        named.push(format!("... {} more", f.by_flow.len() - FLOWS_NAMED));
    }
    let _ = writeln!(
        s,
        "  faults by flow  {} ({} of {flows} flows faulted)",
        named.join(", "),
        f.by_flow.len()
    );
    if let Some(first) = &f.first {
        let _ = writeln!(
            s,
            "  first fault     f{}, {} event at {:.4} ms: {}",
            first.flow,
            first.hook,
            first.at.as_ps() as f64 / 1e9,
            first.message
        );
    }
    s
}

/// The harness configuration and flows `args` describe.
fn scenario(args: &RunArgs) -> Result<(Config, Vec<FlowSpec>), String> {
    let duration = positive_ms("--duration-ms", args.duration_ms)?;
    let link = gbps("--link-gbps", args.link_gbps)?;
    let ecn = if args.no_ecn {
        None
    } else {
        if !(0.0..=1.0).contains(&args.pmax) {
            return Err(format!("--pmax {} is not a probability", args.pmax));
        }
        let kmin = kb("--kmin-kb", args.kmin_kb)?;
        let kmax = kb("--kmax-kb", args.kmax_kb)?;
        if kmax <= kmin {
            return Err("--kmax-kb must be larger than --kmin-kb".into());
        }
        Some(Red {
            kmin,
            kmax,
            pmax: args.pmax,
        })
    };
    let int = match args.int.as_str() {
        "off" => IntHops::Off,
        "bottleneck" => IntHops::Bottleneck,
        "nic" => IntHops::NicAndBottleneck,
        other => return Err(format!("--int {other}: expected off, bottleneck or nic")),
    };
    if !(0.0..=1.0).contains(&args.loss) {
        return Err(format!("--loss {} is not a probability", args.loss));
    }
    if args.flows.saturating_add(args.incast) == 0 {
        return Err("no flows: give --flows or --incast".into());
    }
    if args.flows.saturating_add(args.incast) > MAX_FLOWS as usize {
        return Err(format!("--flows plus --incast: at most {MAX_FLOWS} flows"));
    }
    let samples = (args.flows + args.incast) as f64 * args.duration_ms * 1e3 / args.sample_us;
    if samples.is_nan() || samples > MAX_SAMPLES {
        return Err(format!(
            "--sample-us {}: {} flow(s) over --duration-ms {} would take {samples:.0} samples, \
             more than {MAX_SAMPLES:.0}; raise --sample-us",
            args.sample_us,
            args.flows + args.incast,
            args.duration_ms
        ));
    }
    let mut rate_steps = Vec::new();
    for s in &args.steps {
        let (at, rate) = parse_step(s)?;
        let at = ms("--step", at)?;
        if at > duration {
            return Err(format!("--step {s}: after the end of the run"));
        }
        rate_steps.push((Instant::ZERO + at, gbps("--step", rate)?));
    }
    let stagger = us("--stagger-us", args.stagger_us)?;
    let mut flows: Vec<FlowSpec> = (0..args.flows)
        .map(|i| FlowSpec::at(Instant::ZERO + stagger.saturating_mul(i as u64)))
        .collect();
    if args.incast > 0 {
        let third = duration.div(3);
        let at = match args.incast_at_ms {
            Some(v) => ms("--incast-at-ms", v)?,
            None => third,
        };
        let len = match args.incast_ms {
            Some(v) => positive_ms("--incast-ms", v)?,
            None => third,
        };
        let start = Instant::ZERO + at;
        flows.extend((0..args.incast).map(|_| FlowSpec::at(start).until(start + len)));
    }
    let cfg = Config {
        link_rate: link,
        nic_rate: None,
        packet: args.mtu.clamp(64, 65_536),
        base_rtt: us("--rtt-us", args.rtt_us)?,
        host_delay: us("--host-delay-us", args.host_delay_us)?,
        buffer: kb("--buffer-kb", args.buffer_kb)?,
        overflow: if args.trim {
            Overflow::Trim
        } else {
            Overflow::Drop
        },
        ecn,
        int,
        loss: args.loss,
        ack_every: args.ack_every.max(1),
        rate_steps,
        sample_interval: {
            let s = us("--sample-us", args.sample_us)?;
            if s == Duration::ZERO {
                return Err("--sample-us must be positive".into());
            }
            s
        },
        duration,
        seed: args.seed,
        ..Config::default()
    };
    Ok((cfg, flows))
}

fn summary(policy: &Policy, args: &RunArgs, cfg: &Config, t: &Trace) -> String {
    let mut s = String::new();
    let end = Instant::ZERO + cfg.duration;
    let from = Instant::ZERO + cfg.duration.div(2);
    let msf = |t: Instant| t.as_ps() as f64 / 1e9;
    let _ = writeln!(
        s,
        "policy {} ({}), {} flow(s){}, {} Gbit/s, RTT {} us, buffer {} KB, {} ms, seed {}",
        policy.algorithm,
        args.policy,
        args.flows,
        if args.incast > 0 {
            format!(" + {}-flow incast", args.incast)
        } else {
            String::new()
        },
        args.link_gbps,
        args.rtt_us,
        args.buffer_kb,
        args.duration_ms,
        args.seed,
    );
    let _ = writeln!(s, "measured over [{:.2}, {:.2}] ms:", msf(from), msf(end));
    let _ = writeln!(s, "  Jain's index  {:.3}", t.jain(from, end));
    let _ = writeln!(s, "  utilisation   {:.3}", t.utilisation(from, end));
    let _ = writeln!(
        s,
        "  queue         mean {:.0} KB, max {} KB",
        t.mean_queue(from, end) / 1000.0,
        t.max_queue(from, end) / 1000
    );
    let _ = write!(s, "  goodput Gb/s ");
    for (i, r) in t.throughputs(from, end).into_iter().enumerate() {
        let _ = write!(s, " f{i} {:.2}", r.bps_f64() / 1e9);
    }
    s.push('\n');
    let rtos: u64 = t.rtos();
    let _ = writeln!(
        s,
        "whole run: {} drops, {} random losses, {} trims, {} ECN marks, {} RTOs, max queue {} KB",
        t.link.overflow_drops,
        t.link.random_losses,
        t.link.trims,
        t.link.marks,
        rtos,
        t.link.max_queue / 1000
    );
    if let Some(f) = t.specs.get(args.flows).filter(|_| args.incast > 0) {
        let below = cfg.ecn.map_or(cfg.buffer / 10, |r| r.kmax);
        match t.drain_time(f.start, below) {
            Some(d) => {
                let _ = writeln!(
                    s,
                    "incast at {:.2} ms: queue below {} KB after {:.1} us",
                    msf(f.start),
                    below / 1000,
                    d.as_secs_f64() * 1e6
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    "incast at {:.2} ms: queue never fell below {} KB",
                    msf(f.start),
                    below / 1000
                );
            }
        }
    }
    s
}

fn us(flag: &str, v: f64) -> Result<Duration, String> {
    if v.is_finite() && (0.0..=1e9).contains(&v) {
        Ok(Duration::from_secs_f64(v * 1e-6))
    } else {
        Err(format!("{flag} {v}: expected a non-negative number of µs"))
    }
}

fn ms(flag: &str, v: f64) -> Result<Duration, String> {
    if v.is_finite() && (0.0..=1e6).contains(&v) {
        Ok(Duration::from_secs_f64(v * 1e-3))
    } else {
        Err(format!("{flag} {v}: expected a non-negative number of ms"))
    }
}

fn positive_ms(flag: &str, v: f64) -> Result<Duration, String> {
    match ms(flag, v)? {
        d if d > Duration::ZERO && v <= 10_000.0 => Ok(d),
        _ => Err(format!(
            "{flag} {v}: expected more than 0 and at most 10000 ms"
        )),
    }
}

fn gbps(flag: &str, v: f64) -> Result<Rate, String> {
    if v.is_finite() && v > 0.0 && v <= 1e5 {
        Ok(Rate::from_bps_f64(v * 1e9))
    } else {
        Err(format!("{flag} {v}: expected a positive number of Gbit/s"))
    }
}

fn kb(flag: &str, v: f64) -> Result<u64, String> {
    if v.is_finite() && (0.0..=1e9).contains(&v) {
        Ok((v * 1000.0) as u64)
    } else {
        Err(format!("{flag} {v}: expected a non-negative number of KB"))
    }
}
