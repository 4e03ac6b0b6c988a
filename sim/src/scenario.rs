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
    #[serde(deserialize_with = "tagged")]
    pub topology: Topology,
    /// Switch queues and forwarding.
    #[serde(default)]
    pub switch: SwitchConfig,
    /// Transport configuration of every host.
    #[serde(default)]
    pub transport: TransportConfig,
    /// The traffic of a single job over every host (`[workload]`). Either this or `[[jobs]]`
    /// (or both: the `[workload]` job comes first).
    #[serde(default, deserialize_with = "tagged_opt")]
    pub workload: Option<Workload>,
    /// Several jobs at once, each on its own hosts (`[[jobs]]`).
    #[serde(default)]
    pub jobs: Vec<Job>,
    /// Failures and degradations at given times (`[[events]]`).
    #[serde(default)]
    pub events: Vec<FaultEvent>,
    /// Limits, framing and reporting.
    #[serde(default)]
    pub run: RunConfig,
}

/// One job: a workload on a set of hosts, starting at a given time.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Job {
    /// Name in the per-job results (default `job<i>`).
    #[serde(default)]
    pub name: Option<String>,
    /// Explicit host list (job rank `i` is `hosts[i]`).
    #[serde(default)]
    pub hosts: Option<Vec<u32>>,
    /// Otherwise a host range: the first host ...
    #[serde(default)]
    pub first_host: u32,
    /// ... and the number of hosts (default: every host from `first_host` on).
    #[serde(default)]
    pub host_count: Option<u32>,
    /// Start time in µs after the connections are up.
    #[serde(default)]
    pub start_us: u64,
    /// The traffic.
    #[serde(deserialize_with = "tagged")]
    pub workload: Workload,
}

/// Deserialize an enum written as a table with a `kind` key. Serde's internally tagged
/// enums buffer the table before they know the variant, which drops the key names from type
/// errors (a wrong value was reported at the table's header); here the table is read whole,
/// `kind` picks the variant and the rest deserializes as that variant's fields, so an error
/// says which key is wrong (`in \`link_delay_ns\``).
fn tagged<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    use serde::de::Error as _;
    let mut table = toml::Table::deserialize(d)?;
    let kind = match table.remove("kind") {
        Some(toml::Value::String(k)) => k,
        Some(other) => {
            return Err(D::Error::custom(format!(
                "`kind` must be a string, not {}",
                other.type_str()
            )));
        }
        None => return Err(D::Error::missing_field("kind")),
    };
    let mut outer = toml::Table::new();
    outer.insert(kind.clone(), toml::Value::Table(table));
    T::deserialize(toml::Value::Table(outer)).map_err(|e| {
        let msg = e.to_string();
        // The variant is the outer key: "in `fat_tree.k`" reads better as "in `k`".
        let msg = msg.replace(&format!("`{kind}."), "`");
        D::Error::custom(format!("kind = {kind:?}: {}", msg.trim_end()))
    })
}

/// [`tagged`] for an optional table.
fn tagged_opt<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    tagged(d).map(Some)
}

/// What a fault event does.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FaultAction {
    /// The link (both directions) or every link of the switch fails: packets on it are lost,
    /// routes are recomputed around it.
    Down,
    /// The link or switch comes back; routes are recomputed.
    Up,
    /// The link (both directions) or every link of the switch loses packets with probability
    /// `loss` from now on (0 restores `switch.link_loss`).
    Loss,
    /// The link (both directions) or every link of the switch changes its rate (`rate_gbps`)
    /// and/or propagation delay (`delay_ns`) from now on: per-link speeds and delays (at
    /// `at_us = 0`) or a link renegotiating to a lower speed. Packets already serialising
    /// finish at the old rate. A host link's change is not told to its transport (whose
    /// `line_rate` stays the topology's).
    Set,
}

/// A failure or degradation at a given time (`[[events]]`).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FaultEvent {
    /// When, in µs after the connections are up.
    pub at_us: u64,
    /// The link, as its two node ids (hosts are `0..hosts`, switches follow; see docs/sim.md).
    #[serde(default)]
    pub link: Option<[u32; 2]>,
    /// Or a switch, by node id.
    #[serde(default)]
    pub switch: Option<u32>,
    /// What happens.
    pub action: FaultAction,
    /// Loss probability for `action = "loss"`.
    #[serde(default)]
    pub loss: f64,
    /// New link rate in Gb/s for `action = "set"`.
    #[serde(default)]
    pub rate_gbps: Option<u64>,
    /// New one-way propagation delay in ns for `action = "set"`.
    #[serde(default)]
    pub delay_ns: Option<u64>,
}

