//! Rows, the table and the JSON lines of `weir bench transport`.
//!
//! The table is nccl-tests style: `#`-prefixed header lines with the machine facts and the
//! definitions, one line per measurement, `#` footer lines with the ping-pong and the pressure
//! after the run. `--json` prints one JSON object per measurement row instead, each carrying the
//! ping-pong results of its mode and the machine facts, so every line stands alone.

use std::fmt::Write as _;

use serde::Serialize;

use crate::Mode;
use crate::units::{fmt_loss, fmt_size};

/// One measurement: a mode at one loss rate and message size.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Row {
    /// The transport.
    pub mode: Mode,
    /// Where a weir/gbn row's engines ran (`inproc`, `daemon`), when not in each peer's own
    /// `Host`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// Congestion control of a weir/gbn row, when chosen with `--cc`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cc: Option<String>,
    /// Injected loss probability (receiver-side datagram drop); 0 for TCP.
    pub loss: f64,
    /// Message size in bytes.
    pub size: u64,
    /// Messages in flight at the sender.
    pub window: u32,
    /// Messages and payload bytes delivered (receiver's count).
    pub messages: u64,
    /// See `messages`.
    pub bytes: u64,
    /// Receiver view: payload bytes / (first byte → last completion), GB/s (10⁹ B/s).
    pub goodput_gbps: Option<f64>,
    /// Sender view: payload bytes / (first post → last completion), GB/s.
    pub sender_gbps: Option<f64>,
    /// Retransmitted data packets / first transmissions.
    pub retx_ratio: Option<f64>,
    /// Per-message latency at the sender (post → completion), µs.
    pub p50_us: Option<f64>,
    /// See `p50_us`: the 99th percentile.
    pub p99_us: Option<f64>,
    /// Kernel TCP goodput at the same size in the same run, and this row's share of it.
    pub tcp_gbps: Option<f64>,
    /// See `tcp_gbps`.
    pub ratio_to_tcp: Option<f64>,
    /// Every requested message arrived within the time limit.
    pub complete: bool,
    /// Why a figure is missing or partial.
    pub note: Option<String>,
    /// The measurement failed (a peer process died, hung, reported an error or exited with a
    /// failure status): no figures, and `weir bench transport` exits non-zero.
    pub error: Option<String>,
}

impl Row {
    /// The point, as the table names it: `weir/swift loss 1% size 1 MiB`.
    pub fn point(&self) -> String {
        format!(
            "{} loss {} size {}",
            mode_label(self),
            fmt_loss(self.loss),
            fmt_size(self.size)
        )
    }

    /// Fill in the TCP reference and the ratio to it.
    pub fn set_tcp(&mut self, tcp_gbps: Option<f64>) {
        self.tcp_gbps = tcp_gbps;
        self.ratio_to_tcp = match (self.goodput_gbps, tcp_gbps) {
            (Some(g), Some(t)) if t > 0.0 => Some(g / t),
            _ => None,
        };
    }
}

/// 8-byte round-trip times of one mode.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PingPong {
    /// The transport.
    pub mode: Mode,
    /// Where its engines ran, when not in each peer's own `Host` (as in [`Row::engine`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// Round trips timed.
    pub round_trips: u64,
    /// Median round-trip time, µs.
    pub rtt_p50_us: Option<f64>,
    /// 99th percentile round-trip time, µs.
    pub rtt_p99_us: Option<f64>,
    /// Retransmitted packets during the ping-pong (weir: engine counter; TCP: tcp_info).
    pub retransmits: Option<u64>,
    /// Why a figure is missing.
    pub note: Option<String>,
    /// The measurement failed (a peer died, hung or reported an error): no figures, and
    /// `weir bench transport` exits non-zero.
    pub error: Option<String>,
}

