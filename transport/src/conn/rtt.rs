//! Round-trip time estimation and the retransmission timeout.
//!
//! Samples come from echoed transmit timestamps, so every sample belongs to one specific
//! transmission and retransmissions are never ambiguous (Karn's problem does not arise).

use weir_base::Duration;

//= https://www.rfc-editor.org/rfc/rfc6298#section-2
//# SRTT <- (1 - alpha) * SRTT + alpha * R', RTTVAR <- (1 - beta) * RTTVAR + beta * |SRTT - R'|,
//# alpha = 1/8, beta = 1/4, RTO = SRTT + max(G, K*RTTVAR) with K = 4.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
    min_rtt: Duration,
    latest: Duration,
}

impl RttEstimator {
    pub(crate) fn new() -> Self {
        RttEstimator {
            srtt: None,
            rttvar: Duration::ZERO,
            min_rtt: Duration::MAX,
            latest: Duration::ZERO,
        }
    }

    pub(crate) fn sample(&mut self, rtt: Duration) {
        self.latest = rtt;
        self.min_rtt = self.min_rtt.min(rtt);
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt.div(2);
            }
            Some(srtt) => {
                let diff = if srtt > rtt { srtt - rtt } else { rtt - srtt };
                self.rttvar = (self.rttvar.saturating_mul(3) + diff).div(4);
                self.srtt = Some((srtt.saturating_mul(7) + rtt).div(8));
            }
        }
    }

    pub(crate) fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    pub(crate) fn min_rtt(&self) -> Option<Duration> {
        (self.min_rtt != Duration::MAX).then_some(self.min_rtt)
    }

    /// `srtt + 4 * rttvar`, or `None` before the first sample.
    pub(crate) fn rto_base(&self) -> Option<Duration> {
        self.srtt.map(|s| s + self.rttvar.saturating_mul(4))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converges() {
        let mut r = RttEstimator::new();
        assert!(r.srtt().is_none());
        for _ in 0..50 {
            r.sample(Duration::from_micros(100));
        }
        let s = r.srtt().unwrap();
        assert!(s >= Duration::from_micros(99) && s <= Duration::from_micros(101));
        assert_eq!(r.min_rtt(), Some(Duration::from_micros(100)));
        assert!(r.rto_base().unwrap() < Duration::from_micros(110));
    }
}