/// Topology kinds. Every link has the same propagation delay. In TOML the kind is a key of
/// the table (`kind = "fat_tree"`; see [`tagged`]).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
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
    /// Rail-optimised GPU cluster: `servers × gpus_per_server` GPUs, one NIC each; GPU `i` of
    /// every server attaches to the rail-`i` leaf of its server group (`servers_per_leaf`
    /// servers); every leaf connects to every spine. GPUs of one server also share an
    /// intra-server interconnect (NVLink-like), modelled as a latency-bandwidth link. Host
    /// (GPU) `s·gpus_per_server + i` is GPU `i` of server `s` (server-major numbering).
    Rail {
        /// Servers.
        servers: u32,
        /// GPUs (and NICs, and rails) per server.
        #[serde(default = "eight")]
        gpus_per_server: u32,
        /// Servers under one leaf of each rail.
        #[serde(default = "thirty_two")]
        servers_per_leaf: u32,
        /// Spine switches (each connects to every leaf).
        spines: u32,
        /// NIC (GPU–leaf) link rate in Gb/s.
        #[serde(default = "hundred")]
        host_gbps: u64,
        /// Leaf–spine link rate in Gb/s.
        #[serde(default = "hundred")]
        fabric_gbps: u64,
        /// One-way propagation delay of every network link in ns.
        #[serde(default = "thousand")]
        link_delay_ns: u64,
        /// Intra-server interconnect bandwidth per GPU and direction in Gb/s (3600 = 450 GB/s:
        /// H100 NVLink 4, 18 links, 900 GB/s counted in both directions).
        #[serde(default = "nvlink_gbps")]
        nvlink_gbps: u64,
        /// Intra-server transfer latency in ns.
        #[serde(default = "five_hundred")]
        nvlink_latency_ns: u64,
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
    /// Adaptive routing: the equal-cost next hop with the fewest queued bytes (ties broken
    /// by the ECMP hash), per packet.
    Adaptive,
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
    /// PFC (IEEE 802.1Qbb, one priority): an ingress port whose buffered bytes reach this
    /// sends PAUSE upstream. Off unless both PFC thresholds are set. With PFC on, admission is
    /// per ingress port (at most `buffer_bytes` each) instead of per output queue, and
    /// `pfc_xoff_bytes` + headroom must fit in `buffer_bytes` (docs/sim.md), so nothing drops.
    pub pfc_xoff_bytes: Option<u64>,
    /// PFC: a paused ingress whose buffered bytes fall to this sends RESUME.
    pub pfc_xon_bytes: Option<u64>,
    /// A buffer shared by all output queues of a switch, in bytes (`None`: every output queue
    /// has its own `buffer_bytes`). With it, a queue admits a packet while the switch's total
    /// stays within this and the queue stays within `dt_alpha` × the free shared buffer:
    /// Choudhury & Hahne's dynamic thresholds (IEEE/ACM ToN 6(2), 1998), as shared-buffer
    /// datacenter switches implement them. `buffer_bytes` still caps one queue. Not combined
    /// with PFC (whose headroom accounting is per ingress port).
    pub shared_buffer_bytes: Option<u64>,
    /// Dynamic-threshold factor α for `shared_buffer_bytes` (a queue may hold up to α times
    /// the unused shared buffer).
    pub dt_alpha: f64,
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
            pfc_xoff_bytes: None,
            pfc_xon_bytes: None,
            shared_buffer_bytes: None,
            dt_alpha: 1.0,
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
    /// Parameter overrides of `cc` by name, in the units `weir cc show NAME` lists (e.g.
    /// `[transport.cc_params]` with `t_low = 10` for TIMELY); unknown names and values out of
    /// range are refused.
    pub cc_params: std::collections::BTreeMap<String, f64>,
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
    /// Shortest RACK reordering window in µs (the transport's `min_reorder_window`): how far
    /// a packet may fall behind later ones on other paths before it counts as lost. The
    /// default, 20, is about the drain time of one 256 KiB switch buffer at 100 Gb/s.
    pub reorder_window_us: u64,
    /// Ask for INT on every data packet.
    pub request_int: bool,
    /// Bytes a connection accepts before the matching receive is posted (the transport's
    /// `unexpected_bytes`). Payloads are virtual, so this costs no memory; the default
    /// (1 GiB) stands in for the receive buffers NCCL posts ahead of time.
    pub unexpected_bytes: u64,
    /// The receiver ACKs after this many data packets (the transport's `ack_every`) ...
    pub ack_every: u32,
    /// ... or this many ns after the first unacknowledged one (`ack_delay`).
    pub ack_delay_ns: u64,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            mode: "weir".into(),
            cc: "fixed".into(),
            cc_params: std::collections::BTreeMap::new(),
            paths: 8,
            spray_burst: 1,
            max_payload: 4096,
            min_rto_us: 100,
            initial_rto_us: 200,
            reorder_window_us: 20,
            request_int: false,
            unexpected_bytes: 1 << 30,
            ack_every: Config::default().ack_every,
            ack_delay_ns: Config::default().ack_delay.as_nanos(),
        }
    }
}

/// Traffic patterns. Every workload is a set of messages (source, destination, bytes): a `Send`
/// on the source matched by a `Recv` on the destination (tagged with the message id). Host
/// indices inside a workload are job ranks (`0..` the job's host count).
/// In TOML the kind is a key of the table (`kind = "incast"`; see [`tagged`]).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Workload {
    /// Every rank sends one message to a partner drawn as a random derangement (nobody sends to
    /// itself, everybody receives exactly one message); all start together.
    Permutation {
        /// Message size in bytes.
        bytes: u64,
    },
    /// Ranks `1..=senders` each send one message to rank 0, all at once.
    Incast {
        /// Message size in bytes.
        bytes: u64,
        /// Number of senders.
        senders: u32,
    },
    /// A collective from `weir_collectives::plan`. Per rank, a step's transfers are posted when
    /// that rank's previous step finished (its sends and its receives); no global barrier.
    Collective {
        /// Operation.
        op: CollectiveOp,
        /// Algorithm.
        algorithm: CollectiveAlgorithm,
        /// Size in bytes, as nccl-tests counts it: allreduce the buffer per rank; allgather the
        /// gathered output; reduce-scatter the input; all-to-all the send buffer per rank.
        bytes: u64,
        /// Element size in bytes (4: f32).
        #[serde(default = "four")]
        elem_bytes: u32,
        /// Pipeline segments (`plan`'s `pipeline`).
        #[serde(default = "one_u32")]
        pipeline: u32,
        /// Ranks per node for `hierarchical` (default: the topology's GPUs per server).
        #[serde(default)]
        ranks_per_node: Option<u32>,
    },
    /// Flows with sizes drawn from a CDF, Poisson arrivals per rank at `load` × host link rate,
    /// uniformly random destinations (as the HPCC/ns-3 `traffic_gen.py`).
    FlowSize {
        /// Built-in CDF: `"websearch"` or `"hadoop"` (examples/sim/cdf/); or use `cdf_points`.
        #[serde(default)]
        cdf: Option<String>,
        /// Inline CDF: `[[bytes, cumulative percent], ...]`, increasing, ending at 100.
        #[serde(default)]
        cdf_points: Option<Vec<[f64; 2]>>,
        /// Offered load per rank as a fraction of the host link rate (0 < load ≤ 1).
        load: f64,
        /// Arrivals during this many µs from the job's start.
        duration_us: u64,
    },
    /// Explicit messages with dependencies (a DAG).
    Messages {
        /// The messages; a message's id is its index in this list.
        messages: Vec<MessageSpec>,
    },
}

