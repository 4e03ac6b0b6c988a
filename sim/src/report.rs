//! What a run reports: the [`Summary`] (totals, FCT slowdown by size bucket, per-job
//! completion and bus bandwidth), the sampled [`Series`] (queue depth and link utilisation
//! over time) and the [`Progress`] records handed to a callback during the run.
//!
//! Contract: every value is computed from the simulation state alone (no clock), so equal
//! scenarios give equal reports. Times are picoseconds from the workload's time zero (after
//! every connection's handshake).

use serde::Serialize;
use weir_base::Duration;

use crate::net::Net;
use crate::scenario::Scenario;
use crate::workload::{NEVER, NVLINK};

/// What a run produced.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    /// Hosts in the topology.
    pub hosts: u32,
    /// Messages in the workload (flows), over every job.
    pub flows: usize,
    /// Messages whose receive and send both completed successfully, exactly once.
    pub completed: usize,
    /// Payload bytes of completed receives.
    pub bytes_delivered: u64,
    /// Completions with an error, a wrong length or a duplicate, and requests the transport
    /// refused (0 in a correct run).
    pub bad_completions: u64,
    /// Completion time of each message: its receive's completion minus the time both its
    /// send and its receive were posted (the send starts then), `None` if not delivered.
    pub fct_ps: Vec<Option<u64>>,
    /// Largest message completion time.
    pub last_fct_ps: u64,
    /// FCT slowdown of each message (order of `fct_ps`); `None` when it was not delivered or
    /// went over the intra-server link.
    pub slowdown: Vec<Option<f64>>,
    /// Size of each message in bytes (order of `fct_ps`).
    pub message_bytes: Vec<u64>,
    /// Median FCT slowdown (FCT / ideal FCT on an idle network) over network messages.
    pub slowdown_p50: f64,
    /// 99th-percentile FCT slowdown.
    pub slowdown_p99: f64,
    /// 99.9th-percentile FCT slowdown.
    pub slowdown_p999: f64,
    /// FCT slowdown by message-size bucket (non-empty buckets only).
    pub slowdown_buckets: Vec<SizeBucket>,
    /// Messages carried by the intra-server interconnect (not in the slowdown figures).
    pub intra_server_messages: usize,
    /// Packets dropped (full queue, link loss, failed link, no route).
    pub drops: u64,
    /// Of `drops`, those lost to failed links (in flight, sent onto, or routed onto one).
    pub fault_drops: u64,
    /// Packets trimmed to their header.
    pub trims: u64,
    /// Packets marked ECN CE.
    pub ecn_marks: u64,
    /// Largest output-queue occupancy seen at any switch port, in bytes.
    pub max_queue_bytes: u64,
    /// PFC PAUSE frames sent (XOFF transitions of an ingress port).
    pub pauses: u64,
    /// Total time output ports (switch and NIC) spent paused, summed over ports, ps.
    pub paused_ps: u64,
    /// Senders' retransmitted packets.
    pub retransmits: u64,
    /// Retransmission timeouts that fired.
    pub rto_events: u64,
    /// Tail-loss probes sent.
    pub tlp_probes: u64,
    /// Duplicate data packets the receivers suppressed (spurious retransmissions show here).
    pub rx_duplicates: u64,
    /// Senders' resends shown unnecessary by an ACK of the transmission they repeated
    /// (`ConnStats::spurious_retransmits`, tail-loss probes included).
    pub spurious_retransmits: u64,
    /// Datagrams the hosts transmitted (data, ACKs, control).
    pub packets: u64,
    /// INT records stamped by switches.
    pub int_records: u64,
    /// Events processed (handshakes included).
    pub events: u64,
    /// Simulated time at the end of the run, from the workload's start.
    pub end_ps: u64,
    /// Per-job results, in scenario order (`[workload]` first, then `[[jobs]]`).
    pub jobs: Vec<JobResult>,
}

