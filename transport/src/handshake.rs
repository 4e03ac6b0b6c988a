//! Authentication and cookies of the connection handshake (see `docs/transport.md`,
//! "Connection set-up").
//!
//! * A **SYN MAC** proves that the connector holds the listener's secret, which the
//!   application hands its peers out of band (the NCCL plugin puts it in the listen handle
//!   that NCCL's bootstrap exchanges). It is SipHash-2-4 keyed by the 128-bit secret over
//!   every field of the SYN that the acceptor will act on, and travels in the SYN's
//!   otherwise unused `echo_nonce`. The secret itself never goes on the wire.
//! * A **cookie** lets the acceptor answer a SYN without keeping anything: it is
//!   SipHash-2-4 keyed by the endpoint's own random key over the SYN's source address, its
//!   connection id, its nonce and the current cookie epoch. The SYN-ACK carries it as the
//!   acceptor's nonce; the connector repeats its SYN with the cookie as its token (the
//!   "confirm"), which proves it receives packets at that address, and only then does the
//!   acceptor create the connection, with the cookie as its nonce.
//!
//! SipHash is a keyed pseudo-random function made for short inputs under adversarial control
//! (Aumasson and Bernstein, "SipHash: a fast short-input PRF", INDOCRYPT 2012).

use alloc::collections::BTreeMap;
use core::hash::Hasher;
use core::net::{IpAddr, SocketAddr};

use siphasher::sip::SipHasher24;
use weir_base::Instant;
use weir_wire::{HandshakeExt, Mode};

/// A cookie epoch is 2^43 ps (about 8.8 s); a cookie of the current or the previous epoch
/// is accepted, so a cookie lives between 8.8 and 17.6 s. A connector whose cookie expired
/// while its confirms were lost receives a fresh one in answer to its next confirm.
const EPOCH_SHIFT: u32 = 43;

pub(crate) fn epoch(now: Instant) -> u64 {
    now.as_ps() >> EPOCH_SHIFT
}

fn hasher(key: u128) -> SipHasher24 {
    SipHasher24::new_with_keys(key as u64, (key >> 64) as u64)
}

fn write_hs(h: &mut SipHasher24, src_conn: u32, hs: &HandshakeExt) {
    h.write_u32(src_conn);
    h.write_u64(hs.nonce);
    h.write_u64(hs.user_data);
    h.write_u32(hs.initial_psn);
    h.write_u32(hs.max_payload);
    h.write_u16(hs.paths);
    h.write_u8(match hs.mode {
        Mode::Weir => 0,
        Mode::GoBackN => 1,
    });
    h.write_u32(hs.rwnd_pkts);
    h.write_u8(hs.rx_ports);
}

/// The MAC a SYN from connection `src_conn` carries in its `echo_nonce` (that field of `hs`
/// is not covered), for a listener that admitted `hs.user_data` with `secret`
/// (`Endpoint::admit`). Never zero, so an unauthenticated SYN (zero) never matches.
/// `Endpoint::connect_authenticated` uses it; it is public for tools that speak the wire
/// protocol directly (flood tests, traffic generators).
pub fn syn_mac(secret: u128, src_conn: u32, hs: &HandshakeExt) -> u64 {
    let mut h = hasher(secret);
    h.write(b"weir-syn");
    write_hs(&mut h, src_conn, hs);
    h.finish().max(1)
}

/// The cookie for a SYN from `from`, connection `src_conn`, in cookie epoch `epoch`. Never
/// zero (a zero token marks a first SYN).
pub(crate) fn cookie(
    key: u128,
    from: SocketAddr,
    src_conn: u32,
    hs: &HandshakeExt,
    epoch: u64,
) -> u64 {
    let mut h = hasher(key);
    h.write(b"weir-cookie");
    match from.ip() {
        IpAddr::V4(a) => h.write(&a.octets()),
        IpAddr::V6(a) => h.write(&a.octets()),
    }
    h.write_u16(from.port());
    write_hs(&mut h, src_conn, hs);
    h.write_u64(epoch);
    h.finish().max(1)
}

/// A token bucket of connection creations for one source address, in thousandths of a
/// connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bucket {
    milli: u64,
    at: Instant,
}

/// Buckets kept before the idle ones (full again, so the same as absent) are pruned.
const MAX_BUCKETS: usize = 65_536;

