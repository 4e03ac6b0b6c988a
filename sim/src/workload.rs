//! The message layer: every workload becomes a list of messages (source host, destination
//! host, bytes) plus a driver that decides when each one is posted.
//!
//! Contract: [`build`] is a pure function of the scenario and the RNG it is handed; it never
//! panics on a validated scenario. Two drivers exist:
//! * [`Driver::Dag`]: a message is posted (its `Send` and its `Recv` at once) when every message
//!   it depends on has been delivered (receive completed) and its start time has come.
//!   Permutation, incast, flow-size and explicit-message workloads use it.
//! * [`Driver::Steps`]: collectives. Per rank, the transfers of a schedule step are posted when
//!   that rank finished its previous step (its sends completed and its receives completed);
//!   a rank posts the `Send` side of its outgoing transfers and the `Recv` side of its incoming
//!   ones independently, so there is no global barrier. Steps in which a rank takes no part
//!   are skipped for it.
//!
//! Messages between GPUs of one server (rail topologies) use the intra-server link
//! ([`NVLINK`] instead of a connection pair); all others use one transport connection per
//! ordered (source, destination) host pair.

use std::collections::HashMap;

use weir_base::{Instant, Rng};
use weir_collectives::{Algorithm, Collective, plan};

use crate::scenario::{CollectiveAlgorithm, CollectiveOp, Scenario, Workload};

/// `Msg::pair` of a message carried by the intra-server interconnect.
pub(crate) const NVLINK: u32 = u32::MAX;

/// "Not yet" for the time fields of [`Msg`].
pub(crate) const NEVER: Instant = Instant::MAX;

/// One message.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Msg {
    pub(crate) src: u32,
    pub(crate) dst: u32,
    pub(crate) bytes: u32,
    pub(crate) job: u32,
    /// Job-local ranks of `src` and `dst`.
    pub(crate) src_rank: u32,
    pub(crate) dst_rank: u32,
    /// Index into `Work::pairs`, or [`NVLINK`].
    pub(crate) pair: u32,
    pub(crate) send_ready: Instant,
    pub(crate) recv_ready: Instant,
    pub(crate) send_done: Instant,
    pub(crate) recv_done: Instant,
    /// Undelivered dependencies (DAG jobs).
    pub(crate) deps_left: u32,
    /// Completions with an error, a wrong length or a duplicate.
    pub(crate) bad: u8,
}

impl Msg {
    pub(crate) fn complete(&self) -> bool {
        self.send_done != NEVER && self.recv_done != NEVER
    }
}

/// Per-rank step lists of a collective, in compressed form.
#[derive(Debug, Default)]
pub(crate) struct Program {
    /// `rank_groups[r]..rank_groups[r + 1] - 1`: rank `r`'s groups (the last index is a
    /// sentinel).
    pub(crate) rank_groups: Vec<u32>,
    /// Group `g` holds `items[gstart[g]..gstart[g + 1]]`.
    pub(crate) gstart: Vec<u32>,
    /// Message ids.
    pub(crate) items: Vec<u32>,
    /// Current group of each rank.
    pub(crate) cur: Vec<u32>,
    /// Sides of the current group not completed yet.
    pub(crate) pending: Vec<u32>,
}

/// How a job's messages are released.
#[derive(Debug)]
pub(crate) enum Driver {
    /// Dependency graph with start offsets (ps after the job's start).
    Dag {
        start_off: Vec<u64>,
        /// `dep_off[i]..dep_off[i + 1]` indexes `dependents` for local message `i`.
        dep_off: Vec<u32>,
        dependents: Vec<u32>,
    },
    /// Collective steps.
    Steps(Program),
}

/// One job.
#[derive(Debug)]
pub(crate) struct JobState {
    pub(crate) name: String,
    pub(crate) kind: String,
    pub(crate) hosts: u32,
    /// Global ids of its messages.
    pub(crate) first_msg: u32,
    pub(crate) msgs: u32,
    /// Start offset from the workload's time zero, ps.
    pub(crate) start_ps: u64,
    /// nccl-tests size and bus-bandwidth factor (collectives only).
    pub(crate) size_bytes: u64,
    pub(crate) bus_factor: f64,
    pub(crate) driver: Driver,
    pub(crate) left: u32,
    pub(crate) done_at: Instant,
}

/// Everything the network needs to run the workload.
#[derive(Debug, Default)]
pub(crate) struct Work {
    pub(crate) msgs: Vec<Msg>,
    pub(crate) jobs: Vec<JobState>,
    /// Ordered (source, destination) host pairs that need a connection.
    pub(crate) pairs: Vec<(u32, u32)>,
}