/// FCT slowdown of the messages in one size bucket.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SizeBucket {
    /// Largest message size in the bucket (`None`: unbounded).
    pub max_bytes: Option<u64>,
    /// Human-readable range, e.g. `"10KB-100KB"`.
    pub label: String,
    /// Delivered messages in the bucket.
    pub flows: usize,
    /// Median slowdown.
    pub p50: f64,
    /// 99th-percentile slowdown.
    pub p99: f64,
    /// 99.9th-percentile slowdown.
    pub p999: f64,
}

/// One job's outcome.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JobResult {
    /// Name (`[[jobs]] name`, `"workload"` for `[workload]`).
    pub name: String,
    /// Workload kind, e.g. `"permutation"` or `"allreduce ring"`.
    pub kind: String,
    /// Hosts (ranks) in the job.
    pub hosts: u32,
    /// Messages.
    pub messages: usize,
    /// Messages completed.
    pub completed: usize,
    /// Start time, ps after the workload's time zero.
    pub start_ps: u64,
    /// Time from the job's start until its last message completed (`None`: unfinished).
    pub completion_ps: Option<u64>,
    /// Collectives: the nccl-tests size in bytes (0 otherwise).
    pub size_bytes: u64,
    /// Collectives: algorithm bandwidth, size / time, GB/s (1e9 bytes/s).
    pub algbw_gb_s: f64,
    /// Collectives: bus bandwidth, nccl-tests convention (algbw × 2(n−1)/n for allreduce,
    /// × (n−1)/n for allgather, reduce-scatter and all-to-all), GB/s.
    pub busbw_gb_s: f64,
    /// Median FCT slowdown of its network messages.
    pub slowdown_p50: f64,
    /// 99th-percentile FCT slowdown of its network messages.
    pub slowdown_p99: f64,
}

/// Time series sampled every `run.sample_interval_us` (empty when sampling is off).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Series {
    /// Sampling interval, ps.
    pub interval_ps: u64,
    /// Sample times, ps from the workload's start.
    pub t_ps: Vec<u64>,
    /// Largest queue (bytes, both FIFOs) over all switch output ports at each sample.
    pub queue_max_bytes: Vec<u64>,
    /// Mean queue over all switch output ports at each sample.
    pub queue_mean_bytes: Vec<f64>,
    /// The busiest links (or all of them in small topologies), busiest first.
    pub links: Vec<LinkSeries>,
}

/// Bytes one directed link sent per sampling interval.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LinkSeries {
    /// Sending node (hosts `0..hosts`, then switches).
    pub from: u32,
    /// Receiving node.
    pub to: u32,
    /// E.g. `"h3->s17"` (`h`: host, `s`: switch).
    pub label: String,
    /// Link rate, Gb/s.
    pub rate_gbps: f64,
    /// Bytes started on the link in the interval ending at each sample (the first sample
    /// covers the time before the workload started).
    pub bytes: Vec<u64>,
    /// `bytes` as a fraction of what the link could send in one interval.
    pub utilization: Vec<f64>,
    /// Sum of `bytes`.
    pub total_bytes: u64,
}

/// Handed to the progress callback of [`crate::run_with`] every `run.progress_events` events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// Simulated time, ps from the workload's start (during the handshakes: from time zero).
    pub now_ps: u64,
    /// Events processed so far.
    pub events: u64,
    /// Messages completed so far.
    pub messages_done: u64,
    /// Messages in the workload.
    pub messages: u64,
}

/// A run's summary and time series.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// Totals and per-job results.
    pub summary: Summary,
    /// Sampled queue depth and link utilisation.
    pub series: Series,
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

/// Size buckets of the slowdown table (upper bounds, bytes).
const BUCKETS: [(u64, &str); 5] = [
    (10_000, "0-10KB"),
    (100_000, "10KB-100KB"),
    (1_000_000, "100KB-1MB"),
    (10_000_000, "1MB-10MB"),
    (u64::MAX, ">10MB"),
];