/// Take one connection from `ip`'s bucket (`rate` per second, burst `rate`); false when empty.
pub(crate) fn take(
    buckets: &mut BTreeMap<IpAddr, Bucket>,
    ip: IpAddr,
    rate: u32,
    now: Instant,
) -> bool {
    let cap = u64::from(rate) * 1000;
    if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(&ip) {
        // A bucket idle for a second is full: forgetting it changes nothing.
        buckets.retain(|_, b| now.saturating_since(b.at).as_ps() < 1_000_000_000_000);
    }
    let b = buckets.entry(ip).or_insert(Bucket {
        milli: cap,
        at: now,
    });
    // rate/s = rate·1000 milli per 1e12 ps.
    let refill = u128::from(now.saturating_since(b.at).as_ps()) * u128::from(rate) / 1_000_000_000;
    b.milli = (u128::from(b.milli) + refill).min(u128::from(cap)) as u64;
    b.at = now;
    if b.milli < 1000 {
        return false;
    }
    b.milli -= 1000;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hs() -> HandshakeExt {
        HandshakeExt {
            nonce: 0x1234_5678_9abc_def0,
            echo_nonce: 0,
            user_data: 7,
            initial_psn: 1000,
            max_payload: 4096,
            paths: 8,
            mode: Mode::Weir,
            rwnd_pkts: 256,
            rx_ports: 0,
        }
    }

    #[test]
    fn the_mac_covers_every_field_and_the_key() {
        let base = syn_mac(1, 5, &hs());
        assert_ne!(base, 0);
        assert_eq!(base, syn_mac(1, 5, &hs()));
        assert_ne!(base, syn_mac(2, 5, &hs()));
        assert_ne!(base, syn_mac(1 << 64, 5, &hs()));
        assert_ne!(base, syn_mac(1, 6, &hs()));
        let changes: [fn(&mut HandshakeExt); 8] = [
            |h| h.nonce ^= 1,
            |h| h.user_data ^= 1,
            |h| h.initial_psn ^= 1,
            |h| h.max_payload ^= 1,
            |h| h.paths ^= 1,
            |h| h.mode = Mode::GoBackN,
            |h| h.rwnd_pkts ^= 1,
            |h| h.rx_ports ^= 1,
        ];
        for f in changes {
            let mut h = hs();
            f(&mut h);
            assert_ne!(base, syn_mac(1, 5, &h), "{h:?}");
        }
        // The echo_nonce field (where the MAC travels) is not covered.
        let mut h = hs();
        h.echo_nonce = base;
        assert_eq!(base, syn_mac(1, 5, &h));
    }

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let mut m = BTreeMap::new();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let t0 = Instant::from_ps(1 << 50);
        assert_eq!((0..150).filter(|_| take(&mut m, ip, 100, t0)).count(), 100);
        assert!(
            take(&mut m, other, 100, t0),
            "another source has its own bucket"
        );
        // 10 ms later: one more connection (100/s).
        let t1 = Instant::from_ps((1 << 50) + 10_000_000_000);
        assert!(take(&mut m, ip, 100, t1));
        assert!(!take(&mut m, ip, 100, t1));
        // Long idle: full again, never more than the burst.
        let t2 = Instant::from_ps((1 << 50) + 100_000_000_000_000);
        assert_eq!((0..150).filter(|_| take(&mut m, ip, 100, t2)).count(), 100);
    }

    #[test]
    fn cookies_bind_the_source_and_the_epoch() {
        let a: SocketAddr = "10.0.0.1:4000".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:4000".parse().unwrap();
        let c: SocketAddr = "10.0.0.1:4001".parse().unwrap();
        let k = 0xdead_beef_u128 << 70 | 99;
        let x = cookie(k, a, 5, &hs(), 3);
        assert_ne!(x, 0);
        assert_eq!(x, cookie(k, a, 5, &hs(), 3));
        assert_ne!(x, cookie(k, b, 5, &hs(), 3));
        assert_ne!(x, cookie(k, c, 5, &hs(), 3));
        assert_ne!(x, cookie(k, a, 6, &hs(), 3));
        assert_ne!(x, cookie(k, a, 5, &hs(), 4));
        assert_ne!(x, cookie(k + 1, a, 5, &hs(), 3));
        assert_eq!(
            epoch(Instant::from_ps(0)),
            epoch(Instant::from_ps((1 << 43) - 1))
        );
        assert_eq!(epoch(Instant::from_ps(1 << 43)), 1);
    }
}
