//! `weir sim sweep`: one scenario over a grid of parameter values and seeds, one single-threaded
//! simulation per core (rayon), with a progress bar and a table, CSV or JSON lines at the end.
//!
//! A parameter is a dotted path into the scenario's TOML (`switch.routing`, `transport.cc`,
//! `workload.bytes`, `jobs.0.start_us`); its values are TOML literals (`spray`, `"spray"`,
//! `100000`, `0.01`, `true`), bare words taken as strings. The grid is the Cartesian product of
//! every `--set` list and the seeds; each point is built by `Scenario::from_toml_with` (the
//! simulator's own override mechanism), so a bad key or value fails before any simulation
//! starts.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use serde::Serialize;

/// Options of `weir sim sweep`.
#[derive(Debug, Args)]
pub(crate) struct SweepArgs {
    /// Scenario file (TOML; docs/sim.md) [default: the embedded perm-128 scenario]
    file: Option<PathBuf>,
    /// A parameter and its values, `PATH=V1,V2,…` (repeatable; e.g. `switch.routing=ecmp,spray`);
    /// every value is range-checked as the scenario's key, before any simulation runs
    #[arg(long = "set", value_name = "PATH=LIST", allow_hyphen_values = true,
          value_parser = |s: &str| parse_set(s).map(|_| s.to_string()))]
    sets: Vec<String>,
    /// Seeds, `A..B` (B excluded) or a comma list, each at most 2^63 - 1, at most 100000 seeds
    /// [default: the scenario's seed]
    #[arg(long, value_name = "RANGE|LIST", allow_hyphen_values = true,
          value_parser = |s: &str| parse_seeds(s).map(|_| s.to_string()))]
    seeds: Option<String>,
    /// Simulations at once, 1 to 256 [default: the number of cores]
    #[arg(long, short = 'j', allow_negative_numbers = true, value_parser = crate::args::count(1, 256))]
    jobs: Option<usize>,
    /// Print CSV instead of the table
    #[arg(long, conflicts_with = "json")]
    csv: bool,
    /// Print one JSON object per point instead of the table
    #[arg(long)]
    json: bool,
    /// No progress bar (it is drawn on stderr only when that is a terminal anyway)
    #[arg(long)]
    quiet: bool,
}

/// One point of the grid and what it produced.
#[derive(Clone, Debug, Serialize)]
struct Point {
    /// `path=value` for every swept parameter, in `--set` order.
    params: Vec<(String, String)>,
    seed: u64,
    #[serde(flatten)]
    result: PointResult,
}

