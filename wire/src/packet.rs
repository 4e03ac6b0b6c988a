//! Whole packets: [`parse`], [`Header::emit`], [`Header::len`] and [`trim`].
//!
//! A packet is the common header, the fixed extension of its opcode, the SACK words (ACK), the
//! INT hops (data and ACK), then the payload (data). `hdr_len` in the common header must equal
//! the length these parts add up to, so the payload offset is known from the common header
//! alone (a trimming switch needs nothing more).
//!
//! Parse and emit share their checks, so `emit` succeeds exactly on the headers that `parse`
//! can return, and each inverts the other. Neither allocates; the only loops run over the SACK
//! words and INT hops.

use core::mem;

use zerocopy::network_endian::U64;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::{
    AckExt, COMMON_LEN, CloseExt, Common, CreditExt, CreditReqExt, DataExt, Error, Flags,
    HandshakeExt, INT_HOP_LEN, IntList, NackExt, Opcode, ProbeExt, SACK_WORD_LEN, ack, common, int,
};

/// Opcode-specific extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ext {
    /// [`Opcode::Data`].
    Data(DataExt),
    /// [`Opcode::Ack`].
    Ack(AckExt),
    /// [`Opcode::Nack`].
    Nack(NackExt),
    /// [`Opcode::Syn`] and [`Opcode::SynAck`].
    Handshake(HandshakeExt),
    /// [`Opcode::Probe`].
    Probe(ProbeExt),
    /// [`Opcode::Close`].
    Close(CloseExt),
    /// [`Opcode::Credit`].
    Credit(CreditExt),
    /// [`Opcode::CreditReq`].
    CreditReq(CreditReqExt),
    /// [`Opcode::Cnp`]: no extension.
    None,
}

/// A whole packet header in compact form.
///
/// Rules [`Header::emit`] enforces (and [`parse`] guarantees):
///
/// * `ext` matches `common.opcode` ([`Error::BadField`]);
/// * `common.flags` holds only the opcode's [`Opcode::allowed_flags`] ([`Error::BadFlags`]);
/// * `common.payload_len` is zero unless the opcode is data ([`Error::BadLength`]);
/// * data: `msg_offset + payload_len <= msg_len` ([`Error::BadField`]);
/// * `int` is empty except on data and ACK ([`Error::BadField`]); on data a non-empty `int`
///   needs [`Flags::INT`] ([`Error::BadFlags`]). [`Flags::INT`] with an empty list is valid:
///   INT was requested and no switch has stamped the packet yet;
/// * ACK: `sack.len <= MAX_SACK_WORDS` ([`Error::TooManySackWords`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Common header.
    pub common: Common,
    /// Opcode-specific extension; must match `common.opcode`.
    pub ext: Ext,
    /// INT hop records: stamped by switches on data packets (flag [`Flags::INT`]), echoed back
    /// in ACKs. Empty otherwise.
    pub int: IntList,
}

/// How the payload travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadMode {
    /// The buffer holds header and payload bytes (real datapaths).
    Bytes,
    /// The buffer holds only the header; `payload_len` describes a payload that is not carried
    /// (the simulator's length-only mode).
    Virtual,
}

/// A parsed packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parsed<'a> {
    /// The header.
    pub header: Header,
    /// Bytes of header in the buffer.
    pub header_len: usize,
    /// The payload bytes (empty when trimmed or virtual).
    pub payload: &'a [u8],
}

