//! Scenario files: the serde structs a TOML scenario deserialises into (keys in `docs/sim.md`).
//!
//! Contract: every field has a default except the topology and workload kinds' required
//! parameters, unknown keys are rejected, and [`Scenario::validate`] rejects values the
//! simulator cannot run (so [`crate::run`] never panics on a parsed scenario).

use serde::Deserialize;
use weir_base::{Duration, Rate};
use weir_congestion::CcConfig;
use weir_transport::{Config, Mode};

/// One simulation: topology, switches, transport, workload and run limits.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Seed of every random draw (permutation, spraying, loss, RED, endpoint seeds).
    #[serde(default = "one")]
    pub seed: u64,
    /// The network.
    pub topology: Topology,
    /// Switch queues and forwarding.
    #[serde(default)]
    pub switch: SwitchConfig,
    /// Transport configuration of every host.
    #[serde(default)]
    pub transport: TransportConfig,
    /// The traffic.
    pub workload: Workload,
    /// Limits and framing.
    #[serde(default)]
    pub run: RunConfig,
}

/// Topology kinds. Every link has the same propagation delay.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Topology {
    /// Three-tier k-ary fat-tree (Al-Fares et al., SIGCOMM 2008): k pods of k/2 edge and k/2
    /// aggregation switches, (k/2)² core switches, k³/4 hosts; full bisection bandwidth.
    FatTree {
        /// Switch radix (even, 2..=64).
        k: u32,
        /// Rate of every link in Gb/s.
        #[serde(default = "hundred")]
        link_gbps: u64,
        /// One-way propagation delay of every link in ns.
        #[serde(default = "thousand")]
        link_delay_ns: u64,
    },
    /// Two-tier leaf-spine: every leaf connects to every spine with one link.
    /// Oversubscription = `hosts_per_leaf × host_gbps / (spines × fabric_gbps)`.
    LeafSpine {
        /// Leaf (top-of-rack) switches.
        leaves: u32,
        /// Spine switches.
        spines: u32,
        /// Hosts under each leaf.
        hosts_per_leaf: u32,
        /// Host link rate in Gb/s.
        #[serde(default = "hundred")]
        host_gbps: u64,
        /// Leaf-spine link rate in Gb/s.
        #[serde(default = "hundred")]
        fabric_gbps: u64,
        /// One-way propagation delay of every link in ns.
        #[serde(default = "thousand")]
        link_delay_ns: u64,
    },
}

/// What a full output queue does with a packet.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum QueuePolicy {
    /// Drop the arriving packet.
    #[default]
    DropTail,
    /// UET-style trimming: cut a data packet's payload, mark it `TRIMMED` and forward the
    /// header in a priority queue; drop only what is not data or does not fit there either.
    Trim,
}

/// How a switch picks among equal-cost next hops.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Routing {
    /// Hash of (source, destination, entropy, switch): one path per entropy value; the transport
    /// sprays by varying the entropy.
    #[default]
    Ecmp,
    /// A random equal-cost next hop per packet (switch-side spraying).
    Spray,
}

/// Switch behaviour (every output port of every switch alike).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SwitchConfig {
    /// Output buffer per port in bytes (the priority queue of trimmed headers has its own
    /// buffer of the same size).
    pub buffer_bytes: u64,
    /// Full-queue policy.
    pub policy: QueuePolicy,
    /// Next-hop selection.
    pub routing: Routing,
    /// RED/ECN: below this queue (bytes) never mark. ECN is off unless both thresholds are set.
    pub ecn_kmin_bytes: Option<u64>,
    /// RED/ECN: at or above this queue (bytes) always mark.
    pub ecn_kmax_bytes: Option<u64>,
    /// RED/ECN: marking probability just below `ecn_kmax_bytes`.
    pub ecn_pmax: f64,
    /// Stamp INT records on data packets that ask for them (flag `INT`), one per switch hop.
    pub int: bool,
    /// Probability that any link (host or switch egress) loses a packet.
    pub link_loss: f64,
}

impl Default for SwitchConfig {
    fn default() -> Self {
        SwitchConfig {
            buffer_bytes: 256 << 10,
            policy: QueuePolicy::DropTail,
            routing: Routing::Ecmp,
            ecn_kmin_bytes: None,
            ecn_kmax_bytes: None,
            ecn_pmax: 1.0,
            int: true,
            link_loss: 0.0,
        }
    }
}

/// The transport's knobs the simulator exposes (everything else is `Config::default()`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TransportConfig {
    /// `"weir"` or `"go_back_n"` (the RoCEv2-like baseline; forces one path).
    pub mode: String,
    /// Congestion control by name (`CcConfig::by_name`: fixed, dcqcn, timely, swift, hpcc,
    /// nscc, ...).
    pub cc: String,
    /// Entropy values to spray over.
    pub paths: u16,
    /// Packets per entropy value before moving on (1 = per-packet spraying).
    pub spray_burst: u16,
    /// Largest payload per packet in bytes.
    pub max_payload: u32,
    /// Minimum retransmission timeout in µs.
    pub min_rto_us: u64,
    /// Initial retransmission timeout in µs.
    pub initial_rto_us: u64,
    /// Ask for INT on every data packet.
    pub request_int: bool,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            mode: "weir".into(),
            cc: "fixed".into(),
            paths: 8,
            spray_burst: 1,
            max_payload: 4096,
            min_rto_us: 100,
            initial_rto_us: 200,
            request_int: false,
        }
    }
}