#[derive(Clone, Debug, Serialize)]
struct PointResult {
    flows: usize,
    completed: usize,
    last_fct_us: f64,
    slowdown_p50: f64,
    slowdown_p99: f64,
    slowdown_p999: f64,
    drops: u64,
    pauses: u64,
    trims: u64,
    ecn_marks: u64,
    max_queue_bytes: u64,
    retransmits: u64,
    events: u64,
    wall_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl PointResult {
    fn of(s: &weir_sim::Summary, wall_s: f64) -> Self {
        PointResult {
            flows: s.flows,
            completed: s.completed,
            last_fct_us: s.last_fct_ps as f64 / 1e6,
            slowdown_p50: s.slowdown_p50,
            slowdown_p99: s.slowdown_p99,
            slowdown_p999: s.slowdown_p999,
            drops: s.drops,
            pauses: s.pauses,
            trims: s.trims,
            ecn_marks: s.ecn_marks,
            max_queue_bytes: s.max_queue_bytes,
            retransmits: s.retransmits,
            events: s.events,
            wall_s,
            error: None,
        }
    }

    fn failed(error: String, wall_s: f64) -> Self {
        PointResult {
            flows: 0,
            completed: 0,
            last_fct_us: 0.0,
            slowdown_p50: 0.0,
            slowdown_p99: 0.0,
            slowdown_p999: 0.0,
            drops: 0,
            pauses: 0,
            trims: 0,
            ecn_marks: 0,
            max_queue_bytes: 0,
            retransmits: 0,
            events: 0,
            wall_s,
            error: Some(error),
        }
    }
}

/// Parse `A..B` or `a,b,c`: at most 100000 seeds, each one a TOML integer (below 2^63).
fn parse_seeds(s: &str) -> Result<Vec<u64>, String> {
    let seeds = parse_seed_list(s)?;
    if seeds.len() > 100_000 {
        return Err(format!("--seeds {s:?}: more than 100000 seeds"));
    }
    if let Some(big) = seeds.iter().find(|&&v| i64::try_from(v).is_err()) {
        return Err(format!("--seeds {s:?}: seed {big} is above 2^63 - 1"));
    }
    Ok(seeds)
}

fn parse_seed_list(s: &str) -> Result<Vec<u64>, String> {
    if let Some((a, b)) = s.split_once("..") {
        let a: u64 = a
            .trim()
            .parse()
            .map_err(|e| format!("--seeds {s:?}: {e}"))?;
        let b: u64 = b
            .trim()
            .parse()
            .map_err(|e| format!("--seeds {s:?}: {e}"))?;
        if b <= a || b - a > 100_000 {
            return Err(format!(
                "--seeds {s:?}: need A < B and at most 100000 seeds"
            ));
        }
        return Ok((a..b).collect());
    }
    s.split(',')
        .map(|v| v.trim().parse().map_err(|e| format!("--seeds {s:?}: {e}")))
        .collect()
}

/// Every (params, seed, scenario) of the grid, each scenario parsed and validated.
type Grid = Vec<(Vec<(String, String)>, u64, weir_sim::Scenario)>;

/// Parse one `--set PATH=V1,V2,…`: the path and its values (the values themselves are checked
/// by the scenario, which names the key).
fn parse_set(s: &str) -> Result<(String, Vec<String>), String> {
    let (path, values) = s
        .split_once('=')
        .ok_or_else(|| format!("--set {s:?}: expected PATH=V1,V2,…"))?;
    let values: Vec<String> = values.split(',').map(|v| v.trim().to_string()).collect();
    if values.iter().any(String::is_empty) {
        return Err(format!("--set {s:?}: empty value"));
    }
    let path = path.trim();
    if path.is_empty() {
        return Err(format!("--set {s:?}: empty path"));
    }
    if path == "seed" {
        // The seed axis is `--seeds`; a `--set seed=…` would be overridden by it.
        return Err(format!(
            "--set {s:?}: the seed is an axis of its own; use --seeds {}",
            values.join(",")
        ));
    }
    Ok((path.to_string(), values))
}

fn grid(text: &str, sets: &[String], seeds: Option<&str>) -> Result<Grid, String> {
    let base = weir_sim::Scenario::from_toml(text).map_err(|e| e.to_string())?;
    let mut axes: Vec<(String, Vec<String>)> = Vec::new();
    for s in sets {
        axes.push(parse_set(s)?);
    }
    let seeds = match seeds {
        Some(s) => parse_seeds(s)?,
        None => vec![base.seed],
    };
    let mut combos: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for (path, values) in &axes {
        combos = combos
            .into_iter()
            .flat_map(|c| {
                values.iter().map(move |v| {
                    let mut c = c.clone();
                    c.push((path.clone(), v.clone()));
                    c
                })
            })
            .collect();
    }
    if combos.len().saturating_mul(seeds.len()) > 100_000 {
        return Err("the grid has more than 100000 points".into());
    }
    let mut out = Vec::new();
    for c in &combos {
        for &seed in &seeds {
            if i64::try_from(seed).is_err() {
                return Err(format!("seed {seed} too large"));
            }
            let seed_text = seed.to_string();
            let overrides: Vec<(&str, &str)> = c
                .iter()
                .map(|(p, v)| (p.as_str(), v.as_str()))
                .chain([("seed", seed_text.as_str())])
                .collect();
            let scenario = weir_sim::Scenario::from_toml_with(text, &overrides).map_err(|e| {
                let at: Vec<String> = c.iter().map(|(p, v)| format!("{p}={v}")).collect();
                format!("{} seed {seed}: {e}", at.join(" "))
            })?;
            out.push((c.clone(), seed, scenario));
        }
    }
    Ok(out)
}

/// Run `weir sim sweep`.
pub(crate) fn run(a: SweepArgs, default_scenario: &str) -> Result<(), String> {
    let text = match &a.file {
        Some(p) => std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?,
        None => default_scenario.to_string(),
    };
    let points = grid(&text, &a.sets, a.seeds.as_deref())?;
    let jobs = a.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(256)
    });
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs)
        .build()
        .map_err(|e| e.to_string())?;
    let bar = if a.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(points.len() as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} simulations, {msg}")
            .map_err(|e| e.to_string())?
            .progress_chars("=> "),
    );
    let events = AtomicU64::new(0);
    let t0 = Instant::now();
    let results: Vec<Point> = pool.install(|| {
        points
            .par_iter()
            .map(|(params, seed, scenario)| {
                let start = Instant::now();
                let r = weir_sim::run(scenario);
                let wall = start.elapsed().as_secs_f64();
                let result = match r {
                    Ok(s) => {
                        let total = events.fetch_add(s.events, Ordering::Relaxed) + s.events;
                        bar.set_message(format!(
                            "{:.1} M events/s",
                            total as f64 / t0.elapsed().as_secs_f64().max(1e-9) / 1e6
                        ));
                        PointResult::of(&s, wall)
                    }
                    Err(e) => PointResult::failed(e.to_string(), wall),
                };
                bar.inc(1);
                Point {
                    params: params.clone(),
                    seed: *seed,
                    result,
                }
            })
            .collect()
    });
    bar.finish_and_clear();
    let out = if a.json {
        json_lines(&results)?
    } else if a.csv {
        csv(&results)
    } else {
        table(&results, jobs, t0.elapsed().as_secs_f64())
    };
    print!("{out}");
    let failed = results.iter().filter(|p| p.result.error.is_some()).count();
    if failed > 0 {
        return Err(format!("{failed} of {} simulations failed", results.len()));
    }
    Ok(())
}