/// One explicit message of a `messages` workload.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MessageSpec {
    /// Sending rank.
    pub src: u32,
    /// Receiving rank.
    pub dst: u32,
    /// Size in bytes.
    pub bytes: u64,
    /// Ids of messages that must be delivered before this one is posted.
    #[serde(default)]
    pub after: Vec<u32>,
    /// Earliest post time in µs after the job's start.
    #[serde(default)]
    pub start_us: u64,
}

/// Collective operations the simulator runs.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CollectiveOp {
    /// AllReduce.
    Allreduce,
    /// AllGather.
    Allgather,
    /// ReduceScatter.
    ReduceScatter,
    /// All-to-all.
    Alltoall,
}

/// Collective algorithms (`weir_collectives::Algorithm`).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CollectiveAlgorithm {
    /// Ring.
    Ring,
    /// Single binary tree.
    Tree,
    /// NCCL's double binary tree.
    DoubleBinaryTree,
    /// Recursive halving-doubling (Rabenseifner).
    HalvingDoubling,
    /// Intra-node ring, inter-node halving-doubling, intra-node ring.
    Hierarchical,
    /// Pairwise-exchange all-to-all.
    Pairwise,
    /// Bruck all-to-all.
    Bruck,
}

/// Run limits, framing and reporting.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// Stop after this much simulated time (µs), counted from the workload's start.
    pub max_time_us: u64,
    /// Bytes each packet occupies on the wire besides the Weir header and payload (Ethernet
    /// 14 + FCS 4 + IPv4 20 + UDP 8 = 46 by default).
    pub frame_overhead_bytes: u32,
    /// Host (NIC + PCIe) delay in ns, added to the propagation delay of every host link in
    /// each direction.
    pub host_delay_ns: u64,
    /// Sample the time series (queue depth, link utilisation) every this many µs; 0 = off.
    pub sample_interval_us: u64,
    /// Links kept in the time series, busiest first; 0 (default): every link when the topology
    /// has at most 256 directed links, else the 32 busiest.
    pub series_links: u32,
    /// Call the progress callback every this many events.
    pub progress_events: u64,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            max_time_us: 1_000_000,
            frame_overhead_bytes: 46,
            host_delay_ns: 0,
            sample_interval_us: 0,
            series_links: 0,
            progress_events: 1 << 20,
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

/// Largest message the transport takes in one request.
const MAX_MSG: u64 = u32::MAX as u64;

/// Most messages a scenario may generate (about 64 B each, plus the schedule while it is
/// converted: 2^25 messages take about 4 GB at peak).
const MAX_MESSAGES: u64 = 1 << 25;

/// Upper bounds of numeric keys, chosen so that every derived quantity stays exact in the
/// simulator's integer arithmetic (picoseconds in a `u64`, wire bytes in a `u32`) with a wide
/// margin, and far beyond any network the simulator is meant for.
mod limit {
    /// Link rates, Gb/s (100 Tb/s).
    pub(super) const GBPS: u64 = 100_000;
    /// Propagation and host delays, ns (1 s).
    pub(super) const DELAY_NS: u64 = 1_000_000_000;
    /// Times and durations in µs (10^11 µs, about 28 hours of simulated time; 10^17 ps).
    pub(super) const TIME_US: u64 = 100_000_000_000;
    /// Buffers and thresholds, bytes (1 TiB).
    pub(super) const BYTES: u64 = 1 << 40;
    /// Framing overhead per packet, bytes (Ethernet, VLANs, IPv6, UDP and tunnels fit many
    /// times over).
    pub(super) const FRAME_OVERHEAD: u64 = 1024;
}

/// A validation error naming a key: "`key` = value is out of range (lo..=hi)". `from_toml`
/// puts the key's line in front.
fn out_of_range(key: &str, v: impl std::fmt::Display, lo: u64, hi: u64) -> ScenarioError {
    ScenarioError(format!("`{key}` = {v} is out of range ({lo}..={hi})"))
}

/// `v` within `lo..=hi`, or an error naming `key`.
fn within(key: &str, v: u64, lo: u64, hi: u64) -> Result<(), ScenarioError> {
    if (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(out_of_range(key, v, lo, hi))
    }
}