/// Facts about the machine and the run's scheduling, printed in the header (and in every JSON
/// row).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Machine {
    /// CPUs this process may run on.
    pub cpus: usize,
    /// `some avg10` of /proc/pressure/cpu (%) before and after the run.
    pub psi_cpu_some_avg10_before: Option<f64>,
    /// See `psi_cpu_some_avg10_before`.
    pub psi_cpu_some_avg10_after: Option<f64>,
    /// Every peer process ran under SCHED_FIFO (asked with `--rt`, or inherited from `chrt`).
    pub rt: bool,
    /// Every peer process was pinned (sender core 0, receiver core 1).
    pub pinned: bool,
    /// Peer processes started, and how many of them ran under SCHED_FIFO / pinned.
    pub peers: u32,
    /// See `peers`.
    pub peers_rt: u32,
    /// See `peers`.
    pub peers_pinned: u32,
}

/// One JSON line: a row, the ping-pong of its mode and of TCP, and the machine facts.
#[derive(Debug, Serialize)]
struct JsonRow<'a> {
    #[serde(flatten)]
    row: &'a Row,
    rtt_p50_us: Option<f64>,
    rtt_p99_us: Option<f64>,
    tcp_rtt_p50_us: Option<f64>,
    tcp_rtt_p99_us: Option<f64>,
    machine: &'a Machine,
}

