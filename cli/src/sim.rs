//! `weir sim`: run a simulator scenario (TOML, see docs/sim.md) and print its summary.

use std::fmt::Write as _;
use std::path::PathBuf;

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
    Run {
        /// Scenario file (TOML; every key is described in docs/sim.md)
        file: Option<PathBuf>,
        /// Print the summary as one JSON object on stdout
        #[arg(long)]
        json: bool,
        /// Include every flow's completion time in the JSON
        #[arg(long, requires = "json")]
        fcts: bool,
    },
    /// Run a scenario over a grid of parameter values and seeds, one simulation per core
    Sweep(crate::sweep::SweepArgs),
}

/// Run `weir sim`.
pub(crate) fn run(args: SimArgs) -> Result<(), String> {
    match args.command {
        SimCommand::Run { file, json, fcts } => {
            let (text, origin) = match &file {
                Some(p) => (
                    std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?,
                    p.display().to_string(),
                ),
                None => (
                    DEFAULT_SCENARIO.to_string(),
                    "perm-128 (embedded)".to_string(),
                ),
            };
            print!("{}", run_text(&text, &origin, json, fcts)?);
            Ok(())
        }
        SimCommand::Sweep(a) => crate::sweep::run(a, DEFAULT_SCENARIO),
    }
}

/// Parse, run and format one scenario.
fn run_text(text: &str, origin: &str, json: bool, fcts: bool) -> Result<String, String> {
    let scenario = weir_sim::Scenario::from_toml(text).map_err(|e| format!("{origin}: {e}"))?;
    let t0 = std::time::Instant::now();
    let mut summary = weir_sim::run(&scenario).map_err(|e| format!("{origin}: {e}"))?;
    let wall = t0.elapsed().as_secs_f64();
    let mut s = String::new();
    if json {
        if !fcts {
            summary.fct_ps.clear();
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
        "hosts {}  flows {}  completed {}  bytes delivered {}  bad completions {}",
        summary.hosts,
        summary.flows,
        summary.completed,
        summary.bytes_delivered,
        summary.bad_completions
    );
    let _ = writeln!(
        s,
        "last FCT {:.1} us  FCT slowdown p50 {:.2}  p99 {:.2}",
        us(summary.last_fct_ps),
        summary.slowdown_p50,
        summary.slowdown_p99
    );
    let _ = writeln!(
        s,
        "drops {}  trims {}  ECN marks {}  max queue {} B  retransmits {}  INT records {}",
        summary.drops,
        summary.trims,
        summary.ecn_marks,
        summary.max_queue_bytes,
        summary.retransmits,
        summary.int_records
    );
    let _ = writeln!(
        s,
        "simulated {:.1} us  events {}  wall {wall:.2} s  events/s {:.2} M",
        us(summary.end_ps),
        summary.events,
        summary.events_per_sec(wall) / 1e6
    );
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = "seed = 3\n\
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
        assert!(text.contains("flows 16  completed 16"), "{text}");
        let json = run_text(SMALL, "small", true, false).expect("runs");
        let v: serde_json::Value = serde_json::from_str(json.trim()).expect("one JSON object");
        assert_eq!(v["completed"], 16);
        assert_eq!(v["scenario"], "small");
        assert!(v["fct_ps"].as_array().is_some_and(|a| a.is_empty()));
        let bad = run_text("[topology]\nkind = \"ring\"\n", "bad.toml", false, false);
        assert!(bad.unwrap_err().starts_with("bad.toml: "));
    }
}
