//! The one error type of the wire layer: a small `Copy` enum, no allocation, no strings.
//!
//! Every variant is something network input can trigger; the caller drops the packet and
//! counts the variant.

use core::fmt;

/// Why a packet could not be parsed or emitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Error {
    /// Buffer shorter than the header claims, or shorter than header + payload.
    Truncated,
    /// Unknown version.
    BadVersion,
    /// Unknown opcode, or an opcode the operation does not apply to ([`crate::trim`] on a
    /// packet that is not data).
    BadOpcode,
    /// Undefined flag bits set, or a flag not allowed on this opcode (see
    /// [`crate::Opcode::allowed_flags`]), or an INT list on data without [`crate::Flags::INT`].
    BadFlags,
    /// Header length field inconsistent with opcode and counts, or buffer length inconsistent
    /// with header length + payload length, or a payload length on a packet that is not data.
    BadLength,
    /// A field holds a value outside its range (unknown enum value, reserved bits set, offset
    /// past message end, extension not matching the opcode, INT hops on an opcode without an
    /// INT list…).
    BadField,
    /// More INT hops than [`crate::MAX_INT_HOPS`].
    TooManyHops,
    /// More SACK words than [`crate::MAX_SACK_WORDS`].
    TooManySackWords,
    /// The output buffer is too small.
    BufferTooSmall,
    /// The integrity check (ICRC trailer) does not match: the packet was corrupted.
    BadChecksum,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Truncated => "packet truncated",
            Error::BadVersion => "unknown wire format version",
            Error::BadOpcode => "unknown or unexpected opcode",
            Error::BadFlags => "undefined or disallowed flags",
            Error::BadLength => "inconsistent header or payload length",
            Error::BadField => "field value out of range",
            Error::TooManyHops => "too many INT hops",
            Error::TooManySackWords => "too many SACK words",
            Error::BufferTooSmall => "output buffer too small",
            Error::BadChecksum => "integrity check (ICRC) mismatch",
        })
    }
}

impl core::error::Error for Error {}