/// Build the report from a finished run.
pub(crate) fn build(net: &Net, s: &Scenario, config: &weir_transport::Config) -> Report {
    let start = net.start;
    let rate = s.line_rate();
    let fabric_delay = s.link_delay();
    let mtu_payload = u64::from(config.max_payload).max(1);
    let per_pkt = u64::from(s.run.frame_overhead_bytes) + DATA_HEADER;
    let msgs = &net.w.msgs;
    let mut fct = Vec::with_capacity(msgs.len());
    let mut per_msg_slow = Vec::with_capacity(msgs.len());
    let message_bytes: Vec<u64> = msgs.iter().map(|m| u64::from(m.bytes)).collect();
    let mut slow: Vec<(u64, f64)> = Vec::new();
    let mut job_slow: Vec<Vec<f64>> = vec![Vec::new(); net.w.jobs.len()];
    let mut job_done = vec![0usize; net.w.jobs.len()];
    let (mut completed, mut delivered, mut bad, mut intra) = (0, 0u64, 0u64, 0);
    for m in msgs {
        bad += u64::from(m.bad);
        let ok = m.complete() && m.bad == 0;
        if ok {
            completed += 1;
            job_done[m.job as usize] += 1;
        }
        if m.pair == NVLINK {
            intra += 1;
        }
        if m.recv_done == NEVER {
            fct.push(None);
            per_msg_slow.push(None);
            continue;
        }
        delivered += u64::from(m.bytes);
        let t = m
            .recv_done
            .saturating_since(m.send_ready.max(m.recv_ready))
            .as_ps();
        fct.push(Some(t));
        if m.pair != NVLINK {
            // Ideal: serialise every packet at line rate, plus one packet's store-and-forward
            // and the propagation delay on every further link of a shortest path.
            let bytes = u64::from(m.bytes);
            let links = net.g.path_links(m.src, m.dst);
            let pkts = bytes.div_ceil(mtu_payload);
            let host_delay = net.g.ports[m.src as usize][0]
                .delay
                .saturating_add(net.g.ports[m.dst as usize][0].delay);
            let delays =
                host_delay.saturating_add(fabric_delay.saturating_mul(links.saturating_sub(2)));
            let ideal = rate.serialization_time(bytes + pkts * per_pkt).as_ps()
                + links.saturating_sub(1)
                    * rate
                        .serialization_time(mtu_payload.min(bytes) + per_pkt)
                        .as_ps()
                + delays.as_ps();
            let x = t as f64 / ideal.max(1) as f64;
            per_msg_slow.push(Some(x));
            slow.push((bytes, x));
            job_slow[m.job as usize].push(x);
        } else {
            per_msg_slow.push(None);
        }
    }
    let mut all: Vec<f64> = slow.iter().map(|&(_, x)| x).collect();
    all.sort_by(f64::total_cmp);
    let mut buckets = Vec::new();
    let mut lo = 0;
    for &(hi, label) in &BUCKETS {
        let mut v: Vec<f64> = slow
            .iter()
            .filter(|&&(b, _)| b > lo && b <= hi)
            .map(|&(_, x)| x)
            .collect();
        lo = hi;
        if v.is_empty() {
            continue;
        }
        v.sort_by(f64::total_cmp);
        buckets.push(SizeBucket {
            max_bytes: (hi != u64::MAX).then_some(hi),
            label: label.to_string(),
            flows: v.len(),
            p50: percentile(&v, 0.50),
            p99: percentile(&v, 0.99),
            p999: percentile(&v, 0.999),
        });
    }
    let jobs = net
        .w
        .jobs
        .iter()
        .zip(job_slow)
        .zip(job_done)
        .map(|((j, mut v), done)| {
            v.sort_by(f64::total_cmp);
            let t0 = start + Duration::from_ps(j.start_ps);
            let completion_ps =
                (j.done_at != NEVER).then(|| j.done_at.saturating_since(t0).as_ps());
            let secs = completion_ps.unwrap_or(0) as f64 * 1e-12;
            let algbw = if j.size_bytes > 0 && secs > 0.0 && completion_ps.is_some() {
                j.size_bytes as f64 / secs / 1e9
            } else {
                0.0
            };
            JobResult {
                name: j.name.clone(),
                kind: j.kind.clone(),
                hosts: j.hosts,
                messages: j.msgs as usize,
                completed: done,
                start_ps: j.start_ps,
                completion_ps,
                size_bytes: j.size_bytes,
                algbw_gb_s: algbw,
                busbw_gb_s: algbw * j.bus_factor,
                slowdown_p50: percentile(&v, 0.50),
                slowdown_p99: percentile(&v, 0.99),
            }
        })
        .collect();
    let (retransmits, rto_events, tlp_probes, rx_duplicates, spurious_retransmits) =
        net.conn_totals();
    let summary = Summary {
        hosts: net.hosts(),
        flows: msgs.len(),
        completed,
        bytes_delivered: delivered,
        bad_completions: bad,
        last_fct_ps: fct.iter().flatten().copied().max().unwrap_or(0),
        fct_ps: fct,
        slowdown: per_msg_slow,
        message_bytes,
        slowdown_p50: percentile(&all, 0.50),
        slowdown_p99: percentile(&all, 0.99),
        slowdown_p999: percentile(&all, 0.999),
        slowdown_buckets: buckets,
        intra_server_messages: intra,
        drops: net.c.drops,
        fault_drops: net.c.fault_drops,
        trims: net.c.trims,
        ecn_marks: net.c.ecn_marks,
        max_queue_bytes: net.c.max_queue,
        pauses: net.c.pauses,
        paused_ps: net.paused_ps(),
        retransmits,
        rto_events,
        tlp_probes,
        rx_duplicates,
        spurious_retransmits,
        packets: net.c.packets,
        int_records: net.c.int_records,
        events: net.c.events,
        end_ps: net.now.saturating_since(start).as_ps(),
        jobs,
    };
    Report {
        summary,
        series: series(net, s),
    }
}