fn json_lines(points: &[Point]) -> Result<String, String> {
    let mut s = String::new();
    for p in points {
        let mut v = serde_json::to_value(p).map_err(|e| e.to_string())?;
        if let Some(o) = v.as_object_mut() {
            let params: serde_json::Map<String, serde_json::Value> = p
                .params
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            o.insert("params".into(), params.into());
        }
        let _ = writeln!(s, "{v}");
    }
    Ok(s)
}

const COLUMNS: [&str; 14] = [
    "seed",
    "flows",
    "completed",
    "last_fct_us",
    "slowdown_p50",
    "slowdown_p99",
    "slowdown_p999",
    "drops",
    "pauses",
    "trims",
    "ecn_marks",
    "max_queue_bytes",
    "retransmits",
    "events",
];

fn values(p: &Point) -> [String; 14] {
    let r = &p.result;
    [
        p.seed.to_string(),
        r.flows.to_string(),
        r.completed.to_string(),
        format!("{:.3}", r.last_fct_us),
        format!("{:.3}", r.slowdown_p50),
        format!("{:.3}", r.slowdown_p99),
        format!("{:.3}", r.slowdown_p999),
        r.drops.to_string(),
        r.pauses.to_string(),
        r.trims.to_string(),
        r.ecn_marks.to_string(),
        r.max_queue_bytes.to_string(),
        r.retransmits.to_string(),
        r.events.to_string(),
    ]
}

fn csv(points: &[Point]) -> String {
    let mut s = String::new();
    let names: Vec<String> = points
        .first()
        .map(|p| p.params.iter().map(|(k, _)| k.clone()).collect())
        .unwrap_or_default();
    let mut header: Vec<String> = names;
    header.extend(COLUMNS.iter().map(|c| (*c).to_string()));
    header.push("wall_s".into());
    header.push("error".into());
    let _ = writeln!(s, "{}", header.join(","));
    for p in points {
        let mut row: Vec<String> = p.params.iter().map(|(_, v)| csv_field(v)).collect();
        row.extend(values(p));
        row.push(format!("{:.3}", p.result.wall_s));
        row.push(csv_field(p.result.error.as_deref().unwrap_or("")));
        let _ = writeln!(s, "{}", row.join(","));
    }
    s
}

fn csv_field(v: &str) -> String {
    if v.contains([',', '"', '\n']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_string()
    }
}