/// Parse one packet. Never panics; every inconsistency is an [`Error`].
///
/// In [`PayloadMode::Bytes`] the buffer must be exactly header + `payload_len` bytes, or just
/// the header when [`Flags::TRIMMED`] is set. In [`PayloadMode::Virtual`] it must be exactly the
/// header. A buffer that is too short is [`Error::Truncated`], one that is too long
/// [`Error::BadLength`].
#[inline]
pub fn parse(buf: &[u8], mode: PayloadMode) -> Result<Parsed<'_>, Error> {
    let mut r = Reader(buf);
    let cw: &common::Wire = r.take()?;
    let common = Common::parse(cw)?;
    let hdr_len = usize::from(cw.hdr_len.get());
    let fixed = COMMON_LEN + common.opcode.ext_len();
    let (ext, words, hops) = match common.opcode {
        Opcode::Data => {
            let (ext, hops) = DataExt::parse(r.take()?, common.payload_len)?;
            check_int(&common, hops)?;
            (Ext::Data(ext), 0, hops)
        }
        Opcode::Ack => {
            let w: &ack::Wire = r.take()?;
            let (words, hops) = AckExt::counts(w)?;
            let sack = r.take_slice::<U64>(words)?;
            (Ext::Ack(AckExt::from_wire(w, sack)), words, hops)
        }
        Opcode::Nack => (Ext::Nack(NackExt::parse(r.take()?)?), 0, 0),
        Opcode::Syn | Opcode::SynAck => (Ext::Handshake(HandshakeExt::parse(r.take()?)?), 0, 0),
        Opcode::Probe => (Ext::Probe(ProbeExt::parse(r.take()?)), 0, 0),
        Opcode::Close => (Ext::Close(CloseExt::parse(r.take()?)?), 0, 0),
        Opcode::Cnp => (Ext::None, 0, 0),
        Opcode::Credit => (Ext::Credit(CreditExt::parse(r.take()?)), 0, 0),
        Opcode::CreditReq => (Ext::CreditReq(CreditReqExt::parse(r.take()?)), 0, 0),
    };
    //= docs/wire.md#common-header
    //# `hdr_len` equals the sum of the parts the opcode and its counts call for.
    if hdr_len != fixed + words * SACK_WORD_LEN + hops * INT_HOP_LEN {
        return Err(Error::BadLength);
    }
    let int = IntList::from_wire(r.take_slice::<int::Wire>(hops)?);
    let payload = r.0;
    //= docs/wire.md#payload-and-trimming
    //# With real bytes, the payload is exactly `payload_len` bytes unless TRIMMED is set, in
    //# which case the packet ends at `hdr_len`. In virtual mode it always ends at `hdr_len`.
    let want = match mode {
        PayloadMode::Bytes if !common.flags.contains(Flags::TRIMMED) => {
            u64::from(common.payload_len)
        }
        _ => 0,
    };
    let have = payload.len() as u64;
    if have < want {
        return Err(Error::Truncated);
    }
    if have > want {
        return Err(Error::BadLength);
    }
    Ok(Parsed {
        header: Header { common, ext, int },
        header_len: hdr_len,
        payload,
    })
}

impl Header {
    /// Length of this header on the wire: where the payload starts. Computed from the
    /// extension, the SACK length and the INT list; meaningful for headers that emit.
    #[allow(clippy::len_without_is_empty)] // never zero
    #[inline]
    pub fn len(&self) -> usize {
        let ext = match &self.ext {
            Ext::Data(_) => Opcode::Data.ext_len(),
            Ext::Ack(a) => Opcode::Ack.ext_len() + usize::from(a.sack.len) * SACK_WORD_LEN,
            Ext::Nack(_) => Opcode::Nack.ext_len(),
            Ext::Handshake(_) => Opcode::Syn.ext_len(),
            Ext::Probe(_) => Opcode::Probe.ext_len(),
            Ext::Close(_) => Opcode::Close.ext_len(),
            Ext::Credit(_) => Opcode::Credit.ext_len(),
            Ext::CreditReq(_) => Opcode::CreditReq.ext_len(),
            Ext::None => 0,
        };
        COMMON_LEN + ext + self.int.len() * INT_HOP_LEN
    }