/// Traffic patterns; every flow is one `Send` of `bytes` matched by one `Recv`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Workload {
    /// Every host sends one flow to a partner drawn as a random derangement (nobody sends to
    /// itself, everybody receives exactly one flow); all flows start together.
    Permutation {
        /// Flow size in bytes.
        bytes: u64,
    },
    /// `senders` hosts (1..=senders) each send one flow to host 0, all at once.
    Incast {
        /// Flow size in bytes.
        bytes: u64,
        /// Number of senders.
        senders: u32,
    },
}

/// Run limits and framing.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// Stop after this much simulated time (µs), counted from the flows' start.
    pub max_time_us: u64,
    /// Bytes each packet occupies on the wire besides the Weir header and payload (Ethernet
    /// 14 + FCS 4 + IPv4 20 + UDP 8 = 46 by default).
    pub frame_overhead_bytes: u32,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            max_time_us: 1_000_000,
            frame_overhead_bytes: 46,
        }
    }
}

/// Why a scenario cannot run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioError(pub String);

impl std::fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid scenario: {}", self.0)
    }
}

impl std::error::Error for ScenarioError {}

impl Scenario {
    /// Parse and validate a TOML scenario.
    pub fn from_toml(text: &str) -> Result<Scenario, ScenarioError> {
        let s: Scenario = toml::from_str(text).map_err(|e| ScenarioError(e.to_string()))?;
        s.validate()?;
        Ok(s)
    }

    /// Check that the simulator can run this scenario.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let bad = |m: &str| Err(ScenarioError(m.into()));
        let hosts = match self.topology {
            Topology::FatTree { k, link_gbps, .. } => {
                if !(2..=64).contains(&k) || k % 2 != 0 {
                    return bad("fat_tree.k must be even and within 2..=64");
                }
                if link_gbps == 0 {
                    return bad("link_gbps must be positive");
                }
                u64::from(k).pow(3) / 4
            }
            Topology::LeafSpine {
                leaves,
                spines,
                hosts_per_leaf,
                host_gbps,
                fabric_gbps,
                ..
            } => {
                if leaves == 0 || spines == 0 || hosts_per_leaf == 0 {
                    return bad("leaves, spines and hosts_per_leaf must be positive");
                }
                if leaves > 4096 || spines > 4096 || hosts_per_leaf > 4096 {
                    return bad("leaves, spines and hosts_per_leaf are limited to 4096");
                }
                if host_gbps == 0 || fabric_gbps == 0 {
                    return bad("link rates must be positive");
                }
                u64::from(leaves) * u64::from(hosts_per_leaf)
            }
        };
        if !(2..=1 << 20).contains(&hosts) {
            return bad("the topology must have 2..=1048576 hosts");
        }
        match self.workload {
            Workload::Permutation { bytes } | Workload::Incast { bytes, .. }
                if bytes == 0 || bytes > u64::from(u32::MAX) =>
            {
                return bad("workload.bytes must be within 1..=4294967295");
            }
            Workload::Incast { senders, .. } if senders == 0 || u64::from(senders) >= hosts => {
                return bad("incast.senders must be within 1..hosts");
            }
            _ => {}
        }
        let sw = &self.switch;
        if !(0.0..=1.0).contains(&sw.link_loss) || !(0.0..=1.0).contains(&sw.ecn_pmax) {
            return bad("probabilities must be within 0..=1");
        }
        if let (Some(lo), Some(hi)) = (sw.ecn_kmin_bytes, sw.ecn_kmax_bytes)
            && lo > hi
        {
            return bad("ecn_kmin_bytes must not exceed ecn_kmax_bytes");
        }
        if sw.buffer_bytes == 0 {
            return bad("buffer_bytes must be positive");
        }
        if self.run.max_time_us == 0 {
            return bad("max_time_us must be positive");
        }
        self.transport
            .config(self.line_rate())
            .map(|_| ())
            .map_err(ScenarioError)
    }

    /// Host link rate.
    pub fn line_rate(&self) -> Rate {
        match self.topology {
            Topology::FatTree { link_gbps, .. } => Rate::from_gbps(link_gbps),
            Topology::LeafSpine { host_gbps, .. } => Rate::from_gbps(host_gbps),
        }
    }
}

impl TransportConfig {
    /// The endpoint configuration, or why it is invalid.
    pub fn config(&self, line_rate: Rate) -> Result<Config, String> {
        let mut c = match self.mode.as_str() {
            "weir" => Config::default(),
            "go_back_n" => Config::go_back_n(),
            m => return Err(format!("transport.mode {m:?}: expected weir or go_back_n")),
        };
        c.cc = CcConfig::by_name(&self.cc)
            .ok_or_else(|| format!("transport.cc {:?}: unknown algorithm", self.cc))?;
        if c.mode != Mode::GoBackN {
            c.paths = self.paths;
        }
        c.spray_burst = self.spray_burst;
        c.max_payload = self.max_payload;
        c.line_rate = line_rate;
        c.min_rto = Duration::from_micros(self.min_rto_us);
        c.initial_rto = Duration::from_micros(self.initial_rto_us);
        c.request_int = self.request_int;
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }
}

fn one() -> u64 {
    1
}
fn hundred() -> u64 {
    100
}
fn thousand() -> u64 {
    1000
}
