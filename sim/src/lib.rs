//! Weir's packet-level discrete-event simulator: the production transport
//! (`weir_transport::Endpoint`) and congestion control run unchanged on simulated hosts, over
//! simulated switches, with length-only payloads.
//!
//! Contract: [`run`] is a pure function of its [`Scenario`]: integer picosecond time, one
//! seeded RNG, a `(time, seq)`-ordered event queue and no global state, so the same scenario
//! gives the same [`Summary`], bit for bit. The library never reads a clock (wall-clock
//! measurements belong to the caller; see `examples/run.rs`).
//!
//! Layers: [`scenario`] (TOML structs), `topology` (fat-tree and leaf-spine port graphs with
//! shortest-path ECMP tables), `net` (switch queues: drop-tail or trimming, RED ECN, INT; host
//! NICs driving endpoints), `event` (the queue). See `docs/sim.md` for the model and the keys.
#![warn(missing_docs)]

mod event;
mod net;
pub mod scenario;
mod topology;

use serde::Serialize;
use weir_base::{Duration, Instant, Rng};

pub use scenario::{
    QueuePolicy, Routing, RunConfig, Scenario, ScenarioError, SwitchConfig, Topology,
    TransportConfig, Workload,
};

use net::{Flow, Net};
use topology::Graph;

/// What a run produced. Times are picoseconds, counted from the moment the flows were posted
/// (after every connection's handshake).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    /// Hosts in the topology.
    pub hosts: u32,
    /// Flows in the workload.
    pub flows: usize,
    /// Flows whose receive and send both completed successfully, exactly once.
    pub completed: usize,
    /// Payload bytes of completed receives.
    pub bytes_delivered: u64,
    /// Completions with an error, a wrong length or a duplicate (0 in a correct run).
    pub bad_completions: u64,
    /// Flow completion time of each flow (receive completion), `None` if it did not finish.
    pub fct_ps: Vec<Option<u64>>,
    /// Largest flow completion time among completed flows.
    pub last_fct_ps: u64,
    /// Median FCT slowdown (FCT / ideal FCT on an idle network).
    pub slowdown_p50: f64,
    /// 99th-percentile FCT slowdown.
    pub slowdown_p99: f64,
    /// Packets dropped (full queue, link loss, no route).
    pub drops: u64,
    /// Packets trimmed to their header.
    pub trims: u64,
    /// Packets marked ECN CE.
    pub ecn_marks: u64,
    /// Largest output-queue occupancy seen at any switch port, in bytes.
    pub max_queue_bytes: u64,
    /// Senders' retransmitted packets.
    pub retransmits: u64,
    /// Datagrams the hosts transmitted (data, ACKs, control).
    pub packets: u64,
    /// INT records stamped by switches.
    pub int_records: u64,
    /// Events processed (handshakes included).
    pub events: u64,
    /// Simulated time at the end of the run, from the flows' start.
    pub end_ps: u64,
}

impl Summary {
    /// Events per wall-clock second, given the run's wall time in seconds.
    pub fn events_per_sec(&self, wall_secs: f64) -> f64 {
        if wall_secs > 0.0 {
            self.events as f64 / wall_secs
        } else {
            0.0
        }
    }
}

/// Run a scenario to completion (every flow done) or to its time limit.
pub fn run(scenario: &Scenario) -> Result<Summary, ScenarioError> {
    scenario.validate()?;
    let config = scenario
        .transport
        .config(scenario.line_rate())
        .map_err(ScenarioError)?;
    let g = Graph::build(&scenario.topology);
    let mut rng = Rng::new(scenario.seed);
    let hosts = g.hosts;
    let mut net = Net::new(
        g,
        config,
        scenario.switch,
        scenario.run.frame_overhead_bytes,
        rng.next_u64(),
    )
    .map_err(ScenarioError)?;
    let (pairs, bytes) = workload(&scenario.workload, hosts, &mut rng);
    net.flows = pairs
        .into_iter()
        .map(|(src, dst)| Flow {
            src,
            dst,
            bytes,
            src_conn: None,
            dst_conn: None,
            send_done: None,
            recv_done: None,
            bad: 0,
        })
        .collect();
    let limit = Duration::from_micros(scenario.run.max_time_us);
    if !net.connect_all(Instant::ZERO + limit) {
        return Err(ScenarioError("connections did not establish".into()));
    }
    let start = net.now;
    net.start_flows().map_err(ScenarioError)?;
    net.run_until(start + limit, |n| {
        n.flows
            .iter()
            .all(|f| f.recv_done.is_some() && f.send_done.is_some())
    });
    Ok(summarise(&net, start, scenario, &config))
}