/// The 1-based line of the value at the dotted `path` in `text` (numeric parts index arrays,
/// arrays of tables included), if the text has it.
fn line_of(text: &str, path: &str) -> Option<usize> {
    let root = toml::de::DeTable::parse(text).ok()?;
    let mut parts = path.split('.');
    let mut v = root.get_ref().get(parts.next()?)?;
    for part in parts {
        v = match part.parse::<usize>() {
            Ok(i) => v.get_ref().get(i)?,
            Err(_) => v.get_ref().get(part)?,
        };
    }
    let start = v.span().start.min(text.len());
    Some(text.get(..start)?.matches('\n').count() + 1)
}

/// Put the line of the key an error names (a message starting with "`key`") in front of it.
fn locate(text: &str, e: ScenarioError) -> ScenarioError {
    let key =
        e.0.strip_prefix('`')
            .and_then(|rest| rest.split_once('`'))
            .map(|(k, _)| k);
    match key.and_then(|k| line_of(text, k)) {
        Some(line) => ScenarioError(format!("line {line}: {}", e.0)),
        None => e,
    }
}

/// A parse error whose span is a whole table (a kind-tagged table, see [`tagged`]) but whose
/// message names the key ("in `k`"): the key's own line in front, found under that table's
/// header.
fn locate_de(text: &str, e: &toml::de::Error) -> ScenarioError {
    let msg = e.to_string();
    let key = msg
        .rsplit_once("in `")
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(k, _)| k);
    let (Some(key), Some(span)) = (key, e.span()) else {
        return ScenarioError(msg);
    };
    let Some(head) = text.get(..span.start) else {
        return ScenarioError(msg);
    };
    let header_line = head.matches('\n').count();
    let found = text
        .lines()
        .enumerate()
        .skip(header_line + 1)
        .take_while(|(_, l)| !l.trim_start().starts_with('['))
        .find(|(_, l)| {
            l.trim_start()
                .strip_prefix(key)
                .is_some_and(|r| r.trim_start().starts_with('='))
        });
    match found {
        Some((i, _)) => ScenarioError(format!("line {}: {msg}", i + 1)),
        None => ScenarioError(msg),
    }
}

impl Scenario {
    /// Parse and validate a TOML scenario. Errors name the key and its line.
    pub fn from_toml(text: &str) -> Result<Scenario, ScenarioError> {
        let s: Scenario = toml::from_str(text).map_err(|e| locate_de(text, &e))?;
        s.validate().map_err(|e| locate(text, e))?;
        Ok(s)
    }

    /// Parse a TOML scenario after overriding some keys, then validate: the building block of
    /// parameter sweeps. Each override is a dotted key path (`"switch.buffer_bytes"`,
    /// `"transport.cc"`, `"jobs.1.workload.bytes"`: a number indexes an array) and a value in
    /// TOML syntax (`"65536"`, `"0.2"`, `"true"`, `"[0, 1]"`); a value that is not valid TOML
    /// is taken as a string (`hpcc` = `"hpcc"`). Missing tables are created.
    pub fn from_toml_with(
        text: &str,
        overrides: &[(&str, &str)],
    ) -> Result<Scenario, ScenarioError> {
        let err = |e: &dyn std::fmt::Display| ScenarioError(e.to_string());
        let mut root: toml::Table = text.parse().map_err(|e| err(&e))?;
        for &(path, value) in overrides {
            let v = match format!("v = {value}").parse::<toml::Table>() {
                Ok(mut t) => t.remove("v").unwrap_or_else(|| value.into()),
                Err(_) => toml::Value::String(value.to_string()),
            };
            set_path(&mut root, path, v)
                .map_err(|e| ScenarioError(format!("override {path}: {e}")))?;
        }
        let s: Scenario = toml::Value::Table(root).try_into().map_err(|e| err(&e))?;
        s.validate().map_err(|e| locate(text, e))?;
        Ok(s)
    }

    /// Hosts (NICs, GPUs) in the topology.
    pub fn hosts(&self) -> u64 {
        match self.topology {
            Topology::FatTree { k, .. } => u64::from(k).pow(3) / 4,
            Topology::LeafSpine {
                leaves,
                hosts_per_leaf,
                ..
            } => u64::from(leaves) * u64::from(hosts_per_leaf),
            Topology::Rail {
                servers,
                gpus_per_server,
                ..
            } => u64::from(servers) * u64::from(gpus_per_server),
        }
    }

    /// Hosts per server sharing the intra-server interconnect (1 outside rail topologies).
    pub fn gpus_per_server(&self) -> u32 {
        match self.topology {
            Topology::Rail {
                gpus_per_server, ..
            } => gpus_per_server,
            _ => 1,
        }
    }

    /// The jobs to run: the `[workload]` job over every host, then `[[jobs]]`.
    pub fn all_jobs(&self) -> Vec<Job> {
        let mut v = Vec::new();
        if let Some(w) = &self.workload {
            v.push(Job {
                name: Some("workload".into()),
                hosts: None,
                first_host: 0,
                host_count: None,
                start_us: 0,
                workload: w.clone(),
            });
        }
        v.extend(self.jobs.iter().cloned());
        v
    }

