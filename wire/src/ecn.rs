//! ECN codepoints of the IP header (RFC 3168). They are not part of the Weir header: the
//! datapath reads them from the IP TOS / traffic-class byte, and receivers echo CE marks back in
//! [`AckExt::ecn_bytes`](crate::AckExt::ecn_bytes) and [`Flags::ECN_ECHO`](crate::Flags::ECN_ECHO).

/// The two ECN bits of the IP header (RFC 3168).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum Ecn {
    /// Not ECN-capable transport.
    #[default]
    NotEct = 0b00,
    /// ECN-capable transport (1).
    Ect1 = 0b01,
    /// ECN-capable transport (0).
    Ect0 = 0b10,
    /// Congestion experienced.
    Ce = 0b11,
}

impl Ecn {
    //= https://www.rfc-editor.org/rfc/rfc3168#section-5
    //# The ECN field in the IP header is used with four codepoints: '00' Not-ECT, '01'
    //# ECT(1), '10' ECT(0), '11' CE.
    /// From the low two bits of the IP TOS / traffic-class byte.
    pub const fn from_bits(tos: u8) -> Ecn {
        match tos & 0b11 {
            0b01 => Ecn::Ect1,
            0b10 => Ecn::Ect0,
            0b11 => Ecn::Ce,
            _ => Ecn::NotEct,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_bits_uses_low_two_bits() {
        for tos in 0..=u8::MAX {
            assert_eq!(Ecn::from_bits(tos) as u8, tos & 0b11);
        }
    }
}
