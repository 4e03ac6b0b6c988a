//! Weir wire format, version 1 (documented for humans in `docs/wire.md`).
//!
//! Every packet starts with a 32-byte [`Common`] header, followed by an opcode-specific
//! extension ([`Ext`]), the SACK bitmap words (ACK only), an optional list of INT hop records
//! (data and ACK only), and the payload (data packets only). All integers are in network byte
//! order. The common header's `hdr_len` field gives the offset of the payload.
//!
//! Contract: [`parse`] validates every length and field once and never panics, whatever the
//! input; it returns a compact [`Header`] plus the payload slice. [`Header::emit`] writes the
//! exact inverse: for every buffer `b` that parses, emitting the parsed header reproduces the
//! header bytes of `b` exactly (the encoding is canonical: reserved bits must be zero, counts
//! are derived from the lists), and for every header `h` that emits, parsing the result gives
//! back `h`. A packet that fails to parse is dropped and counted by the caller.
//!
//! Layering: the wire layer checks *structure* (lengths, enum values, reserved bits, which
//! flags and lists an opcode may carry, message bounds). It does not check *meaning*: tokens,
//! PSN windows, whether a connection exists, whether `rkey` is zero on a send. Those belong to
//! the transport.
//!
//! Code layout: one module per header. Each holds the compact representation (the public
//! type, smoltcp's `Repr`) and a private `Wire` struct: the `#[repr(C)]` zerocopy layout of
//! that header, with its size pinned by a `const` assertion. A `&Wire` obtained with
//! `ref_from_prefix` is the checked view of smoltcp's `Packet::new_checked`: its length is
//! proven once, and no accessor can panic afterwards. The zerocopy struct is also the field
//! table, so there is no separate `mod field` of byte ranges: two tables of the same offsets
//! could disagree, one cannot. The byte-exact tests in `tests/layout.rs` pin every offset.
#![no_std]
#![warn(missing_docs)]

mod ack;
mod close;
mod common;
mod credit;
mod data;
mod ecn;
mod error;
mod handshake;
pub mod icrc;
mod int;
mod nack;
mod packet;
mod probe;
pub mod psn;

pub use ack::{AckExt, Sack};
pub use close::CloseExt;
pub use common::{Common, Flags, Opcode};
pub use credit::{CreditExt, CreditReqExt};
pub use data::{DataExt, MsgKind};
pub use ecn::Ecn;
pub use error::Error;
pub use handshake::{HandshakeExt, Mode};
pub use int::{IntHop, IntList};
pub use nack::{NackExt, NackReason};
pub use packet::{Ext, Header, Parsed, PayloadMode, parse, trim};
pub use probe::ProbeExt;

/// Wire format version carried in every packet.
pub const VERSION: u8 = 1;
/// Length of the common header.
pub const COMMON_LEN: usize = 32;
/// Length of the data extension.
pub const DATA_EXT_LEN: usize = 40;
/// Length of the fixed part of the ACK extension (SACK words and INT hops follow).
pub const ACK_EXT_LEN: usize = 32;
/// Length of the NACK extension.
pub const NACK_EXT_LEN: usize = 24;
/// Length of the handshake (SYN / SYN-ACK) extension.
pub const HANDSHAKE_EXT_LEN: usize = 40;
/// Length of the probe extension.
pub const PROBE_EXT_LEN: usize = 8;
/// Length of the close extension.
pub const CLOSE_EXT_LEN: usize = 8;
/// Length of the CREDIT extension.
pub const CREDIT_EXT_LEN: usize = 8;
/// Length of the CREDIT_REQ extension.
pub const CREDIT_REQ_EXT_LEN: usize = 16;
/// Length of one INT hop record.
pub const INT_HOP_LEN: usize = 24;
/// Most INT hop records a packet may carry.
pub const MAX_INT_HOPS: usize = 8;
/// Most 64-bit SACK bitmap words an ACK may carry (4 words = 256 packets).
pub const MAX_SACK_WORDS: usize = 16;
/// Length of one SACK bitmap word.
pub const SACK_WORD_LEN: usize = 8;
/// The longest header any packet can have (an ACK with a full SACK bitmap and full INT list).
pub const MAX_HEADER_LEN: usize =
    COMMON_LEN + ACK_EXT_LEN + MAX_SACK_WORDS * SACK_WORD_LEN + MAX_INT_HOPS * INT_HOP_LEN;

// `hdr_len` is a u16 on the wire.
const _: () = assert!(MAX_HEADER_LEN <= u16::MAX as usize);