    /// Every numeric key within its range (see [`limit`]); errors name the key.
    fn check_ranges(&self) -> Result<(), ScenarioError> {
        /// Values by key name.
        type Keyed<'a> = &'a [(&'a str, u64)];
        let (rates, delays): (Keyed<'_>, Keyed<'_>) = match &self.topology {
            Topology::FatTree {
                link_gbps,
                link_delay_ns,
                ..
            } => (
                &[("topology.link_gbps", *link_gbps)],
                &[("topology.link_delay_ns", *link_delay_ns)],
            ),
            Topology::LeafSpine {
                host_gbps,
                fabric_gbps,
                link_delay_ns,
                ..
            } => (
                &[
                    ("topology.host_gbps", *host_gbps),
                    ("topology.fabric_gbps", *fabric_gbps),
                ],
                &[("topology.link_delay_ns", *link_delay_ns)],
            ),
            Topology::Rail {
                host_gbps,
                fabric_gbps,
                nvlink_gbps,
                link_delay_ns,
                nvlink_latency_ns,
                ..
            } => (
                &[
                    ("topology.host_gbps", *host_gbps),
                    ("topology.fabric_gbps", *fabric_gbps),
                    ("topology.nvlink_gbps", *nvlink_gbps),
                ],
                &[
                    ("topology.link_delay_ns", *link_delay_ns),
                    ("topology.nvlink_latency_ns", *nvlink_latency_ns),
                ],
            ),
        };
        for &(k, v) in rates {
            within(k, v, 1, limit::GBPS)?;
        }
        for &(k, v) in delays {
            within(k, v, 0, limit::DELAY_NS)?;
        }
        let sw = &self.switch;
        within("switch.buffer_bytes", sw.buffer_bytes, 1, limit::BYTES)?;
        for (k, v) in [
            ("switch.ecn_kmin_bytes", sw.ecn_kmin_bytes),
            ("switch.ecn_kmax_bytes", sw.ecn_kmax_bytes),
            ("switch.pfc_xoff_bytes", sw.pfc_xoff_bytes),
            ("switch.pfc_xon_bytes", sw.pfc_xon_bytes),
        ] {
            if let Some(v) = v {
                within(k, v, 0, limit::BYTES)?;
            }
        }
        if let Some(v) = sw.shared_buffer_bytes {
            within("switch.shared_buffer_bytes", v, 1, limit::BYTES)?;
        }
        for (k, v) in [
            ("switch.link_loss", sw.link_loss),
            ("switch.ecn_pmax", sw.ecn_pmax),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(ScenarioError(format!(
                    "`{k}` = {v} is out of range (a probability: 0..=1)"
                )));
            }
        }
        let t = &self.transport;
        within(
            "transport.paths",
            u64::from(t.paths),
            1,
            u64::from(u16::MAX),
        )?;
        within(
            "transport.spray_burst",
            u64::from(t.spray_burst),
            1,
            u64::from(u16::MAX),
        )?;
        within("transport.min_rto_us", t.min_rto_us, 1, limit::TIME_US)?;
        within(
            "transport.initial_rto_us",
            t.initial_rto_us,
            1,
            limit::TIME_US,
        )?;
        within(
            "transport.reorder_window_us",
            t.reorder_window_us,
            0,
            limit::TIME_US,
        )?;
        within("transport.ack_delay_ns", t.ack_delay_ns, 0, limit::DELAY_NS)?;
        within(
            "transport.unexpected_bytes",
            t.unexpected_bytes,
            0,
            limit::BYTES,
        )?;
        let r = &self.run;
        within("run.max_time_us", r.max_time_us, 1, limit::TIME_US)?;
        within(
            "run.frame_overhead_bytes",
            u64::from(r.frame_overhead_bytes),
            0,
            limit::FRAME_OVERHEAD,
        )?;
        within("run.host_delay_ns", r.host_delay_ns, 0, limit::DELAY_NS)?;
        within(
            "run.sample_interval_us",
            r.sample_interval_us,
            0,
            limit::TIME_US,
        )?;
        within("run.series_links", u64::from(r.series_links), 0, 1 << 24)?;
        within("run.progress_events", r.progress_events, 1, u64::MAX)?;
        for (i, j) in self.jobs.iter().enumerate() {
            within(&format!("jobs.{i}.start_us"), j.start_us, 0, limit::TIME_US)?;
        }
        for (i, e) in self.events.iter().enumerate() {
            within(&format!("events.{i}.at_us"), e.at_us, 0, limit::TIME_US)?;
        }
        let workloads = self
            .workload
            .iter()
            .map(|w| ("workload".to_string(), w))
            .chain(
                self.jobs
                    .iter()
                    .enumerate()
                    .map(|(i, j)| (format!("jobs.{i}.workload"), &j.workload)),
            );
        for (at, w) in workloads {
            match w {
                Workload::FlowSize { duration_us, .. } => {
                    within(
                        &format!("{at}.duration_us"),
                        *duration_us,
                        1,
                        limit::TIME_US,
                    )?;
                }
                Workload::Messages { messages } => {
                    for (i, m) in messages.iter().enumerate() {
                        let k = format!("{at}.messages.{i}.start_us");
                        within(&k, m.start_us, 0, limit::TIME_US)?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Check that the simulator can run this scenario.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        self.check_ranges()?;
        let bad = |m: &str| Err(ScenarioError(m.into()));
        match self.topology {
            Topology::FatTree { k, link_gbps, .. } => {
                if !(2..=64).contains(&k) || k % 2 != 0 {
                    return bad("fat_tree.k must be even and within 2..=64");
                }
                if link_gbps == 0 {
                    return bad("link_gbps must be positive");
                }
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
            }
            Topology::Rail {
                servers,
                gpus_per_server,
                servers_per_leaf,
                spines,
                host_gbps,
                fabric_gbps,
                nvlink_gbps,
                ..
            } => {
                if servers == 0 || gpus_per_server == 0 || servers_per_leaf == 0 || spines == 0 {
                    return bad(
                        "servers, gpus_per_server, servers_per_leaf, spines must be positive",
                    );
                }
                if gpus_per_server > 64 || servers_per_leaf > 4096 || spines > 4096 {
                    return bad("gpus_per_server ≤ 64, servers_per_leaf and spines ≤ 4096");
                }
                if host_gbps == 0 || fabric_gbps == 0 || nvlink_gbps == 0 {
                    return bad("link rates must be positive");
                }
            }
        }
        let hosts = self.hosts();
        if !(2..=1 << 20).contains(&hosts) {
            return bad("the topology must have 2..=1048576 hosts");
        }
        // Route tables hold a hop count per (ToR, node): keep them within ~512 MB.
        let tors = match self.topology {
            Topology::FatTree { k, .. } => u64::from(k) * u64::from(k) / 2,
            Topology::LeafSpine { leaves, .. } => u64::from(leaves),
            Topology::Rail {
                servers,
                gpus_per_server,
                servers_per_leaf,
                ..
            } => u64::from(servers.div_ceil(servers_per_leaf)) * u64::from(gpus_per_server),
        };
        if tors.saturating_mul(self.nodes()) > 1 << 28 {
            return bad("topology too large: ToR switches × nodes must stay within 2^28");
        }
        let jobs = self.all_jobs();
        if jobs.is_empty() {
            return bad("no workload: give [workload] or [[jobs]]");
        }
        let mut total_msgs = 0u64;
        for (i, j) in jobs.iter().enumerate() {
            let n = match &j.hosts {
                Some(list) => {
                    if list.iter().any(|&h| u64::from(h) >= hosts) {
                        return Err(ScenarioError(format!("job {i}: host out of range")));
                    }
                    let mut sorted = list.clone();
                    sorted.sort_unstable();
                    sorted.dedup();
                    if sorted.len() != list.len() {
                        return Err(ScenarioError(format!("job {i}: duplicate host")));
                    }
                    list.len() as u64
                }
                None => {
                    let first = u64::from(j.first_host);
                    let count = j.host_count.map_or(hosts.saturating_sub(first), u64::from);
                    if first.saturating_add(count) > hosts {
                        return Err(ScenarioError(format!("job {i}: hosts out of range")));
                    }
                    count
                }
            };
            self.validate_workload(&j.workload, n)
                .map_err(|e| ScenarioError(format!("job {i}: {e}")))?;
            total_msgs = total_msgs.saturating_add(self.estimate_messages(&j.workload, n));
        }
        if total_msgs > MAX_MESSAGES {
            return Err(ScenarioError(format!(
                "the workload has about {total_msgs} messages, more than {MAX_MESSAGES} \
                 (a flat ring over thousands of ranks is too big as plain data: use \
                 algorithm = \"hierarchical\")"
            )));
        }
        for e in &self.events {
            match (e.link, e.switch) {
                (Some([a, b]), None) if a != b && u64::from(a.max(b)) < self.nodes() => {}
                (None, Some(s)) if u64::from(s) >= hosts && u64::from(s) < self.nodes() => {}
                _ => return bad("events: give one `link = [a, b]` (node ids) or one `switch` id"),
            }
            if !(0.0..=1.0).contains(&e.loss) {
                return bad("events: loss must be within 0..=1");
            }
            if e.action == FaultAction::Set {
                if e.rate_gbps.is_none() && e.delay_ns.is_none() {
                    return bad("events: action = \"set\" needs rate_gbps and/or delay_ns");
                }
                if e.rate_gbps == Some(0) || e.rate_gbps.is_some_and(|r| r > 100_000) {
                    return bad("events: rate_gbps must be within 1..=100000");
                }
                if e.delay_ns.is_some_and(|d| d > 1_000_000_000) {
                    return bad("events: delay_ns must be at most 1 s");
                }
                // PFC's headroom is sized for the topology's fastest link and its delay; a
                // faster or longer link would void the no-drop guarantee.
                if self.switch.pfc_xoff_bytes.is_some()
                    && (e
                        .rate_gbps
                        .is_some_and(|r| Rate::from_gbps(r) > self.max_link_rate())
                        || e.delay_ns
                            .is_some_and(|d| Duration::from_nanos(d) > self.link_delay()))
                {
                    return bad(
                        "events: with PFC, a link may not become faster or longer than the \
                         topology's (the headroom is sized for those)",
                    );
                }
            } else if e.rate_gbps.is_some() || e.delay_ns.is_some() {
                return bad("events: rate_gbps and delay_ns belong to action = \"set\"");
            }
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
        if let Some(shared) = sw.shared_buffer_bytes {
            if shared == 0 {
                return bad("shared_buffer_bytes must be positive");
            }
            if !(sw.dt_alpha.is_finite() && sw.dt_alpha > 0.0 && sw.dt_alpha <= 64.0) {
                return bad("dt_alpha must be within (0, 64]");
            }
            if sw.pfc_xoff_bytes.is_some() {
                return bad(
                    "shared_buffer_bytes cannot be combined with PFC (its headroom is per ingress port)",
                );
            }
        }
        match (sw.pfc_xoff_bytes, sw.pfc_xon_bytes) {
            (None, None) => {}
            (Some(xoff), Some(xon)) => {
                if xon >= xoff {
                    return bad("pfc_xon_bytes must be below pfc_xoff_bytes");
                }
                let head = self.pfc_headroom();
                if xoff.saturating_add(head) > sw.buffer_bytes {
                    return Err(ScenarioError(format!(
                        "pfc_xoff_bytes + headroom ({head} B: what arrives in one link round \
                         trip plus two frames) must not exceed buffer_bytes"
                    )));
                }
            }
            _ => return bad("PFC needs both pfc_xoff_bytes and pfc_xon_bytes"),
        }
        if self.run.max_time_us == 0 {
            return bad("max_time_us must be positive");
        }
        if self.run.progress_events == 0 {
            return bad("progress_events must be positive");
        }
        self.transport
            .config(self.line_rate())
            .map(|_| ())
            .map_err(ScenarioError)
    }

    fn validate_workload(&self, w: &Workload, n: u64) -> Result<(), String> {
        let size = |b: u64| {
            if b == 0 || b > MAX_MSG {
                Err("bytes must be within 1..=4294967295".to_string())
            } else {
                Ok(())
            }
        };
        if n == 0 {
            return Err("a job needs at least one host".into());
        }
        match w {
            Workload::Permutation { bytes } => {
                size(*bytes)?;
                if n < 2 {
                    return Err("permutation needs two hosts".into());
                }
            }
            Workload::Incast { bytes, senders } => {
                size(*bytes)?;
                if *senders == 0 || u64::from(*senders) >= n {
                    return Err("incast.senders must be within 1..hosts".into());
                }
            }
            Workload::Collective {
                op,
                algorithm,
                bytes,
                elem_bytes,
                pipeline,
                ranks_per_node,
            } => {
                if *elem_bytes == 0 || *elem_bytes > 16 {
                    return Err("elem_bytes must be within 1..=16".into());
                }
                if *bytes == 0 || *bytes > 1 << 40 {
                    return Err("collective bytes must be within 1..=2^40".into());
                }
                if *pipeline == 0 || *pipeline > 1024 {
                    return Err("pipeline must be within 1..=1024".into());
                }
                if n > weir_collectives::MAX_RANKS as u64 {
                    return Err("too many ranks for a collective".into());
                }
                if *algorithm == CollectiveAlgorithm::Hierarchical {
                    let l = u64::from(ranks_per_node.unwrap_or(self.gpus_per_server()));
                    if l < 1 || !n.is_multiple_of(l) {
                        return Err("hierarchical: ranks_per_node must divide the ranks".into());
                    }
                }
                if *op == CollectiveOp::Alltoall && n.saturating_mul(n) > 1 << 22 {
                    return Err("all-to-all limited to 2048 ranks (one connection per pair)".into());
                }
            }
            Workload::FlowSize {
                cdf,
                cdf_points,
                load,
                duration_us,
            } => {
                if !(*load > 0.0 && *load <= 1.0) {
                    return Err("load must be within (0, 1]".into());
                }
                if *duration_us == 0 {
                    return Err("duration_us must be positive".into());
                }
                if n < 2 {
                    return Err("flow_size needs two hosts".into());
                }
                crate::workload::Cdf::from_spec(cdf.as_deref(), cdf_points.as_deref())?;
            }
            Workload::Messages { messages } => {
                if messages.len() > 1 << 24 {
                    return Err("at most 2^24 messages".into());
                }
                for (i, m) in messages.iter().enumerate() {
                    size(m.bytes)?;
                    if u64::from(m.src) >= n || u64::from(m.dst) >= n || m.src == m.dst {
                        return Err(format!("message {i}: src/dst must be distinct ranks"));
                    }
                    if m.after.iter().any(|&d| d as usize >= i) {
                        return Err(format!(
                            "message {i}: `after` may only name earlier messages"
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// An upper estimate of the messages a workload on `n` ranks generates.
    fn estimate_messages(&self, w: &Workload, n: u64) -> u64 {
        let log = u64::from(64 - n.leading_zeros());
        match w {
            Workload::Permutation { .. } => n,
            Workload::Incast { senders, .. } => u64::from(*senders),
            Workload::Messages { messages } => messages.len() as u64,
            Workload::FlowSize {
                cdf,
                cdf_points,
                load,
                duration_us,
            } => {
                // Twice the expected arrivals; the generator stops at 2^24 anyway.
                let mean = crate::workload::Cdf::from_spec(cdf.as_deref(), cdf_points.as_deref())
                    .map_or(1.0, |c| c.mean().max(1.0));
                let bytes = self.line_rate().bps() as f64 / 8.0 * load * *duration_us as f64 * 1e-6;
                ((2.0 * n as f64 * bytes / mean) as u64).min(1 << 24)
            }
            Workload::Collective {
                op,
                algorithm,
                pipeline,
                ranks_per_node,
                ..
            } => {
                let p = u64::from(*pipeline);
                let per = match (op, algorithm) {
                    (CollectiveOp::Allreduce, CollectiveAlgorithm::Ring) => {
                        2 * n * n.saturating_sub(1)
                    }
                    (_, CollectiveAlgorithm::Ring | CollectiveAlgorithm::Pairwise) => {
                        n * n.saturating_sub(1)
                    }
                    (_, CollectiveAlgorithm::Hierarchical) => {
                        let l = u64::from(ranks_per_node.unwrap_or(self.gpus_per_server()));
                        2 * n * l + 4 * n * (log + 2)
                    }
                    _ => 4 * n * (log + 2),
                };
                per.saturating_mul(p)
            }
        }
    }

    /// Nodes (hosts and switches) in the topology.
    pub fn nodes(&self) -> u64 {
        let hosts = self.hosts();
        match self.topology {
            Topology::FatTree { k, .. } => {
                let k = u64::from(k);
                hosts + k * k + k * k / 4
            }
            Topology::LeafSpine { leaves, spines, .. } => {
                hosts + u64::from(leaves) + u64::from(spines)
            }
            Topology::Rail {
                servers,
                gpus_per_server,
                servers_per_leaf,
                spines,
                ..
            } => {
                let groups = u64::from(servers.div_ceil(servers_per_leaf));
                hosts + groups * u64::from(gpus_per_server) + u64::from(spines)
            }
        }
    }

    /// Host link rate.
    pub fn line_rate(&self) -> Rate {
        match self.topology {
            Topology::FatTree { link_gbps, .. } => Rate::from_gbps(link_gbps),
            Topology::LeafSpine { host_gbps, .. } | Topology::Rail { host_gbps, .. } => {
                Rate::from_gbps(host_gbps)
            }
        }
    }

    /// Fastest network link rate.
    pub fn max_link_rate(&self) -> Rate {
        match self.topology {
            Topology::FatTree { link_gbps, .. } => Rate::from_gbps(link_gbps),
            Topology::LeafSpine {
                host_gbps,
                fabric_gbps,
                ..
            }
            | Topology::Rail {
                host_gbps,
                fabric_gbps,
                ..
            } => Rate::from_gbps(host_gbps.max(fabric_gbps)),
        }
    }

    /// One-way propagation delay of the network links.
    pub fn link_delay(&self) -> Duration {
        match self.topology {
            Topology::FatTree { link_delay_ns, .. }
            | Topology::LeafSpine { link_delay_ns, .. }
            | Topology::Rail { link_delay_ns, .. } => Duration::from_nanos(link_delay_ns),
        }
    }

    /// PFC headroom per ingress port: the bytes that can still arrive after the switch decides
    /// to pause, i.e. one round trip of the fastest link (the PAUSE travels one delay, frames
    /// already on the wire take another) at its rate, plus two maximum frames (the one the
    /// upstream port is serialising when the PAUSE lands, and the one that crossed the
    /// threshold). Host links include `host_delay_ns` each way.
    pub fn pfc_headroom(&self) -> u64 {
        let rate = self.max_link_rate();
        let delay = self
            .link_delay()
            .as_ps()
            .saturating_add(self.run.host_delay_ns.saturating_mul(1000));
        let rtt_bytes = (rate.bps() as u128 * u128::from(delay) * 2 / 8 / 1_000_000_000_000)
            .min(u128::from(u64::MAX)) as u64;
        let frame = u64::from(self.transport.max_payload)
            + weir_wire::MAX_HEADER_LEN as u64
            + u64::from(self.run.frame_overhead_bytes);
        rtt_bytes.saturating_add(2 * frame)
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
        c.cc = if self.cc_params.is_empty() {
            CcConfig::by_name(&self.cc)
                .ok_or_else(|| format!("transport.cc {:?}: unknown algorithm", self.cc))?
        } else {
            let overrides: Vec<(&str, f64)> = self
                .cc_params
                .iter()
                .map(|(k, &v)| (k.as_str(), v))
                .collect();
            CcConfig::from_named(&self.cc, &overrides)
                .map_err(|e| format!("transport.cc_params ({}): {e}", self.cc))?
        };
        if c.mode != Mode::GoBackN {
            c.paths = self.paths;
        }
        c.spray_burst = self.spray_burst;
        c.max_payload = self.max_payload;
        c.line_rate = line_rate;
        c.min_rto = Duration::from_micros(self.min_rto_us);
        c.initial_rto = Duration::from_micros(self.initial_rto_us);
        c.min_reorder_window = Duration::from_micros(self.reorder_window_us);
        c.request_int = self.request_int;
        c.unexpected_bytes = self.unexpected_bytes;
        c.ack_every = self.ack_every;
        c.ack_delay = Duration::from_nanos(self.ack_delay_ns);
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }
}

/// Set `path` (dotted; numeric parts index arrays) in `root` to `v`, creating tables.
fn set_path(root: &mut toml::Table, path: &str, v: toml::Value) -> Result<(), String> {
    let parts: Vec<&str> = path.split('.').collect();
    let Some((last, inner)) = parts.split_last() else {
        return Err("empty key".into());
    };
    if parts.iter().any(|p| p.is_empty()) {
        return Err("empty key segment".into());
    }
    let mut cur = root
        .entry(inner.first().copied().unwrap_or(*last).to_string())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if inner.is_empty() {
        *cur = v;
        return Ok(());
    }
    for part in inner.iter().skip(1).chain(std::iter::once(last)) {
        cur = match cur {
            toml::Value::Table(t) => t
                .entry(part.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new())),
            toml::Value::Array(a) => {
                let i: usize = part
                    .parse()
                    .map_err(|_| format!("{part:?} does not index an array"))?;
                let len = a.len();
                a.get_mut(i)
                    .ok_or_else(|| format!("index {i} out of range (length {len})"))?
            }
            _ => return Err(format!("{part:?} is below a value, not a table")),
        };
    }
    *cur = v;
    Ok(())
}

fn one() -> u64 {
    1
}
fn one_u32() -> u32 {
    1
}
fn four() -> u32 {
    4
}
fn eight() -> u32 {
    8
}
fn thirty_two() -> u32 {
    32
}
fn hundred() -> u64 {
    100
}
fn five_hundred() -> u64 {
    500
}
fn thousand() -> u64 {
    1000
}
fn nvlink_gbps() -> u64 {
    3600
}
