//! A connection's timers: one enum, one table (after quinn's `TimerTable`,
//! `quinn-proto/src/connection/timer.rs`). Every deadline a connection can have is a slot here,
//! set where its cause changes; [`super::Conn::deadline`] is the earliest slot that counts in
//! the connection's state (plus the congestion controller's own timer).

use weir_base::Instant;

/// The kinds of connection timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Timer {
    /// Handshake states: resend the SYN or SYN-ACK.
    HandshakeRetry = 0,
    /// Handshake states: give up the handshake.
    HandshakeExpiry = 1,
    /// Send the delayed ACK (`ack_delay` after the first unacknowledged packet).
    AckDelay = 2,
    /// Retransmission timeout.
    Rto = 3,
    /// Tail-loss probe.
    Tlp = 4,
    /// Send a keepalive probe (`keepalive` after the last packet sent).
    Keepalive = 5,
    /// Nothing heard from the peer for `peer_timeout`: fail.
    PeerTimeout = 6,
    /// A graceful close's deadline.
    Closing = 7,
    /// RCCC: no credit for `peer_timeout`: fail.
    CreditStall = 8,
    /// Pacing or a receiver-not-ready hold ends: data may go again.
    Blocked = 9,
}

impl Timer {
    /// Timers that count while the handshake is under way.
    pub(crate) const HANDSHAKE: [Timer; 2] = [Timer::HandshakeRetry, Timer::HandshakeExpiry];
    /// Timers that count once established.
    pub(crate) const ESTABLISHED: [Timer; 8] = [
        Timer::AckDelay,
        Timer::Rto,
        Timer::Tlp,
        Timer::Keepalive,
        Timer::PeerTimeout,
        Timer::Closing,
        Timer::CreditStall,
        Timer::Blocked,
    ];
}

const COUNT: usize = 10;

/// One optional deadline per [`Timer`]: the times, and a bit per timer that says whether it is
/// set (88 bytes, against 160 for ten `Option<Instant>`: a connection's timers take fewer of
/// its cache lines).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TimerTable {
    /// Meaningful only where `set` has the timer's bit.
    at: [Instant; COUNT],
    set: u16,
}

const _: () = assert!(COUNT <= 16);

impl PartialEq for TimerTable {
    fn eq(&self, other: &Self) -> bool {
        (0..COUNT).all(|i| self.slot(i) == other.slot(i))
    }
}

impl Eq for TimerTable {}

impl TimerTable {
    fn slot(&self, i: usize) -> Option<Instant> {
        (self.set & (1 << i) != 0).then(|| self.at[i])
    }

    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        self.at[timer as usize] = at;
        self.set |= 1 << timer as usize;
    }

    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        self.slot(timer as usize)
    }

    pub(crate) fn stop(&mut self, timer: Timer) {
        self.set &= !(1 << timer as usize);
    }

    pub(crate) fn is_set(&self, timer: Timer) -> bool {
        self.set & (1 << timer as usize) != 0
    }

    /// Whether `timer` is set and due at `now`.
    pub(crate) fn is_expired(&self, timer: Timer, now: Instant) -> bool {
        self.get(timer).is_some_and(|t| now >= t)
    }

    /// The earliest of `timers`.
    pub(crate) fn next_of(&self, timers: &[Timer]) -> Option<Instant> {
        timers.iter().filter_map(|&t| self.get(t)).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_of_the_selected_timers() {
        let mut t = TimerTable::default();
        assert_eq!(t.next_of(&Timer::ESTABLISHED), None);
        t.set(Timer::Keepalive, Instant::from_nanos(500));
        t.set(Timer::Rto, Instant::from_nanos(300));
        t.set(Timer::HandshakeRetry, Instant::from_nanos(100));
        assert_eq!(
            t.next_of(&Timer::ESTABLISHED),
            Some(Instant::from_nanos(300))
        );
        assert_eq!(t.next_of(&Timer::HANDSHAKE), Some(Instant::from_nanos(100)));
        assert!(t.is_expired(Timer::Rto, Instant::from_nanos(300)));
        assert!(!t.is_expired(Timer::Rto, Instant::from_nanos(299)));
        t.stop(Timer::Rto);
        assert!(!t.is_set(Timer::Rto));
        assert_eq!(
            t.next_of(&Timer::ESTABLISHED),
            Some(Instant::from_nanos(500))
        );
        t.stop(Timer::Keepalive);
        assert_eq!(t.next_of(&Timer::ESTABLISHED), None);
    }
}
