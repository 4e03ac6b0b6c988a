//! The endpoint: connection table, demultiplexing and the public sans-IO interface.
//! TODO(me): implementation in progress.

use core::net::SocketAddr;
use core::ptr::NonNull;

use weir_base::Instant;

use crate::config::{Config, ConfigError};
use crate::mem::{Memory, RegionId};
use crate::stats::{ConnStats, EndpointStats};
use crate::{ConnId, Event, Payload, PostError, RxMeta, Transmit, WorkRequest, WrId};

/// A transport endpoint: one local address, many connections. See the crate documentation for
/// the calling order.
#[derive(Debug)]
pub struct Endpoint {
    config: Config,
    mem: Memory,
    stats: EndpointStats,
}

impl Endpoint {
    /// A new endpoint at `local` (used only in reports). `seed` drives every random choice
    /// (connection tokens, initial PSNs, entropy): seed it from the OS for real use, from the
    /// scenario for simulation.
    pub fn new(config: Config, local: SocketAddr, seed: u64) -> Result<Self, ConfigError> {
        let _ = (local, seed);
        config.validate()?;
        Ok(Endpoint {
            config,
            mem: Memory::default(),
            stats: EndpointStats::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Accept incoming connections (or stop accepting new ones).
    pub fn listen(&mut self, on: bool) {
        let _ = on;
        todo!()
    }

    /// Start connecting to `remote`; [`Event::Connected`] follows. `user_data` is delivered to
    /// the acceptor in [`Event::Accepted`].
    pub fn connect(&mut self, now: Instant, remote: SocketAddr, user_data: u64) -> ConnId {
        let _ = (now, remote, user_data);
        todo!()
    }

    /// Register `len` bytes at `ptr`. With `remote_write`, peers may write into it using
    /// [`Endpoint::rkey`].
    ///
    /// # Safety
    /// The memory must stay valid (allocated, not moved) until [`Endpoint::deregister`], and
    /// the application must not touch bytes of an outstanding request until it completes.
    pub unsafe fn register(&mut self, ptr: NonNull<u8>, len: u64, remote_write: bool) -> RegionId {
        let _ = (ptr, len, remote_write);
        todo!()
    }

    /// Register a virtual region of `len` bytes: no memory, payload lengths only (simulator).
    pub fn register_virtual(&mut self, len: u64, remote_write: bool) -> RegionId {
        let _ = (len, remote_write);
        todo!()
    }

    /// Remove a region. Returns false if it was not registered.
    pub fn deregister(&mut self, id: RegionId) -> bool {
        self.mem.remove(id)
    }

    /// The key peers use to write into `id` (0 when not remotely writable or unknown).
    pub fn rkey(&self, id: RegionId) -> u32 {
        self.mem.get(id).map_or(0, |r| r.rkey)
    }

    /// Post a work request on `conn`.
    pub fn post(&mut self, now: Instant, conn: ConnId, wr: WorkRequest) -> Result<WrId, PostError> {
        let _ = (now, conn, wr);
        todo!()
    }

    /// Close `conn`: outstanding requests complete with an error, the peer is told.
    pub fn close(&mut self, now: Instant, conn: ConnId) {
        let _ = (now, conn);
        todo!()
    }

    /// A datagram arrived. Malformed, forged, stale or unexpected datagrams are dropped and
    /// counted in [`Endpoint::stats`].
    pub fn handle(&mut self, now: Instant, meta: RxMeta, datagram: &[u8]) {
        let _ = (now, meta, datagram);
        todo!()
    }

    /// The next datagram to send: its header is written into `header` (at least
    /// [`weir_wire::MAX_HEADER_LEN`] bytes), its payload described by the returned
    /// [`Transmit`].
    pub fn poll_transmit(&mut self, now: Instant, header: &mut [u8]) -> Option<Transmit> {
        let _ = (now, header);
        todo!()
    }

    /// The bytes of a [`Payload::Region`] descriptor returned by `poll_transmit` (valid until
    /// the next call that takes `&mut self`). `None` for other payloads.
    pub fn payload(&self, payload: &Payload) -> Option<&[u8]> {
        match *payload {
            Payload::Region {
                region,
                offset,
                len,
            } => self.mem.bytes(region, offset, len as usize),
            _ => None,
        }
    }

    /// The earliest time at which [`Endpoint::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        todo!()
    }

    /// Timers due at `now` fire.
    pub fn handle_timeout(&mut self, now: Instant) {
        let _ = now;
        todo!()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        todo!()
    }

    /// Endpoint counters.
    pub fn stats(&self) -> &EndpointStats {
        &self.stats
    }

    /// Counters of one connection.
    pub fn conn_stats(&self, conn: ConnId) -> Option<ConnStats> {
        let _ = conn;
        todo!()
    }

    /// The peer of a connection.
    pub fn peer(&self, conn: ConnId) -> Option<SocketAddr> {
        let _ = conn;
        todo!()
    }
}