/// The JSON line of `row`.
pub fn json_line(row: &Row, pingpong: &[PingPong], machine: &Machine) -> String {
    let rtt = |mode: Mode| pingpong.iter().find(|p| p.mode == mode);
    let own = rtt(row.mode);
    let tcp = rtt(Mode::Tcp);
    let line = JsonRow {
        row,
        rtt_p50_us: own.and_then(|p| p.rtt_p50_us),
        rtt_p99_us: own.and_then(|p| p.rtt_p99_us),
        tcp_rtt_p50_us: tcp.and_then(|p| p.rtt_p50_us),
        tcp_rtt_p99_us: tcp.and_then(|p| p.rtt_p99_us),
        machine,
    };
    serde_json::to_string(&line).unwrap_or_else(|e| format!(r#"{{"error":"{e}"}}"#))
}

/// The column headings, aligned with [`table_row`].
pub fn table_heading() -> String {
    let names = format!(
        "#{:>11} {:>6} {:>8} {:>9} {:>9} {:>8} {:>9} {:>9} {:>9} {:>6}  {}",
        "mode", "loss", "size", "goodput", "sender", "retx", "p50", "p99", "tcp", "x tcp", "note"
    );
    let units = format!(
        "#{:>11} {:>6} {:>8} {:>9} {:>9} {:>8} {:>9} {:>9} {:>9}",
        "", "", "", "GB/s", "GB/s", "ratio", "us", "us", "GB/s"
    );
    format!("{names}\n{units}")
}

/// The mode column: `weir`, or `weir/swift` when an algorithm was chosen.
fn mode_label(r: &Row) -> String {
    let mode = match &r.engine {
        Some(e) => format!("{}@{e}", r.mode.as_str()),
        None => r.mode.as_str().to_string(),
    };
    match &r.cc {
        Some(cc) => format!("{mode}/{cc}"),
        None => mode,
    }
}

/// One table line.
pub fn table_row(r: &Row) -> String {
    let f =
        |v: Option<f64>, prec: usize| v.map_or_else(|| "-".to_string(), |v| format!("{v:.prec$}"));
    if let Some(e) = &r.error {
        return format!(
            " {:>11} {:>6} {:>8}  FAILED: {e}",
            mode_label(r),
            fmt_loss(r.loss),
            fmt_size(r.size),
        );
    }
    if r.goodput_gbps.is_none() && r.sender_gbps.is_none() {
        // Nothing measured: the note says why.
        return format!(
            " {:>11} {:>6} {:>8}  {}",
            mode_label(r),
            fmt_loss(r.loss),
            fmt_size(r.size),
            r.note.as_deref().unwrap_or("no result")
        );
    }
    let mut s = format!(
        " {:>11} {:>6} {:>8} {:>9} {:>9} {:>8} {:>9} {:>9} {:>9} {:>6}",
        mode_label(r),
        fmt_loss(r.loss),
        fmt_size(r.size),
        f(r.goodput_gbps, 3),
        f(r.sender_gbps, 3),
        f(r.retx_ratio, 4),
        f(r.p50_us, 1),
        f(r.p99_us, 1),
        f(r.tcp_gbps, 3),
        f(r.ratio_to_tcp, 2),
    );
    if let Some(note) = &r.note {
        let _ = write!(s, "  {note}");
    } else if !r.complete {
        s.push_str("  partial");
    }
    s
}

/// The header: what ran where, and what the columns mean.
pub fn table_header(machine: &Machine, window: u32, requested: &str, runs: u32) -> String {
    let psi = fmt_psi(machine.psi_cpu_some_avg10_before);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# weir bench transport (weir {})",
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(
        s,
        "# machine: {} cpus; cpu pressure (some avg10) before: {psi}; {requested}",
        machine.cpus
    );
    let _ = writeln!(
        s,
        "# goodput: payload bytes / receiver wall time (first byte -> last completion); sender: \
         first post -> last completion; GB = 1e9 B"
    );
    let _ = writeln!(
        s,
        "# latency: per message at the sender, post -> completion (every byte acknowledged), \
         {window} messages in flight: includes waiting behind the window"
    );
    let _ = writeln!(
        s,
        "# tcp: one kernel TCP connection over loopback between two processes, same sizes and \
         window, acknowledged per message; no loss injection (loss 0)"
    );
    let _ = writeln!(
        s,
        "# each point: fresh sender and receiver processes; the run with the median goodput of \
         {runs} is shown"
    );
    let _ = writeln!(s, "#");
    s.push_str(&table_heading());
    s.push('\n');
    s
}

/// The footer: ping-pong round trips and the pressure after the run.
pub fn table_footer(pingpong: &[PingPong], machine: &Machine) -> String {
    let f = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"));
    let mut s = String::from("#\n");
    for p in pingpong {
        let mode = match &p.engine {
            Some(e) => format!("{}@{e}", p.mode.as_str()),
            None => p.mode.as_str().to_string(),
        };
        let _ = write!(s, "# ping-pong 8 B {mode:>4}: ");
        if let Some(e) = &p.error {
            let _ = write!(s, "FAILED: {e}");
        } else if p.round_trips > 0 {
            let _ = write!(
                s,
                "RTT median {} us, p99 {} us ({} round trips",
                f(p.rtt_p50_us),
                f(p.rtt_p99_us),
                p.round_trips
            );
            if let Some(r) = p.retransmits {
                let _ = write!(s, ", {r} retransmits");
            }
            s.push(')');
            if let Some(note) = &p.note {
                let _ = write!(s, "; {note}");
            }
        } else {
            s.push_str(p.note.as_deref().unwrap_or("no result"));
        }
        s.push('\n');
    }
    let _ = writeln!(
        s,
        "# cpu pressure (some avg10) after: {}; SCHED_FIFO in {}/{} peers, pinned {}/{}",
        fmt_psi(machine.psi_cpu_some_avg10_after),
        machine.peers_rt,
        machine.peers,
        machine.peers_pinned,
        machine.peers
    );
    s
}

fn fmt_psi(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_string(), |v| format!("{v:.2} %"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> Row {
        let mut r = Row {
            mode: Mode::Weir,
            loss: 0.01,
            size: 1 << 20,
            window: 4,
            messages: 256,
            bytes: 256 << 20,
            goodput_gbps: Some(1.5),
            sender_gbps: Some(1.49),
            retx_ratio: Some(0.0123),
            p50_us: Some(2600.0),
            p99_us: Some(4100.5),
            complete: true,
            ..Row::default()
        };
        r.set_tcp(Some(3.0));
        r
    }

    #[test]
    fn ratio_to_tcp() {
        let mut r = row();
        assert_eq!(r.ratio_to_tcp, Some(0.5));
        r.set_tcp(None);
        assert_eq!(r.ratio_to_tcp, None);
        r.set_tcp(Some(0.0));
        assert_eq!(r.ratio_to_tcp, None);
    }

    #[test]
    fn table_row_aligns_with_heading() {
        let line = table_row(&row());
        assert_eq!(
            line,
            "        weir     1%    1 MiB     1.500     1.490   0.0123    2600.0    4100.5     3.000   0.50"
        );
        let mut with_cc = row();
        with_cc.cc = Some("swift".into());
        assert!(table_row(&with_cc).starts_with("  weir/swift     1%"));
        let heading = table_heading();
        let first = heading.lines().next().expect("heading");
        // Every column ends at the same offset in the heading and in the row.
        for label in [
            "mode", "loss", "size", "goodput", "sender", "retx", "p50", "p99", "tcp", "x tcp",
        ] {
            let at = first.find(&format!(" {label}")).expect(label) + label.len();
            let b = line.as_bytes();
            assert_ne!(b[at], b' ', "{label}:\n{first}\n{line}");
            assert!(
                at + 1 == b.len() || b[at + 1] == b' ',
                "{label}:\n{first}\n{line}"
            );
        }
    }

    #[test]
    fn table_row_without_result_shows_note() {
        let r = Row {
            mode: Mode::Gbn,
            loss: 0.05,
            size: 8 << 20,
            note: Some("n/a (engine not built)".into()),
            ..Row::default()
        };
        assert_eq!(
            table_row(&r),
            "         gbn     5%    8 MiB  n/a (engine not built)"
        );
    }

    #[test]
    fn partial_rows_are_marked() {
        let mut r = row();
        r.complete = false;
        assert!(table_row(&r).ends_with("  partial"));
        r.note = Some("time limit".into());
        assert!(table_row(&r).ends_with("  time limit"));
    }

    #[test]
    fn json_row_shape() {
        let pp = [
            PingPong {
                mode: Mode::Tcp,
                engine: None,
                round_trips: 100,
                rtt_p50_us: Some(20.0),
                rtt_p99_us: Some(30.0),
                retransmits: None,
                note: None,
                error: None,
            },
            PingPong {
                mode: Mode::Weir,
                engine: None,
                round_trips: 100,
                rtt_p50_us: Some(25.0),
                rtt_p99_us: Some(45.0),
                retransmits: None,
                note: None,
                error: None,
            },
        ];
        let machine = Machine {
            cpus: 2,
            psi_cpu_some_avg10_before: Some(1.0),
            ..Machine::default()
        };
        let line = json_line(&row(), &pp, &machine);
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).expect("json");
        for key in [
            "mode",
            "loss",
            "size",
            "goodput_gbps",
            "tcp_gbps",
            "retx_ratio",
            "p50_us",
            "p99_us",
            "ratio_to_tcp",
            "sender_gbps",
            "rtt_p50_us",
            "rtt_p99_us",
            "tcp_rtt_p50_us",
            "machine",
        ] {
            assert!(v.get(key).is_some(), "missing {key} in {line}");
        }
        assert_eq!(v["mode"], "weir");
        assert_eq!(v["loss"], 0.01);
        assert_eq!(v["size"], 1 << 20);
        assert_eq!(v["goodput_gbps"], 1.5);
        assert_eq!(v["tcp_gbps"], 3.0);
        assert_eq!(v["ratio_to_tcp"], 0.5);
        assert_eq!(v["rtt_p50_us"], 25.0);
        assert_eq!(v["tcp_rtt_p99_us"], 30.0);
        assert_eq!(v["machine"]["cpus"], 2);
        // A row with nothing measured still has every key, as null.
        let empty = json_line(&Row::default(), &[], &machine);
        let v: serde_json::Value = serde_json::from_str(&empty).expect("json");
        assert!(v["goodput_gbps"].is_null() && v["tcp_gbps"].is_null());
    }

    #[test]
    fn footer_lists_pingpong() {
        let pp = [PingPong {
            mode: Mode::Tcp,
            engine: None,
            round_trips: 20_000,
            rtt_p50_us: Some(21.04),
            rtt_p99_us: Some(35.0),
            retransmits: Some(0),
            note: None,
            error: None,
        }];
        let f = table_footer(&pp, &Machine::default());
        assert!(
            f.contains("tcp: RTT median 21.0 us, p99 35.0 us (20000 round trips, 0 retransmits)"),
            "{f}"
        );
    }
}
