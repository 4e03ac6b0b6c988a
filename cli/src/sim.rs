//! `weir sim`: run a simulator scenario (TOML, see docs/sim.md) and print its summary.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

/// The scenario `weir sim run` runs without a file: a 128-host fat-tree permutation.
const DEFAULT_SCENARIO: &str = include_str!("../../examples/sim/perm-128.toml");

/// Arguments of `weir sim`.
#[derive(Debug, Args)]
pub(crate) struct SimArgs {
    #[command(subcommand)]
    command: SimCommand,
}

#[derive(Debug, Subcommand)]
enum SimCommand {
    /// Run one scenario and print its summary (default: the embedded perm-128 scenario,
    /// examples/sim/perm-128.toml)
    Run(RunArgs),
    /// Run a scenario over a grid of parameter values and seeds, one simulation per core
    Sweep(crate::sweep::SweepArgs),
}

/// Options of `weir sim run`.
#[derive(Debug, Args)]
struct RunArgs {
    /// Scenario file (TOML; every key is described in docs/sim.md)
    file: Option<PathBuf>,
    /// Print the summary as one JSON object on stdout
    #[arg(long)]
    json: bool,
    /// Include every message's completion time and slowdown in the JSON
    #[arg(long, requires = "json")]
    fcts: bool,
    /// Write SVG charts into this directory: fct_slowdown_cdf.svg (by size bucket),
    /// queue.svg (switch queue depth over time), links.svg (utilisation of the busiest links)
    #[arg(long, value_name = "DIR")]
    plot: Option<PathBuf>,
    /// Write CSV files into this directory: messages.csv (one row per message) and series.csv
    /// (one row per sample: queue depth and the busiest links' utilisation)
    #[arg(long, value_name = "DIR")]
    csv: Option<PathBuf>,
    /// Sampling interval of the time series in µs when the scenario sets none
    /// (`run.sample_interval_us`) and --plot or --csv asks for one
    #[arg(long, value_name = "US", default_value_t = 1, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u64).range(1..=100_000_000_000))]
    sample_us: u64,
    /// No progress bar (it is drawn on stderr only when that is a terminal anyway)
    #[arg(long)]
    quiet: bool,
}

/// Run `weir sim`.
pub(crate) fn run(args: SimArgs) -> Result<(), String> {
    match args.command {
        SimCommand::Run(a) => {
            let (text, origin) = match &a.file {
                Some(p) => (
                    std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?,
                    p.display().to_string(),
                ),
                None => (
                    DEFAULT_SCENARIO.to_string(),
                    "perm-128 (embedded)".to_string(),
                ),
            };
            let mut scenario =
                weir_sim::Scenario::from_toml(&text).map_err(|e| format!("{origin}: {e}"))?;
            if (a.plot.is_some() || a.csv.is_some()) && scenario.run.sample_interval_us == 0 {
                scenario.run.sample_interval_us = a.sample_us;
            }
            let t0 = std::time::Instant::now();
            let report = run_with_bar(&scenario, a.quiet).map_err(|e| format!("{origin}: {e}"))?;
            let wall = t0.elapsed().as_secs_f64();
            if let Some(dir) = &a.plot {
                write_plots(dir, &report, &origin)?;
            }
            if let Some(dir) = &a.csv {
                write_csv(dir, &report)?;
            }
            print!("{}", format_report(report, &origin, wall, a.json, a.fcts)?);
            Ok(())
        }
        SimCommand::Sweep(a) => crate::sweep::run(a, DEFAULT_SCENARIO),
    }
}

/// Run with a progress bar on stderr (simulated time, events/s, messages done).
fn run_with_bar(
    scenario: &weir_sim::Scenario,
    quiet: bool,
) -> Result<weir_sim::Report, weir_sim::ScenarioError> {
    use indicatif::{ProgressBar, ProgressStyle};
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0)
    };
    if let Ok(style) =
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} messages, {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    let t0 = std::time::Instant::now();
    let report = weir_sim::run_with(scenario, &mut |p: weir_sim::Progress| {
        bar.set_length(p.messages);
        bar.set_position(p.messages_done);
        let secs = t0.elapsed().as_secs_f64().max(1e-9);
        bar.set_message(format!(
            "simulated {:.1} us, {:.2} M events/s",
            p.now_ps as f64 / 1e6,
            p.events as f64 / secs / 1e6
        ));
    });
    bar.finish_and_clear();
    report
}