fn series(net: &Net, s: &Scenario) -> Series {
    let rec = &net.series;
    let interval_ps = s.run.sample_interval_us.saturating_mul(1_000_000);
    if rec.t.is_empty() || rec.nports == 0 {
        return Series {
            interval_ps,
            ..Series::default()
        };
    }
    let samples = rec.t.len();
    let mut totals: Vec<(u64, usize)> = (0..rec.nports)
        .map(|i| {
            let t = (0..samples)
                .map(|k| u64::from(rec.bytes[k * rec.nports + i]))
                .sum();
            (t, i)
        })
        .collect();
    // Busiest first; ties by port order (deterministic).
    totals.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let keep = match s.run.series_links as usize {
        0 if rec.nports <= AUTO_ALL_LINKS => rec.nports,
        0 => AUTO_BUSIEST,
        n => n,
    }
    .min(rec.nports);
    let mut index = Vec::with_capacity(rec.nports);
    for (node, ps) in net.ports.iter().enumerate() {
        for p in ps {
            index.push((node as u32, p.peer, p.rate));
        }
    }
    let hosts = net.hosts();
    let name = |n: u32| {
        if n < hosts {
            format!("h{n}")
        } else {
            format!("s{n}")
        }
    };
    let links = totals[..keep]
        .iter()
        .map(|&(total, i)| {
            let (from, to, rate) = index[i];
            let cap = rate.bps() as f64 / 8.0 * interval_ps as f64 * 1e-12;
            let bytes: Vec<u64> = (0..samples)
                .map(|k| u64::from(rec.bytes[k * rec.nports + i]))
                .collect();
            LinkSeries {
                from,
                to,
                label: format!("{}->{}", name(from), name(to)),
                rate_gbps: rate.bps() as f64 / 1e9,
                utilization: bytes
                    .iter()
                    .map(|&b| if cap > 0.0 { b as f64 / cap } else { 0.0 })
                    .collect(),
                bytes,
                total_bytes: total,
            }
        })
        .collect();
    Series {
        interval_ps,
        t_ps: rec.t.clone(),
        queue_max_bytes: rec.qmax.clone(),
        queue_mean_bytes: rec.qmean.clone(),
        links,
    }
}

/// `series_links = 0`: every link up to this many directed links ...
const AUTO_ALL_LINKS: usize = 256;
/// ... else the busiest this many.
const AUTO_BUSIEST: usize = 32;

/// Nearest-rank percentile of sorted values (0 when empty).
pub(crate) fn percentile(sorted: &[f64], q: f64) -> f64 {
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
    fn percentile_nearest_rank() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 0.5), 2.0);
        assert_eq!(percentile(&v, 0.99), 4.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