    /// Write this header at the start of `buf`; returns the number of bytes written
    /// ([`Header::len`]); the payload, if any, goes right after. Fails (writing nothing
    /// meaningful) when `buf` is too small or the header is inconsistent (see [`Header`] for
    /// the rules).
    #[inline]
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        self.check()?;
        let len = self.len();
        // `len` is at most MAX_HEADER_LEN once checked, which fits the u16 (asserted in lib.rs).
        let hdr_len = u16::try_from(len).map_err(|_| Error::BadLength)?;
        // The hop count is at most MAX_INT_HOPS by IntList's invariant.
        let hops = u8::try_from(self.int.len()).map_err(|_| Error::TooManyHops)?;
        let mut w = Writer(buf.get_mut(..len).ok_or(Error::BufferTooSmall)?);
        w.put(&self.common.to_wire(hdr_len))?;
        match self.ext {
            Ext::Data(d) => w.put(&d.to_wire(hops))?,
            Ext::Ack(a) => {
                w.put(&a.to_wire(hops))?;
                for &word in a.sack.as_slice() {
                    w.put(&U64::new(word))?;
                }
            }
            Ext::Nack(n) => w.put(&n.to_wire())?,
            Ext::Handshake(h) => w.put(&h.to_wire())?,
            Ext::Probe(p) => w.put(&p.to_wire())?,
            Ext::Close(c) => w.put(&c.to_wire())?,
            Ext::Credit(c) => w.put(&c.to_wire())?,
            Ext::CreditReq(q) => w.put(&q.to_wire())?,
            Ext::None => {}
        }
        for &hop in self.int.as_slice() {
            w.put(&hop.to_wire())?;
        }
        Ok(len)
    }

    /// Emit's consistency checks; parse makes the same ones on the wire form.
    #[inline]
    fn check(&self) -> Result<(), Error> {
        let c = &self.common;
        let matches = matches!(
            (c.opcode, &self.ext),
            (Opcode::Data, Ext::Data(_))
                | (Opcode::Ack, Ext::Ack(_))
                | (Opcode::Nack, Ext::Nack(_))
                | (Opcode::Syn | Opcode::SynAck, Ext::Handshake(_))
                | (Opcode::Probe, Ext::Probe(_))
                | (Opcode::Close, Ext::Close(_))
                | (Opcode::Cnp, Ext::None)
                | (Opcode::Credit, Ext::Credit(_))
                | (Opcode::CreditReq, Ext::CreditReq(_))
        );
        if !matches {
            return Err(Error::BadField);
        }
        c.check()?;
        match &self.ext {
            Ext::Data(d) => {
                d.check(c.payload_len)?;
                check_int(c, self.int.len())
            }
            Ext::Ack(a) => a.check(),
            //= docs/wire.md#int
            //# Only DATA and ACK carry INT hops.
            _ if !self.int.is_empty() => Err(Error::BadField),
            _ => Ok(()),
        }
    }
}

/// Trim a packet in place as a switch would: cut the payload, set [`Flags::TRIMMED`], keep
/// `payload_len`. Returns the new length (the header length); the caller truncates the buffer
/// to it.
///
/// The packet must parse in [`PayloadMode::Bytes`] and be data ([`Error::BadOpcode`]
/// otherwise); trimming a trimmed packet changes nothing.
pub fn trim(buf: &mut [u8]) -> Result<usize, Error> {
    let parsed = parse(buf, PayloadMode::Bytes)?;
    if parsed.header.common.opcode != Opcode::Data {
        return Err(Error::BadOpcode);
    }
    let len = parsed.header_len;
    let (cw, _) = common::Wire::mut_from_prefix(buf).map_err(|_| Error::Truncated)?;
    cw.flags.set(cw.flags.get() | Flags::TRIMMED.0);
    Ok(len)
}

/// On data, INT hops need [`Flags::INT`].
#[inline]
fn check_int(common: &Common, hops: usize) -> Result<(), Error> {
    //= docs/wire.md#int
    //# A DATA packet with INT clear carries no hops (`int_count` = 0).
    if hops != 0 && !common.flags.contains(Flags::INT) {
        return Err(Error::BadFlags);
    }
    Ok(())
}

/// Parse cursor: takes checked views off the front of the buffer.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    #[inline]
    fn take<T: FromBytes + KnownLayout + Immutable + Unaligned>(&mut self) -> Result<&'a T, Error> {
        let (v, rest) = T::ref_from_prefix(self.0).map_err(|_| Error::Truncated)?;
        self.0 = rest;
        Ok(v)
    }

    #[inline]
    fn take_slice<T: FromBytes + Immutable + Unaligned>(
        &mut self,
        n: usize,
    ) -> Result<&'a [T], Error> {
        let (v, rest) =
            <[T]>::ref_from_prefix_with_elems(self.0, n).map_err(|_| Error::Truncated)?;
        self.0 = rest;
        Ok(v)
    }
}

/// Emit cursor: writes wire structs to the front of the buffer.
struct Writer<'a>(&'a mut [u8]);

impl Writer<'_> {
    #[inline]
    fn put<T: IntoBytes + Immutable>(&mut self, v: &T) -> Result<(), Error> {
        let (head, tail) = mem::take(&mut self.0)
            .split_at_mut_checked(size_of::<T>())
            .ok_or(Error::BufferTooSmall)?;
        head.copy_from_slice(v.as_bytes());
        self.0 = tail;
        Ok(())
    }
}