/// Format a run's report as the table or one JSON object.
fn format_report(
    report: weir_sim::Report,
    origin: &str,
    wall: f64,
    json: bool,
    fcts: bool,
) -> Result<String, String> {
    let mut summary = report.summary;
    let mut s = String::new();
    if json {
        if !fcts {
            summary.fct_ps.clear();
            summary.slowdown.clear();
            summary.message_bytes.clear();
        }
        let mut v = serde_json::to_value(&summary).map_err(|e| e.to_string())?;
        if let Some(o) = v.as_object_mut() {
            o.insert("scenario".into(), origin.into());
            o.insert("wall_s".into(), wall.into());
            o.insert("events_per_sec".into(), summary.events_per_sec(wall).into());
        }
        let _ = writeln!(s, "{v}");
        return Ok(s);
    }
    let us = |ps: u64| ps as f64 / 1e6;
    let _ = writeln!(s, "# weir sim: {origin}");
    let _ = writeln!(
        s,
        "hosts {}  messages {}  completed {}  bytes delivered {}  bad completions {}  intra-server {}",
        summary.hosts,
        summary.flows,
        summary.completed,
        summary.bytes_delivered,
        summary.bad_completions,
        summary.intra_server_messages
    );
    let _ = writeln!(
        s,
        "last FCT {:.1} us  FCT slowdown p50 {:.2}  p99 {:.2}  p99.9 {:.2}",
        us(summary.last_fct_ps),
        summary.slowdown_p50,
        summary.slowdown_p99,
        summary.slowdown_p999
    );
    if summary.slowdown_buckets.len() > 1 {
        let _ = writeln!(
            s,
            "{:>12} {:>9} {:>8} {:>8} {:>8}",
            "size", "messages", "p50", "p99", "p99.9"
        );
        for b in &summary.slowdown_buckets {
            let _ = writeln!(
                s,
                "{:>12} {:>9} {:>8.2} {:>8.2} {:>8.2}",
                b.label, b.flows, b.p50, b.p99, b.p999
            );
        }
    }
    let _ = writeln!(
        s,
        "drops {} (failed links {})  trims {}  ECN marks {}  PFC pauses {} ({:.1} us paused)  max queue {} B",
        summary.drops,
        summary.fault_drops,
        summary.trims,
        summary.ecn_marks,
        summary.pauses,
        us(summary.paused_ps),
        summary.max_queue_bytes
    );
    let _ = writeln!(
        s,
        "retransmits {} (spurious {})  RTOs {}  TLPs {}  duplicates received {}  INT records {}",
        summary.retransmits,
        summary.spurious_retransmits,
        summary.rto_events,
        summary.tlp_probes,
        summary.rx_duplicates,
        summary.int_records
    );
    if summary.jobs.len() > 1 || summary.jobs.iter().any(|j| j.size_bytes > 0) {
        let _ = writeln!(
            s,
            "{:<16} {:<28} {:>6} {:>12} {:>13} {:>9} {:>9}",
            "job", "kind", "hosts", "size B", "completion us", "algbw", "busbw"
        );
        for j in &summary.jobs {
            let done = j
                .completion_ps
                .map_or("unfinished".to_string(), |t| format!("{:.1}", us(t)));
            let _ = writeln!(
                s,
                "{:<16} {:<28} {:>6} {:>12} {:>13} {:>9.3} {:>9.3}",
                j.name, j.kind, j.hosts, j.size_bytes, done, j.algbw_gb_s, j.busbw_gb_s
            );
        }
        let _ = writeln!(s, "(algbw, busbw in GB/s, nccl-tests convention)");
    }
    let _ = writeln!(
        s,
        "simulated {:.1} us  events {}  wall {wall:.2} s  events/s {:.2} M",
        us(summary.end_ps),
        summary.events,
        summary.events_per_sec(wall) / 1e6
    );
    Ok(s)
}