fn table(points: &[Point], jobs: usize, wall: f64) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# weir sim sweep: {} simulations on {jobs} threads in {wall:.1} s",
        points.len()
    );
    let names: Vec<String> = points
        .first()
        .map(|p| p.params.iter().map(|(k, _)| k.clone()).collect())
        .unwrap_or_default();
    let widths: Vec<usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            points
                .iter()
                .map(|p| p.params.get(i).map_or(0, |(_, v)| v.len()))
                .max()
                .unwrap_or(0)
                .max(n.len())
        })
        .collect();
    for (n, w) in names.iter().zip(&widths) {
        let _ = write!(s, "{n:>w$} ");
    }
    let _ = writeln!(
        s,
        "{:>6} {:>9} {:>12} {:>8} {:>8} {:>8} {:>8} {:>8} {:>12} {:>8}",
        "seed",
        "completed",
        "last FCT us",
        "sd p50",
        "sd p99",
        "drops",
        "pauses",
        "trims",
        "max queue B",
        "retx"
    );
    for p in points {
        for ((_, v), w) in p.params.iter().zip(&widths) {
            let _ = write!(s, "{v:>w$} ");
        }
        let r = &p.result;
        if let Some(e) = &r.error {
            let _ = writeln!(s, "{:>6} error: {e}", p.seed);
            continue;
        }
        let _ = writeln!(
            s,
            "{:>6} {:>9} {:>12.1} {:>8.2} {:>8.2} {:>8} {:>8} {:>8} {:>12} {:>8}",
            p.seed,
            format!("{}/{}", r.completed, r.flows),
            r.last_fct_us,
            r.slowdown_p50,
            r.slowdown_p99,
            r.drops,
            r.pauses,
            r.trims,
            r.max_queue_bytes,
            r.retransmits
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::sim::tests::SMALL;

    #[test]
    fn seeds_parse_as_range_or_list() {
        assert_eq!(parse_seeds("1..4").unwrap(), vec![1, 2, 3]);
        assert_eq!(parse_seeds("5, 7").unwrap(), vec![5, 7]);
        assert!(parse_seeds("4..4").is_err());
        assert!(parse_seeds("x").is_err());
    }

    #[test]
    fn literals_and_bare_words() {
        let one = |set: &str| {
            let g = grid(SMALL, &[set.to_string()], None).expect(set);
            assert_eq!(g.len(), 1);
            g.into_iter().next().expect("one point").2
        };
        // An integer, a float, a bare word and a quoted string.
        assert_eq!(one("run.max_time_us=3").run.max_time_us, 3);
        assert_eq!(one("switch.ecn_pmax=0.5").switch.ecn_pmax, 0.5);
        assert_eq!(
            one("switch.routing=spray").switch.routing,
            weir_sim::Routing::Spray
        );
        assert_eq!(
            one("switch.routing=\"ecmp\"").switch.routing,
            weir_sim::Routing::Ecmp
        );
    }

    #[test]
    fn grid_is_the_product_and_rejects_bad_keys() {
        let g = grid(
            SMALL,
            &[
                "switch.routing=ecmp,spray".into(),
                "workload.bytes=1000,2000".into(),
            ],
            Some("1..3"),
        )
        .expect("valid grid");
        assert_eq!(g.len(), 8);
        assert_eq!(g[0].2.seed, 1);
        assert_eq!(g[7].2.seed, 2);
        assert_eq!(g[7].2.switch.routing, weir_sim::Routing::Spray);
        let err = grid(SMALL, &["switch.nonsense=1".into()], None).unwrap_err();
        assert!(err.contains("nonsense"), "{err}");
        assert!(grid(SMALL, &["seed".into()], None).is_err());
        // `--set seed=…` would be overridden by the seeds axis: refused, pointing at --seeds.
        let err = grid(SMALL, &["seed=5,6".into()], None).unwrap_err();
        assert!(err.contains("--seeds 5,6"), "{err}");
    }

    #[test]
    fn sweep_points_run_and_format() {
        let g = grid(SMALL, &["switch.routing=ecmp,spray".into()], Some("1,2")).expect("grid");
        let points: Vec<Point> = g
            .iter()
            .map(|(params, seed, sc)| {
                let s = weir_sim::run(sc).expect("runs");
                Point {
                    params: params.clone(),
                    seed: *seed,
                    result: PointResult::of(&s, 0.0),
                }
            })
            .collect();
        assert!(points.iter().all(|p| p.result.completed == 16));
        let c = csv(&points);
        assert!(c.starts_with("switch.routing,seed,"), "{c}");
        assert_eq!(c.lines().count(), 5);
        let j = json_lines(&points).expect("json");
        let v: serde_json::Value = serde_json::from_str(j.lines().next().unwrap()).unwrap();
        assert_eq!(v["params"]["switch.routing"], "ecmp");
        assert!(table(&points, 2, 1.0).contains("16/16"));
    }
}