/// (sender, receiver) pairs and the flow size.
fn workload(w: &Workload, hosts: u32, rng: &mut Rng) -> (Vec<(u32, u32)>, u64) {
    match *w {
        Workload::Permutation { bytes } => {
            // Sattolo's algorithm: a uniformly random cyclic permutation, hence no fixed
            // point (nobody sends to itself).
            let mut p: Vec<u32> = (0..hosts).collect();
            for i in (1..p.len()).rev() {
                let j = rng.below(i as u64) as usize;
                p.swap(i, j);
            }
            ((0..hosts).map(|h| (h, p[h as usize])).collect(), bytes)
        }
        Workload::Incast { bytes, senders } => ((1..=senders).map(|s| (s, 0)).collect(), bytes),
    }
}

fn summarise(net: &Net, start: Instant, s: &Scenario, config: &weir_transport::Config) -> Summary {
    let rate = s.line_rate();
    let delay = match s.topology {
        Topology::FatTree { link_delay_ns, .. } | Topology::LeafSpine { link_delay_ns, .. } => {
            Duration::from_nanos(link_delay_ns)
        }
    };
    let mtu_payload = u64::from(config.max_payload);
    let per_pkt = u64::from(s.run.frame_overhead_bytes) + DATA_HEADER;
    let mut fct = Vec::with_capacity(net.flows.len());
    let mut slow = Vec::new();
    let mut completed = 0;
    let mut delivered = 0;
    let mut bad = 0u64;
    for f in &net.flows {
        bad += u64::from(f.bad);
        let t = f.recv_done.map(|t| t.saturating_since(start).as_ps());
        if f.recv_done.is_some() && f.send_done.is_some() && f.bad == 0 {
            completed += 1;
        }
        if f.recv_done.is_some() {
            delivered += f.bytes;
        }
        if let Some(t) = t {
            // Ideal: serialise every packet at line rate, plus one packet's store-and-forward
            // and the propagation delay on every further link of a shortest path.
            let links = net.path_links(f.src, f.dst);
            let pkts = f.bytes.div_ceil(mtu_payload.max(1));
            let ideal = rate.serialization_time(f.bytes + pkts * per_pkt).as_ps()
                + links.saturating_sub(1)
                    * rate
                        .serialization_time(mtu_payload.min(f.bytes) + per_pkt)
                        .as_ps()
                + links * delay.as_ps();
            slow.push(t as f64 / ideal.max(1) as f64);
        }
        fct.push(t);
    }
    slow.sort_by(f64::total_cmp);
    Summary {
        hosts: net.hosts(),
        flows: net.flows.len(),
        completed,
        bytes_delivered: delivered,
        bad_completions: bad,
        last_fct_ps: fct.iter().flatten().copied().max().unwrap_or(0),
        fct_ps: fct,
        slowdown_p50: percentile(&slow, 0.50),
        slowdown_p99: percentile(&slow, 0.99),
        drops: net.c.drops,
        trims: net.c.trims,
        ecn_marks: net.c.ecn_marks,
        max_queue_bytes: net.c.max_queue,
        retransmits: net.retransmits(),
        packets: net.c.packets,
        int_records: net.c.int_records,
        events: net.c.events,
        end_ps: net.now.saturating_since(start).as_ps(),
    }
}

/// Nearest-rank percentile of sorted values (0 when empty).
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Bytes of a data packet's Weir header (common + data extension, no INT).
const DATA_HEADER: u64 = (weir_wire::COMMON_LEN + weir_wire::DATA_EXT_LEN) as u64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_is_a_derangement() {
        let mut rng = Rng::new(7);
        let (pairs, _) = workload(&Workload::Permutation { bytes: 1 }, 64, &mut rng);
        let mut seen = [false; 64];
        for (s, d) in pairs {
            assert_ne!(s, d);
            assert!(!seen[d as usize]);
            seen[d as usize] = true;
        }
    }

    #[test]
    fn percentile_nearest_rank() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 0.5), 2.0);
        assert_eq!(percentile(&v, 0.99), 4.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