/// Parse, run and format one scenario (no progress bar, no files).
#[cfg(test)]
fn run_text(text: &str, origin: &str, json: bool, fcts: bool) -> Result<String, String> {
    let scenario = weir_sim::Scenario::from_toml(text).map_err(|e| format!("{origin}: {e}"))?;
    let t0 = std::time::Instant::now();
    let report = weir_sim::run_report(&scenario).map_err(|e| format!("{origin}: {e}"))?;
    format_report(report, origin, t0.elapsed().as_secs_f64(), json, fcts)
}

/// Per-message slowdowns grouped by the summary's size buckets.
fn slowdown_sets(summary: &weir_sim::Summary) -> Vec<(String, Vec<f64>)> {
    let mut sets: Vec<(String, Vec<f64>)> = Vec::new();
    let mut lo = 0u64;
    for b in &summary.slowdown_buckets {
        let hi = b.max_bytes.unwrap_or(u64::MAX);
        let v: Vec<f64> = summary
            .slowdown
            .iter()
            .zip(&summary.message_bytes)
            .filter_map(|(x, &bytes)| x.filter(|_| bytes > lo && bytes <= hi))
            .collect();
        lo = hi;
        sets.push((format!("{} ({} messages)", b.label, v.len()), v));
    }
    if sets.iter().all(|(_, v)| v.is_empty()) {
        sets = vec![(
            "all messages".into(),
            summary.slowdown.iter().flatten().copied().collect(),
        )];
    }
    sets
}

/// Write the three charts into `dir`.
fn write_plots(dir: &Path, report: &weir_sim::Report, origin: &str) -> Result<(), String> {
    use crate::simplot::{Series, cdf_svg, lines_svg};
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let write = |name: &str, svg: String| {
        let p = dir.join(name);
        std::fs::write(&p, svg).map_err(|e| format!("{}: {e}", p.display()))
    };
    let s = &report.series;
    let t_us: Vec<f64> = s.t_ps.iter().map(|&t| t as f64 / 1e6).collect();
    let sets = slowdown_sets(&report.summary);
    if sets.iter().any(|(_, v)| !v.is_empty()) {
        write(
            "fct_slowdown_cdf.svg",
            cdf_svg(
                &format!("FCT slowdown CDF — {origin}"),
                "slowdown (FCT / ideal FCT)",
                &sets,
            )?,
        )?;
    }
    if !t_us.is_empty() {
        let queue = vec![
            Series {
                name: "max over switch ports".into(),
                points: t_us
                    .iter()
                    .zip(&s.queue_max_bytes)
                    .map(|(&t, &q)| (t, q as f64 / 1e3))
                    .collect(),
            },
            Series {
                name: "mean over switch ports".into(),
                points: t_us
                    .iter()
                    .zip(&s.queue_mean_bytes)
                    .map(|(&t, &q)| (t, q / 1e3))
                    .collect(),
            },
        ];
        write(
            "queue.svg",
            lines_svg(
                &format!("Switch queue depth — {origin}"),
                "time (us)",
                "queue (KB)",
                &queue,
                None,
                None,
            )?,
        )?;
        let links: Vec<Series> = s
            .links
            .iter()
            .take(8)
            .map(|l| Series {
                name: l.label.clone(),
                points: t_us
                    .iter()
                    .zip(&l.utilization)
                    .map(|(&t, &u)| (t, u))
                    .collect(),
            })
            .collect();
        if !links.is_empty() {
            write(
                "links.svg",
                lines_svg(
                    &format!("Utilisation of the busiest links — {origin}"),
                    "time (us)",
                    "utilisation",
                    &links,
                    None,
                    Some((0.0, 1.05)),
                )?,
            )?;
        }
    }
    Ok(())
}

