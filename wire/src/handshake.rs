//! The handshake extension (40 bytes) of SYN and SYN-ACK.
//!
//! ```text
//!  0                               4                               8
//! +---------------------------------------------------------------+
//! |                             nonce                             |
//! +---------------------------------------------------------------+
//! |                          echo_nonce                           |
//! +---------------------------------------------------------------+
//! |                           user_data                           |
//! +-------------------------------+-------------------------------+
//! |          initial_psn          |          max_payload          |
//! +---------------+-------+-------+-------------------------------+
//! |     paths     | mode  |rx_port|           rwnd_pkts           |
//! +---------------+-------+-------+-------------------------------+
//! ```
//!
//! How the nonces become tokens is described in `docs/wire.md#handshake-and-tokens`; the wire
//! layer does not check it (a SYN's zero `echo_nonce` and token are the transport's business).

use zerocopy::network_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::{Error, HANDSHAKE_EXT_LEN};

/// Reliability mode, carried in the handshake; both ends must agree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Mode {
    /// Weir: multipath spraying, out-of-order acceptance, SACK, selective retransmit.
    Weir = 0,
    /// RoCEv2-like baseline: single path, go-back-N, in-order receiver.
    GoBackN = 1,
}

impl TryFrom<u8> for Mode {
    type Error = Error;

    /// Unknown values are [`Error::BadField`].
    #[inline]
    fn try_from(v: u8) -> Result<Mode, Error> {
        match v {
            0 => Ok(Mode::Weir),
            1 => Ok(Mode::GoBackN),
            _ => Err(Error::BadField),
        }
    }
}

/// Extension of [`Opcode::Syn`](crate::Opcode::Syn) and
/// [`Opcode::SynAck`](crate::Opcode::SynAck).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandshakeExt {
    /// The sender's random nonce: the peer puts it in [`Common::token`](crate::Common::token)
    /// of every later packet.
    pub nonce: u64,
    /// SYN-ACK: the SYN's nonce, echoed. SYN: zero.
    pub echo_nonce: u64,
    /// Application data passed to the acceptor (e.g. which listener / communicator).
    pub user_data: u64,
    /// First PSN the sender will use.
    pub initial_psn: u32,
    /// Largest payload the sender can receive in one packet.
    pub max_payload: u32,
    /// Number of entropy values (paths) the sender sprays over.
    pub paths: u16,
    /// Reliability mode.
    pub mode: Mode,
    /// Receive window in packets the sender offers.
    pub rwnd_pkts: u32,
    /// The sender receives on this many sockets, at consecutive UDP ports from the one it
    /// sends the handshake from; the peer spreads its packets over them by entropy (more
    /// kernel receive buffer for an incast). 0 and 1 both mean one.
    pub rx_ports: u8,
}

impl HandshakeExt {
    /// Checks the mode.
    #[inline(always)]
    pub(crate) fn parse(w: &Wire) -> Result<HandshakeExt, Error> {
        //= docs/wire.md#handshake-extension
        //# `mode` is 0 or 1.
        Ok(HandshakeExt {
            nonce: w.nonce.get(),
            echo_nonce: w.echo_nonce.get(),
            user_data: w.user_data.get(),
            initial_psn: w.initial_psn.get(),
            max_payload: w.max_payload.get(),
            paths: w.paths.get(),
            mode: Mode::try_from(w.mode)?,
            rwnd_pkts: w.rwnd_pkts.get(),
            rx_ports: w.rx_ports,
        })
    }

    /// The wire form.
    #[inline]
    pub(crate) fn to_wire(self) -> Wire {
        Wire {
            nonce: U64::new(self.nonce),
            echo_nonce: U64::new(self.echo_nonce),
            user_data: U64::new(self.user_data),
            initial_psn: U32::new(self.initial_psn),
            max_payload: U32::new(self.max_payload),
            paths: U16::new(self.paths),
            mode: self.mode as u8,
            rx_ports: self.rx_ports,
            rwnd_pkts: U32::new(self.rwnd_pkts),
        }
    }
}

/// Wire layout of the handshake extension.
#[derive(Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct Wire {
    /// Offset 0.
    nonce: U64,
    /// Offset 8.
    echo_nonce: U64,
    /// Offset 16.
    user_data: U64,
    /// Offset 24.
    initial_psn: U32,
    /// Offset 28.
    max_payload: U32,
    /// Offset 32.
    paths: U16,
    /// Offset 34.
    mode: u8,
    /// Offset 35.
    rx_ports: u8,
    /// Offset 36.
    rwnd_pkts: U32,
}

const _: () = assert!(size_of::<Wire>() == HANDSHAKE_EXT_LEN);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_bad_fields() {
        let h = HandshakeExt {
            nonce: 1,
            echo_nonce: 2,
            user_data: 3,
            initial_psn: 4,
            max_payload: 5,
            paths: 6,
            mode: Mode::GoBackN,
            rwnd_pkts: 7,
            rx_ports: 8,
        };
        assert_eq!(HandshakeExt::parse(&h.to_wire()), Ok(h));
        let mut w = h.to_wire();
        w.mode = 2;
        assert_eq!(HandshakeExt::parse(&w), Err(Error::BadField));
        assert_eq!(Mode::try_from(0), Ok(Mode::Weir));
    }
}
