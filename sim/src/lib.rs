//! Weir's packet-level discrete-event simulator: the production transport
//! (`weir_transport::Endpoint`) and congestion control run unchanged on simulated hosts, over
//! simulated switches, with length-only payloads.
//!
//! Contract: [`run`] (and [`run_report`], [`run_with`]) is a pure function of its [`Scenario`]:
//! integer picosecond time, one seeded RNG, a `(time, seq)`-ordered event queue and no global
//! state, so the same scenario gives the same [`Summary`] and [`Series`], bit for bit. The
//! library never reads a clock (wall-clock measurements belong to the caller; see
//! `examples/run.rs`). A progress callback sees simulated time and event counts only.
//!
//! Layers: [`scenario`] (TOML structs), `topology` (fat-tree, leaf-spine and rail-optimised
//! port graphs with shortest-path ECMP tables, recomputed on failures), `workload` (every
//! workload as messages with dependencies; collectives from `weir_collectives` schedules),
//! `net` (switch queues: drop-tail or trimming, RED ECN, PFC, INT; host NICs driving endpoints;
//! the intra-server link; faults; sampling), `report` (summary, per-job results, time series),
//! `event` (the queue). See `docs/sim.md` for the model and every key.
#![warn(missing_docs)]

mod event;
mod hugepages;
mod net;
mod report;
pub mod scenario;
mod topology;
mod workload;

use weir_base::{Duration, Instant, Rng};

pub use report::{JobResult, LinkSeries, Progress, Report, Series, SizeBucket, Summary};
pub use scenario::{
    CollectiveAlgorithm, CollectiveOp, FaultAction, FaultEvent, Job, MessageSpec, QueuePolicy,
    Routing, RunConfig, Scenario, ScenarioError, SwitchConfig, Topology, TransportConfig, Workload,
};

use net::{Net, NetConfig};
use topology::Graph;

/// Run a scenario to completion (every message done) or to its time limit.
pub fn run(scenario: &Scenario) -> Result<Summary, ScenarioError> {
    run_report(scenario).map(|r| r.summary)
}

/// Like [`run`], with the sampled time series.
pub fn run_report(scenario: &Scenario) -> Result<Report, ScenarioError> {
    run_with(scenario, &mut |_| {})
}

/// Like [`run_report`], calling `progress` every `run.progress_events` events (default 2²⁰)
/// with the simulated time and the events and messages done so far.
pub fn run_with(
    scenario: &Scenario,
    progress: &mut dyn FnMut(Progress),
) -> Result<Report, ScenarioError> {
    run_inner(scenario, progress, None)
}

/// [`run_with`], with the performance hints (prefetching, huge pages) forced on or off
/// (`None`: by the host count).
fn run_inner(
    scenario: &Scenario,
    progress: &mut dyn FnMut(Progress),
    hints: Option<bool>,
) -> Result<Report, ScenarioError> {
    scenario.validate()?;
    let config = scenario
        .transport
        .config(scenario.line_rate())
        .map_err(ScenarioError)?;
    let g = Graph::build(
        &scenario.topology,
        Duration::from_nanos(scenario.run.host_delay_ns),
    );
    let mut rng = Rng::new(scenario.seed);
    let net_seed = rng.next_u64();
    let work = workload::build(scenario, &mut rng).map_err(ScenarioError)?;
    let mut net = Net::new(
        g,
        work,
        NetConfig {
            transport: config,
            switch: scenario.switch,
            overhead: scenario.run.frame_overhead_bytes,
            seed: net_seed,
            faults: scenario.events.clone(),
            sample_every: Duration::from_micros(scenario.run.sample_interval_us),
            progress_every: scenario.run.progress_events,
            hints,
        },
    )
    .map_err(ScenarioError)?;
    let limit = Duration::from_micros(scenario.run.max_time_us);
    if !net.connect_all(Instant::ZERO + limit, progress) {
        return Err(ScenarioError("connections did not establish".into()));
    }
    net.start_workload();
    let start = net.start;
    net.run_until(start + limit, &|n: &Net| n.all_done(), progress);
    Ok(report::build(&net, scenario, &config))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Prefetching and huge pages are hints: forced on (by default prefetching is off below
    /// 2,048 hosts, huge pages below 512), a run's report is the same, bit for bit.
    #[test]
    fn performance_hints_change_nothing() {
        for text in [
            include_str!("../../examples/sim/incast-16.toml"),
            include_str!("../../examples/sim/perm-128.toml"),
        ] {
            let s = Scenario::from_toml(text).unwrap();
            let off = run_inner(&s, &mut |_| {}, Some(false)).unwrap();
            let on = run_inner(&s, &mut |_| {}, Some(true)).unwrap();
            assert!(on.summary.completed > 0);
            assert_eq!(on, off);
        }
    }
}