/// Write messages.csv and series.csv into `dir`.
fn write_csv(dir: &Path, report: &weir_sim::Report) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let sum = &report.summary;
    let mut m = String::from("message,bytes,fct_us,slowdown\n");
    for (i, fct) in sum.fct_ps.iter().enumerate() {
        let bytes = sum.message_bytes.get(i).copied().unwrap_or(0);
        let fct = fct.map_or(String::new(), |t| format!("{:.4}", t as f64 / 1e6));
        let slow = sum
            .slowdown
            .get(i)
            .copied()
            .flatten()
            .map_or(String::new(), |x| format!("{x:.4}"));
        let _ = writeln!(m, "{i},{bytes},{fct},{slow}");
    }
    let s = &report.series;
    let mut t = String::from("t_us,queue_max_bytes,queue_mean_bytes");
    for l in &s.links {
        let _ = write!(t, ",util_{}", l.label);
    }
    t.push('\n');
    for (k, &ps) in s.t_ps.iter().enumerate() {
        let _ = write!(
            t,
            "{:.3},{},{:.1}",
            ps as f64 / 1e6,
            s.queue_max_bytes.get(k).copied().unwrap_or(0),
            s.queue_mean_bytes.get(k).copied().unwrap_or(0.0)
        );
        for l in &s.links {
            let _ = write!(t, ",{:.4}", l.utilization.get(k).copied().unwrap_or(0.0));
        }
        t.push('\n');
    }
    for (name, text) in [("messages.csv", m), ("series.csv", t)] {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A 16-host k=4 fat-tree permutation of 100 kB: the CLI tests' scenario.
    pub(crate) const SMALL: &str = "seed = 3\n\
        [topology]\nkind = \"fat_tree\"\nk = 4\nlink_gbps = 100\nlink_delay_ns = 1000\n\
        [workload]\nkind = \"permutation\"\nbytes = 100000\n";

    #[test]
    fn embedded_default_parses() {
        weir_sim::Scenario::from_toml(DEFAULT_SCENARIO).expect("the embedded scenario is valid");
    }

    #[test]
    fn runs_and_prints_table_or_json() {
        let text = match run_text(SMALL, "small", false, false) {
            Ok(t) => t,
            Err(e) if e.contains("unknown") || e.contains("missing") => {
                panic!("test scenario out of date with docs/sim.md: {e}")
            }
            Err(e) => panic!("{e}"),
        };
        assert!(text.contains("messages 16  completed 16"), "{text}");
        let json = run_text(SMALL, "small", true, false).expect("runs");
        let v: serde_json::Value = serde_json::from_str(json.trim()).expect("one JSON object");
        assert_eq!(v["completed"], 16);
        assert_eq!(v["scenario"], "small");
        assert!(v["fct_ps"].as_array().is_some_and(|a| a.is_empty()));
        let bad = run_text("[topology]\nkind = \"ring\"\n", "bad.toml", false, false);
        assert!(bad.unwrap_err().starts_with("bad.toml: "));
    }

    #[test]
    fn plots_and_csv_are_written() {
        let mut scenario = weir_sim::Scenario::from_toml(SMALL).expect("valid");
        scenario.run.sample_interval_us = 1;
        let report = weir_sim::run_report(&scenario).expect("runs");
        assert_eq!(report.summary.slowdown.len(), 16);
        assert!(
            report
                .summary
                .slowdown
                .iter()
                .all(|x| x.is_some_and(|x| x >= 1.0))
        );
        let dir = std::env::temp_dir().join(format!("weir-sim-plot-{}", std::process::id()));
        write_plots(&dir, &report, "small").expect("plots");
        write_csv(&dir, &report).expect("csv");
        for f in ["fct_slowdown_cdf.svg", "queue.svg", "links.svg"] {
            let svg = std::fs::read_to_string(dir.join(f)).expect(f);
            assert!(svg.starts_with("<svg"), "{f}");
        }
        let m = std::fs::read_to_string(dir.join("messages.csv")).expect("messages.csv");
        assert_eq!(m.lines().count(), 17, "{m}");
        assert!(
            m.lines().nth(1).is_some_and(|l| l.starts_with("0,100000,")),
            "{m}"
        );
        let t = std::fs::read_to_string(dir.join("series.csv")).expect("series.csv");
        assert!(
            t.starts_with("t_us,queue_max_bytes,queue_mean_bytes,util_"),
            "{t}"
        );
        assert_eq!(t.lines().count(), report.series.t_ps.len() + 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