/// A flow-size CDF: `(bytes, cumulative percent)` points, increasing, from 0 % to 100 %.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Cdf {
    pts: Vec<(f64, f64)>,
}

const WEBSEARCH: &str = include_str!("../../examples/sim/cdf/websearch.cdf");
const HADOOP: &str = include_str!("../../examples/sim/cdf/hadoop.cdf");

impl Cdf {
    /// A built-in CDF by name, or inline points.
    pub(crate) fn from_spec(
        name: Option<&str>,
        points: Option<&[[f64; 2]]>,
    ) -> Result<Cdf, String> {
        match (name, points) {
            (Some("websearch"), None) => Cdf::parse(WEBSEARCH),
            (Some("hadoop"), None) => Cdf::parse(HADOOP),
            (Some(n), None) => Err(format!("cdf {n:?}: expected websearch or hadoop")),
            (None, Some(p)) => Cdf::new(p.iter().map(|&[b, c]| (b, c)).collect()),
            _ => Err("flow_size needs exactly one of cdf and cdf_points".into()),
        }
    }

    /// Parse `<bytes> <percent>` lines (`#` comments).
    pub(crate) fn parse(text: &str) -> Result<Cdf, String> {
        let mut pts = Vec::new();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut it = line.split_whitespace().map(str::parse::<f64>);
            match (it.next(), it.next()) {
                (Some(Ok(b)), Some(Ok(c))) => pts.push((b, c)),
                _ => return Err(format!("bad CDF line {line:?}")),
            }
        }
        Cdf::new(pts)
    }

    fn new(pts: Vec<(f64, f64)>) -> Result<Cdf, String> {
        let ok = pts.len() >= 2
            && pts
                .iter()
                .all(|&(b, c)| b.is_finite() && c.is_finite() && b >= 0.0)
            && pts[0].1 == 0.0
            && pts[pts.len() - 1].1 == 100.0
            && pts[pts.len() - 1].0 <= 4e9
            && pts.windows(2).all(|w| w[1].0 > w[0].0 && w[1].1 > w[0].1);
        if ok {
            Ok(Cdf { pts })
        } else {
            Err("a CDF needs increasing (bytes ≤ 4e9, percent) points from 0 % to 100 %".into())
        }
    }

    /// Mean flow size (trapezoids, as `custom_rand.py`'s `getAvg`).
    pub(crate) fn mean(&self) -> f64 {
        self.pts
            .windows(2)
            .map(|w| (w[0].0 + w[1].0) / 2.0 * (w[1].1 - w[0].1))
            .sum::<f64>()
            / 100.0
    }

    /// Inverse-CDF sample with linear interpolation, at least one byte.
    pub(crate) fn sample(&self, rng: &mut Rng) -> u64 {
        let y = rng.next_f64() * 100.0;
        let mut v = self.pts[self.pts.len() - 1].0;
        for w in self.pts.windows(2) {
            if y <= w[1].1 {
                let ((x0, y0), (x1, y1)) = (w[0], w[1]);
                v = x0 + (x1 - x0) / (y1 - y0) * (y - y0);
                break;
            }
        }
        (v.round() as u64).max(1)
    }
}

