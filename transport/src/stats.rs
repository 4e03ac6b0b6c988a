//! Counters. Every dropped packet is counted under the reason it was dropped.

/// Per-endpoint counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndpointStats {
    /// Datagrams handed to `handle`.
    pub rx_packets: u64,
    /// Datagrams produced by `poll_transmit`.
    pub tx_packets: u64,
    /// Dropped: did not parse (truncated, bad version, bad field …).
    pub drop_malformed: u64,
    /// Dropped: unknown connection id.
    pub drop_unknown_conn: u64,
    /// Dropped: wrong connection token (forged or stale).
    pub drop_bad_token: u64,
    /// Dropped: from an address other than the connection's peer.
    pub drop_wrong_peer: u64,
    /// Dropped: SYN while not listening, or handshake packets that do not fit the state.
    pub drop_handshake: u64,
    /// Dropped unanswered: a SYN without a valid MAC for an admitted key while keys are
    /// admitted (`Endpoint::admit`).
    pub drop_unauthenticated: u64,
    /// SYN confirms whose cookie was wrong or expired (each answered with a fresh cookie).
    pub drop_bad_cookie: u64,
    /// SYN-ACKs with a cookie sent in answer to a SYN (no state kept).
    pub cookies_sent: u64,
    /// Dropped unanswered: a valid confirm over its source's connection rate
    /// (`Config::accept_rate_per_source`).
    pub drop_rate_limited: u64,
    /// Dropped: a stateless answer (cookie, refusal, close) found its queue full.
    pub drop_stateless_full: u64,
    /// Connections that failed.
    pub conn_failed: u64,
    /// Credit grants issued by this endpoint's credit scheduler (RCCC receiver side).
    pub credit_grants: u64,
    /// Bytes of credit granted.
    pub credit_bytes_granted: u64,
    /// Turns of the receive budget granted to a connection (`Config::rx_grants`).
    pub rx_turns: u64,
    /// Turns that ended with the connection back in line: it had received
    /// `Config::rx_turn_bytes` while others waited.
    pub rx_turns_yielded: u64,
    /// Turns taken from a connection silent while others waited (back in line).
    pub rx_turns_silent: u64,
    /// Time from granting a turn to its first packet, summed over turns, µs: what a turn
    /// handed over costs (the sender woken, its first packets on their way).
    pub rx_turn_start_us: u64,
}

/// Per-connection counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnStats {
    /// Data packets sent, first transmissions.
    pub data_packets: u64,
    /// Data packets retransmitted.
    pub retransmits: u64,
    /// Retransmissions triggered by the retransmission timeout.
    pub rto_events: u64,
    /// Retransmission timeouts shown spurious (the first ACK after one acknowledged a packet
    /// sent before it) and undone.
    pub spurious_rtos: u64,
    /// Resends shown unnecessary: an ACK echoed the timestamp of the transmission they
    /// repeated, so it had arrived.
    pub spurious_retransmits: u64,
    /// Tail-loss probes whose answer revealed no loss (the data or its ACK was only late).
    pub spurious_probes: u64,
    /// Times the sender held back after consecutive trims with its window at one packet.
    pub trim_backoffs: u64,
    /// The longest a resent packet waited to be delivered, µs: from its first transmission
    /// to the ACK of the copy that arrived. A message can complete no sooner, so this bounds
    /// how long any message waited behind a loss.
    pub max_repair_us: u64,
    /// Tail-loss probes sent (data-less PROBE packets; not counted in `retransmits`).
    pub tlp_probes: u64,
    /// Payload bytes sent (first transmissions).
    pub data_bytes: u64,
    /// ACK packets sent.
    pub acks_sent: u64,
    /// NACK packets sent.
    pub nacks_sent: u64,
    /// ACK/NACK packets received.
    pub acks_received: u64,
    /// Data packets received that were new.
    pub rx_data_packets: u64,
    /// Payload bytes placed past the CPU caches (`Config::stream_region_bytes`).
    pub rx_streamed_bytes: u64,
    /// Data packets received that were duplicates (suppressed).
    pub rx_duplicates: u64,
    /// Data packets discarded by the go-back-N receiver because they were out of order.
    pub rx_out_of_order_dropped: u64,
    /// Data packets beyond the receive window.
    pub rx_out_of_window: u64,
    /// Data packets refused for lack of buffer (unexpected messages over the limit).
    pub rx_no_resources: u64,
    /// Write packets refused: unknown region key or out of bounds.
    pub rx_access_errors: u64,
    /// Data packets that arrived trimmed.
    pub rx_trimmed: u64,
    /// Data packets whose header contradicted the message they belong to.
    pub rx_inconsistent: u64,
    /// NACKs received saying the peer had no buffer for a packet (receiver not ready); the
    /// packet is resent once the peer is ready (or as an RNR probe), and is not counted as
    /// lost.
    pub rnr_nacks: u64,
    /// Times the peer said it was not ready (`Flags::RNR`) and this side stopped sending new
    /// data until it was.
    pub rnr_pauses: u64,
    /// Microseconds spent in those pauses (the ended ones).
    pub rnr_paused_us: u64,
    /// The longest of those pauses, µs.
    pub rnr_max_pause_us: u64,
    /// Times this side, as receiver, said it was not ready (its unexpected-message budget
    /// three quarters used, or a packet refused).
    pub rnr_sent: u64,
    /// Packets declared lost by the sender.
    pub lost_packets: u64,
    /// Payload bytes received with ECN CE.
    pub rx_ecn_bytes: u64,
    /// CNPs sent (this side as DCQCN's notification point).
    pub cnps_sent: u64,
    /// CNPs received.
    pub cnps_received: u64,
    /// ACKs received carrying INT records.
    pub int_acks_received: u64,
    /// CREDIT_REQ packets sent (RCCC sender).
    pub credit_reqs_sent: u64,
    /// CREDIT_REQ packets received (this side as the credit-granting receiver).
    pub credit_reqs_received: u64,
    /// CREDIT packets sent (paced grants and repeats of a lost one).
    pub credits_sent: u64,
    /// CREDIT packets received.
    pub credits_received: u64,
    /// CREDIT_REQ packets ignored because this endpoint's credit scheduler already tracks as
    /// many flows as it may (the sender asks again later).
    pub credit_refused: u64,
    /// Times the sender had data ready but no credit for it (RCCC), counted per stall.
    pub credit_stalls: u64,
    /// Smoothed RTT in picoseconds when the counters were read (0 before any sample).
    pub srtt_ps: u64,
}
