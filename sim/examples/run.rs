//! Run one scenario file and print its summary as JSON plus wall time and events/s:
//! `cargo run --release -p weir-sim --example run -- examples/sim/perm-128.toml`. Progress goes
//! to stderr every 10 s of wall time.
#![allow(clippy::disallowed_methods)] // a driver may read the wall clock

use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: run SCENARIO.toml");
        return ExitCode::FAILURE;
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let scenario = match weir_sim::Scenario::from_toml(&text) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let t0 = std::time::Instant::now();
    let mut last = 0.0;
    let mut progress = |p: weir_sim::Progress| {
        let wall = t0.elapsed().as_secs_f64();
        if wall - last >= 10.0 {
            last = wall;
            eprintln!(
                "[{wall:.0} s] simulated {:.1} us, {} M events, {}/{} messages",
                p.now_ps as f64 / 1e6,
                p.events / 1_000_000,
                p.messages_done,
                p.messages
            );
        }
    };
    let summary = match weir_sim::run_with(&scenario, &mut progress) {
        Ok(r) => r.summary,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let wall = t0.elapsed().as_secs_f64();
    let mut short = summary.clone();
    short.fct_ps.clear();
    println!(
        "{}",
        serde_json::to_string_pretty(&short).unwrap_or_default()
    );
    println!(
        "wall {wall:.3} s, last FCT {:.1} us, {} events, {:.2} M events/s",
        summary.last_fct_ps as f64 / 1e6,
        summary.events,
        summary.events_per_sec(wall) / 1e6
    );
    ExitCode::SUCCESS
}