/// Builds every job's messages (the scenario was validated).
pub(crate) fn build(s: &Scenario, rng: &mut Rng) -> Result<Work, String> {
    let hosts = s.hosts() as u32;
    let gps = s.gpus_per_server().max(1);
    let rate_bps = s.line_rate().bps() as f64;
    let mut w = Work::default();
    let mut pair_ix: HashMap<(u32, u32), u32> = HashMap::new();
    for (ji, job) in s.all_jobs().iter().enumerate() {
        let list: Vec<u32> = match &job.hosts {
            Some(l) => l.clone(),
            None => {
                let count = job
                    .host_count
                    .unwrap_or(hosts.saturating_sub(job.first_host));
                (job.first_host..job.first_host.saturating_add(count)).collect()
            }
        };
        let n = list.len();
        let first = w.msgs.len() as u32;
        let mut add = |w: &mut Work, a: usize, b: usize, bytes: u64| -> Result<u32, String> {
            let bytes = u32::try_from(bytes)
                .map_err(|_| "a message exceeds 4 GiB; raise pipeline".to_string())?;
            let (src, dst) = (list[a], list[b]);
            let pair = if src / gps == dst / gps {
                NVLINK
            } else {
                *pair_ix.entry((src, dst)).or_insert_with(|| {
                    w.pairs.push((src, dst));
                    (w.pairs.len() - 1) as u32
                })
            };
            w.msgs.push(Msg {
                src,
                dst,
                bytes,
                job: ji as u32,
                src_rank: a as u32,
                dst_rank: b as u32,
                pair,
                send_ready: NEVER,
                recv_ready: NEVER,
                send_done: NEVER,
                recv_done: NEVER,
                deps_left: 0,
                bad: 0,
            });
            Ok((w.msgs.len() - 1) as u32)
        };
        let mut size_bytes = 0;
        let mut bus_factor = 0.0;
        let kind;
        let driver = match &job.workload {
            Workload::Permutation { bytes } => {
                kind = "permutation".to_string();
                // Sattolo's algorithm: a uniformly random cyclic permutation, hence no fixed
                // point (nobody sends to itself).
                let mut p: Vec<usize> = (0..n).collect();
                for i in (1..n).rev() {
                    let j = rng.below(i as u64) as usize;
                    p.swap(i, j);
                }
                for (a, &b) in p.iter().enumerate() {
                    add(&mut w, a, b, *bytes)?;
                }
                dag_plain(n)
            }
            Workload::Incast { bytes, senders } => {
                kind = "incast".to_string();
                for a in 1..=*senders as usize {
                    add(&mut w, a, 0, *bytes)?;
                }
                dag_plain(*senders as usize)
            }
            Workload::FlowSize {
                cdf,
                cdf_points,
                load,
                duration_us,
            } => {
                kind = "flow_size".to_string();
                let cdf = Cdf::from_spec(cdf.as_deref(), cdf_points.as_deref())?;
                // Poisson arrivals per rank: mean gap = mean size · 8 / (rate · load), as
                // HPCC's traffic_gen.py.
                let gap_ps = cdf.mean() * 8.0 / (rate_bps * load) * 1e12;
                let end = duration_us.saturating_mul(1_000_000);
                let mut arrivals: Vec<(u64, usize, usize, u64)> = Vec::new();
                for a in 0..n {
                    let mut t = 0u64;
                    loop {
                        let u = rng.next_f64().max(f64::MIN_POSITIVE);
                        t = t.saturating_add((-u.ln() * gap_ps) as u64);
                        if t >= end {
                            break;
                        }
                        let mut b = rng.below(n as u64 - 1) as usize;
                        if b >= a {
                            b += 1;
                        }
                        arrivals.push((t, a, b, cdf.sample(rng)));
                        if arrivals.len() > 1 << 24 {
                            return Err("flow_size generates more than 2^24 flows".into());
                        }
                    }
                }
                arrivals.sort_by_key(|&(t, a, _, _)| (t, a));
                let mut start_off = Vec::with_capacity(arrivals.len());
                for &(t, a, b, bytes) in &arrivals {
                    add(&mut w, a, b, bytes.min(u64::from(u32::MAX)))?;
                    start_off.push(t);
                }
                Driver::Dag {
                    dep_off: vec![0; start_off.len() + 1],
                    start_off,
                    dependents: Vec::new(),
                }
            }
            Workload::Messages { messages } => {
                kind = "messages".to_string();
                let mut rev: Vec<Vec<u32>> = vec![Vec::new(); messages.len()];
                for (i, m) in messages.iter().enumerate() {
                    let id = add(&mut w, m.src as usize, m.dst as usize, m.bytes)?;
                    let mut deps = m.after.clone();
                    deps.sort_unstable();
                    deps.dedup();
                    w.msgs[id as usize].deps_left = deps.len() as u32;
                    for d in deps {
                        rev[d as usize].push(i as u32);
                    }
                }
                let mut dep_off = vec![0u32];
                let mut dependents = Vec::new();
                for r in rev {
                    dependents.extend(r);
                    dep_off.push(dependents.len() as u32);
                }
                Driver::Dag {
                    start_off: messages
                        .iter()
                        .map(|m| m.start_us.saturating_mul(1_000_000))
                        .collect(),
                    dep_off,
                    dependents,
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
                let elem = u64::from(*elem_bytes);
                let (coll, count, factor) = match op {
                    CollectiveOp::Allreduce => (
                        Collective::AllReduce,
                        bytes / elem,
                        2.0 * (n as f64 - 1.0) / n as f64,
                    ),
                    CollectiveOp::Allgather => (
                        Collective::AllGather,
                        bytes / elem,
                        (n as f64 - 1.0) / n as f64,
                    ),
                    CollectiveOp::ReduceScatter => (
                        Collective::ReduceScatter,
                        bytes / elem,
                        (n as f64 - 1.0) / n as f64,
                    ),
                    CollectiveOp::Alltoall => (
                        Collective::AllToAll,
                        bytes / elem / n as u64,
                        (n as f64 - 1.0) / n as f64,
                    ),
                };
                let count = count.max(1);
                size_bytes = if *op == CollectiveOp::Alltoall {
                    count * elem * n as u64
                } else {
                    count * elem
                };
                bus_factor = factor;
                let algo = match algorithm {
                    CollectiveAlgorithm::Ring => Algorithm::Ring,
                    CollectiveAlgorithm::Tree => Algorithm::Tree,
                    CollectiveAlgorithm::DoubleBinaryTree => Algorithm::DoubleBinaryTree,
                    CollectiveAlgorithm::HalvingDoubling => Algorithm::HalvingDoubling,
                    CollectiveAlgorithm::Hierarchical => Algorithm::Hierarchical {
                        ranks_per_node: ranks_per_node.unwrap_or(gps) as usize,
                    },
                    CollectiveAlgorithm::Pairwise => Algorithm::Pairwise,
                    CollectiveAlgorithm::Bruck => Algorithm::Bruck,
                };
                kind = format!("{op:?} {algorithm:?}").to_lowercase();
                let count = usize::try_from(count).map_err(|_| "collective too large")?;
                let sched = plan(coll, algo, n, count, *pipeline as usize)
                    .map_err(|e| format!("{kind}: cannot plan: {e:?}"))?;
                let mut per_rank: Vec<Vec<(u32, u32)>> = vec![Vec::new(); n];
                for (si, step) in sched.steps().iter().enumerate() {
                    for t in &step.transfers {
                        if t.src == t.dst {
                            continue; // a local copy takes no network time
                        }
                        let m = add(&mut w, t.src, t.dst, t.len as u64 * elem)?;
                        per_rank[t.src].push((si as u32, m));
                        per_rank[t.dst].push((si as u32, m));
                    }
                }
                drop(sched);
                let mut prog = Program::default();
                for list in per_rank {
                    prog.rank_groups.push(prog.gstart.len() as u32);
                    let mut last = None;
                    for (s, m) in list {
                        if last != Some(s) {
                            prog.gstart.push(prog.items.len() as u32);
                            last = Some(s);
                        }
                        prog.items.push(m);
                    }
                    prog.gstart.push(prog.items.len() as u32);
                }
                prog.rank_groups.push(prog.gstart.len() as u32);
                prog.cur = prog.rank_groups[..n].to_vec();
                prog.pending = vec![0; n];
                Driver::Steps(prog)
            }
        };
        let msgs = w.msgs.len() as u32 - first;
        w.jobs.push(JobState {
            name: job.name.clone().unwrap_or_else(|| format!("job{ji}")),
            kind,
            hosts: n as u32,
            first_msg: first,
            msgs,
            start_ps: job.start_us.saturating_mul(1_000_000),
            size_bytes,
            bus_factor,
            driver,
            left: msgs,
            done_at: NEVER,
        });
    }
    Ok(w)
}

/// A DAG driver for `n` independent messages that all start at the job's start.
fn dag_plain(n: usize) -> Driver {
    Driver::Dag {
        start_off: vec![0; n],
        dep_off: vec![0; n + 1],
        dependents: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdf_means_match_the_published_files() {
        let ws = Cdf::from_spec(Some("websearch"), None).unwrap();
        let hd = Cdf::from_spec(Some("hadoop"), None).unwrap();
        // 1.71 MB and 120 KB: the HPCC ns-3 code's traffic_gen/custom_rand.py getAvg()
        // (docs/sim.md, reference simulators).
        assert!((ws.mean() / 1.71e6 - 1.0).abs() < 0.01, "{}", ws.mean());
        assert!((hd.mean() / 1.2e5 - 1.0).abs() < 0.05, "{}", hd.mean());
        let mut rng = Rng::new(3);
        let n = 200_000;
        let avg = (0..n).map(|_| hd.sample(&mut rng) as f64).sum::<f64>() / n as f64;
        assert!((avg / hd.mean() - 1.0).abs() < 0.05, "{avg}");
        assert!(Cdf::from_spec(Some("nope"), None).is_err());
        assert!(Cdf::from_spec(None, Some(&[[0.0, 0.0], [10.0, 50.0]])).is_err());
        assert!(Cdf::from_spec(None, Some(&[[0.0, 0.0], [10.0, 100.0]])).is_ok());
    }
}
