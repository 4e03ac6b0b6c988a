//! Byte-exact layout of one packet of each opcode (expected bytes written by hand from
//! `docs/wire.md`), and the error cases of parse, emit and trim.

use weir_wire::*;

/// Emits `h`, appends `payload`, compares with `want`, and parses `want` back in both modes.
fn check(h: &Header, payload: &[u8], want: &[u8]) {
    let mut buf = [0u8; MAX_HEADER_LEN + 64];
    let n = h.emit(&mut buf).unwrap();
    assert_eq!(n, h.len());
    buf[n..n + payload.len()].copy_from_slice(payload);
    assert_eq!(&buf[..n + payload.len()], want, "{h:?}");

    let p = parse(want, PayloadMode::Bytes).unwrap();
    assert_eq!(p.header, *h);
    assert_eq!(p.header_len, n);
    assert_eq!(p.payload, payload);

    let v = parse(&want[..n], PayloadMode::Virtual).unwrap();
    assert_eq!(v.header, *h);
    assert_eq!(v.header_len, n);
    assert!(v.payload.is_empty());
}

fn hop() -> IntHop {
    IntHop {
        qlen: 0x0001_0000,
        rate_mbps: 100_000,
        tx_bytes: 0xab_cdef,
        ts_ns: 0x1234_5678,
    }
}

#[rustfmt::skip]
const HOP_BYTES: [u8; 24] = [
    0x00, 0x01, 0x00, 0x00,   0x00, 0x01, 0x86, 0xa0, // qlen, rate_mbps
    0x00, 0x00, 0x00, 0x00, 0x00, 0xab, 0xcd, 0xef,   // tx_bytes
    0x00, 0x00, 0x00, 0x00, 0x12, 0x34, 0x56, 0x78,   // ts_ns
];

fn common(opcode: Opcode, flags: Flags) -> Common {
    Common {
        opcode,
        flags,
        src_conn: 0x0a0b_0c0d,
        dst_conn: 0x0102_0304,
        psn: 0xffff_fffe,
        entropy: 0xbeef,
        payload_len: 0,
        token: 0x1122_3344_5566_7788,
    }
}

/// The common header bytes for `common(opcode, flags)` with the given lengths.
#[rustfmt::skip]
fn common_bytes(opcode: u8, flags: u16, hdr_len: u16, payload_len: u32) -> Vec<u8> {
    let [f0, f1] = flags.to_be_bytes();
    let [h0, h1] = hdr_len.to_be_bytes();
    let [p0, p1, p2, p3] = payload_len.to_be_bytes();
    vec![
        0x01, opcode, f0, f1,                           // version, opcode, flags
        0x0a, 0x0b, 0x0c, 0x0d,                         // src_conn
        0x01, 0x02, 0x03, 0x04,                         // dst_conn
        0xff, 0xff, 0xff, 0xfe,                         // psn
        0xbe, 0xef, h0, h1,                             // entropy, hdr_len
        p0, p1, p2, p3,                                 // payload_len
        0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, // token
    ]
}

fn data_header() -> Header {
    Header {
        common: Common {
            payload_len: 4,
            ..common(
                Opcode::Data,
                Flags::ACK_REQ.union(Flags::RETX).union(Flags::INT),
            )
        },
        ext: Ext::Data(DataExt {
            msg_id: 5,
            msg_len: 0x1000,
            msg_offset: 0x0ffc,
            kind: MsgKind::Write,
            notify: true,
            tag: 0x0102_0304_0506_0708,
            rkey: 0xcafe_babe,
            imm: 0xdead_beef,
            tx_ts: 0x0000_0001_0000_0002,
        }),
        int: IntList::from_slice(&[hop()]).unwrap(),
    }
}

#[test]
#[rustfmt::skip]
fn data_layout() {
    let mut want = common_bytes(1, 0x0019, 96, 4);
    want.extend_from_slice(&[
        0x00, 0x00, 0x00, 0x05,                         // msg_id
        0x00, 0x00, 0x10, 0x00,                         // msg_len
        0x00, 0x00, 0x0f, 0xfc,                         // msg_offset
        0x01, 0x01, 0x01, 0x00,                         // kind, dflags, int_count, reserved
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // tag
        0xca, 0xfe, 0xba, 0xbe,                         // rkey
        0xde, 0xad, 0xbe, 0xef,                         // imm
        0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02, // tx_ts
    ]);
    want.extend_from_slice(&HOP_BYTES);
    want.extend_from_slice(b"abcd");
    check(&data_header(), b"abcd", &want);
}

#[test]
#[rustfmt::skip]
fn ack_layout() {
    let h = Header {
        common: common(Opcode::Ack, Flags::ECN_ECHO),
        ext: Ext::Ack(AckExt {
            cum_psn: 100,
            sack: Sack {
                base: 101,
                words: { let mut w = [0; MAX_SACK_WORDS]; w[0] = 0x8000_0000_0000_0001; w[1] = 0xff; w },
                len: 2,
            },
            rwnd_psn: 0x400,
            ecn_bytes: 0x1234,
            rx_delay_ns: 1000,
            echo_ts: 0x0a0b_0c0d_0e0f_1011,
        }),
        int: IntList::from_slice(&[hop()]).unwrap(),
    };
    let mut want = common_bytes(2, 0x0002, 32 + 32 + 16 + 24, 0);
    want.extend_from_slice(&[
        0x00, 0x00, 0x00, 0x64,                         // cum_psn
        0x00, 0x00, 0x00, 0x65,                         // sack_base
        0x00, 0x00, 0x04, 0x00,                         // rwnd_psn
        0x00, 0x00, 0x12, 0x34,                         // ecn_bytes
        0x00, 0x00, 0x03, 0xe8,                         // rx_delay_ns
        0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, // echo_ts
        0x02, 0x01, 0x00, 0x00,                         // sack_len, int_count, reserved
        0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, // sack word 0
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, // sack word 1
    ]);
    want.extend_from_slice(&HOP_BYTES);
    check(&h, &[], &want);
}

#[test]
#[rustfmt::skip]
fn nack_layout() {
    let h = Header {
        common: common(Opcode::Nack, Flags::empty()),
        ext: Ext::Nack(NackExt {
            cum_psn: 7,
            nack_psn: 9,
            reason: NackReason::OutOfSequence,
            echo_ts: 0x0102_0304_0506_0708,
        }),
        int: IntList::new(),
    };
    let mut want = common_bytes(3, 0, 56, 0);
    want.extend_from_slice(&[
        0x00, 0x00, 0x00, 0x07,                         // cum_psn
        0x00, 0x00, 0x00, 0x09,                         // nack_psn
        0x04, 0x00, 0x00, 0x00,                         // reason, reserved
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // echo_ts
        0x00, 0x00, 0x00, 0x00,                         // reserved
    ]);
    check(&h, &[], &want);
}

fn handshake() -> HandshakeExt {
    HandshakeExt {
        nonce: 0x1111_2222_3333_4444,
        echo_nonce: 0,
        user_data: 0x42,
        initial_psn: 1000,
        max_payload: 4096,
        paths: 256,
        mode: Mode::GoBackN,
        rwnd_pkts: 0x200,
        rx_ports: 0,
    }
}

#[rustfmt::skip]
fn handshake_bytes(echo: [u8; 8]) -> Vec<u8> {
    let mut v = vec![
        0x11, 0x11, 0x22, 0x22, 0x33, 0x33, 0x44, 0x44, // nonce
    ];
    v.extend_from_slice(&echo);                         // echo_nonce
    v.extend_from_slice(&[
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x42, // user_data
        0x00, 0x00, 0x03, 0xe8,                         // initial_psn
        0x00, 0x00, 0x10, 0x00,                         // max_payload
        0x01, 0x00, 0x01, 0x00,                         // paths, mode, reserved
        0x00, 0x00, 0x02, 0x00,                         // rwnd_pkts
    ]);
    v
}

#[test]
fn syn_layout() {
    let h = Header {
        common: Common {
            token: 0,
            dst_conn: 0,
            ..common(Opcode::Syn, Flags::empty())
        },
        ext: Ext::Handshake(handshake()),
        int: IntList::new(),
    };
    let mut want = common_bytes(4, 0, 72, 0);
    want[8..12].fill(0); // dst_conn
    want[24..32].fill(0); // token
    want.extend(handshake_bytes([0; 8]));
    check(&h, &[], &want);
}

#[test]
fn syn_ack_layout() {
    let h = Header {
        common: common(Opcode::SynAck, Flags::empty()),
        ext: Ext::Handshake(HandshakeExt {
            echo_nonce: 0x1122_3344_5566_7788,
            ..handshake()
        }),
        int: IntList::new(),
    };
    let mut want = common_bytes(5, 0, 72, 0);
    want.extend(handshake_bytes([
        0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
    ]));
    check(&h, &[], &want);
}

#[test]
fn probe_layout() {
    let h = Header {
        common: common(Opcode::Probe, Flags::ACK_REQ),
        ext: Ext::Probe(ProbeExt {
            tx_ts: 0x0102_0304_0506_0708,
        }),
        int: IntList::new(),
    };
    let mut want = common_bytes(6, 0x0001, 40, 0);
    want.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
    check(&h, &[], &want);
}

#[test]
fn close_layout() {
    let h = Header {
        common: common(Opcode::Close, Flags::empty()),
        ext: Ext::Close(CloseExt { reason: 2 }),
        int: IntList::new(),
    };
    let mut want = common_bytes(7, 0, 40, 0);
    want.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 0]);
    check(&h, &[], &want);
}

#[test]
fn cnp_layout() {
    let h = Header {
        common: common(Opcode::Cnp, Flags::empty()),
        ext: Ext::None,
        int: IntList::new(),
    };
    check(&h, &[], &common_bytes(8, 0, 32, 0));
}

#[test]
fn credit_layout() {
    let h = Header {
        common: common(Opcode::Credit, Flags::empty()),
        ext: Ext::Credit(CreditExt {
            credit: 0x0102_0304_0506_0708,
        }),
        int: IntList::new(),
    };
    let mut want = common_bytes(9, 0, 40, 0);
    want.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
    check(&h, &[], &want);
}

#[test]
fn credit_req_layout() {
    let h = Header {
        common: common(Opcode::CreditReq, Flags::empty()),
        ext: Ext::CreditReq(CreditReqExt {
            demand: 0x0102_0304_0506_0708,
            granted: 0x1112_1314_1516_1718,
        }),
        int: IntList::new(),
    };
    let mut want = common_bytes(10, 0, 48, 0);
    want.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
    want.extend_from_slice(&[0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18]);
    check(&h, &[], &want);
}

#[test]
fn credit_packets_are_bounds_checked() {
    let h = Header {
        common: common(Opcode::CreditReq, Flags::empty()),
        ext: Ext::CreditReq(CreditReqExt {
            demand: 1,
            granted: 2,
        }),
        int: IntList::new(),
    };
    let mut buf = [0u8; MAX_HEADER_LEN];
    let n = h.emit(&mut buf).unwrap();
    assert_eq!(n, COMMON_LEN + CREDIT_REQ_EXT_LEN);
    for cut in 0..n {
        assert!(parse(&buf[..cut], PayloadMode::Bytes).is_err(), "{cut}");
    }
    // A CREDIT_REQ whose hdr_len claims a CREDIT's length, and the other way round.
    let mut bad = buf[..n].to_vec();
    bad[18..20].copy_from_slice(&40u16.to_be_bytes());
    assert_eq!(
        parse(&bad, PayloadMode::Bytes).unwrap_err(),
        Error::BadLength
    );
    let mut bad = buf[..n].to_vec();
    bad[1] = Opcode::Credit as u8;
    assert_eq!(
        parse(&bad, PayloadMode::Bytes).unwrap_err(),
        Error::BadLength
    );
    // Flags, payload lengths, INT hops and a mismatched extension are refused.
    let mut f = h;
    f.common.flags = Flags::ACK_REQ;
    assert_eq!(emit_err(&f), Error::BadFlags);
    let mut f = h;
    f.common.payload_len = 1;
    assert_eq!(emit_err(&f), Error::BadLength);
    let mut f = h;
    f.int.push(IntHop::default()).unwrap();
    assert_eq!(emit_err(&f), Error::BadField);
    let mut f = h;
    f.common.opcode = Opcode::Credit;
    assert_eq!(emit_err(&f), Error::BadField);
}

fn emit_err(h: &Header) -> Error {
    let mut buf = [0u8; MAX_HEADER_LEN];
    h.emit(&mut buf).unwrap_err()
}

#[test]
fn emit_rejects_inconsistent_headers() {
    let d = data_header();

    let mut h = d;
    h.common.opcode = Opcode::Ack;
    assert_eq!(emit_err(&h), Error::BadField);
    let h = Header {
        ext: Ext::None,
        ..d
    };
    assert_eq!(emit_err(&h), Error::BadField);
    let h = Header {
        common: common(Opcode::Syn, Flags::empty()),
        ext: Ext::None,
        int: IntList::new(),
    };
    assert_eq!(emit_err(&h), Error::BadField);

    let mut h = d;
    h.common.flags = Flags(1 << 6).union(Flags::INT);
    assert_eq!(emit_err(&h), Error::BadFlags);
    let mut h = d;
    h.common.flags = Flags::empty();
    assert_eq!(emit_err(&h), Error::BadFlags, "hops without INT");
    let mut h = d;
    h.common.flags = Flags::INT.union(Flags::ECN_ECHO);
    assert_eq!(emit_err(&h), Error::BadFlags, "ECN_ECHO on data");

    let mut h = d;
    h.common.payload_len = 5;
    assert_eq!(emit_err(&h), Error::BadField, "payload past message end");

    let nack = Header {
        common: common(Opcode::Nack, Flags::empty()),
        ext: Ext::Nack(NackExt {
            cum_psn: 0,
            nack_psn: 0,
            reason: NackReason::Trimmed,
            echo_ts: 0,
        }),
        int: IntList::new(),
    };
    let mut h = nack;
    h.int = IntList::from_slice(&[hop()]).unwrap();
    assert_eq!(emit_err(&h), Error::BadField, "INT on a NACK");
    let mut h = nack;
    h.common.payload_len = 1;
    assert_eq!(emit_err(&h), Error::BadLength);
    let mut h = nack;
    h.common.flags = Flags::TRIMMED;
    assert_eq!(emit_err(&h), Error::BadFlags);

    let ack = Header {
        common: common(Opcode::Ack, Flags::empty()),
        ext: Ext::Ack(AckExt {
            cum_psn: 0,
            sack: Sack {
                base: 0,
                words: [0; MAX_SACK_WORDS],
                len: MAX_SACK_WORDS as u8 + 1,
            },
            rwnd_psn: 0,
            ecn_bytes: 0,
            rx_delay_ns: 0,
            echo_ts: 0,
        }),
        int: IntList::new(),
    };
    assert_eq!(emit_err(&ack), Error::TooManySackWords);
    let mut h = ack;
    h.common.flags = Flags::INT;
    assert_eq!(emit_err(&h), Error::BadFlags, "INT flag on an ACK");
}

#[test]
fn emit_needs_room_for_the_whole_header() {
    let h = data_header();
    let mut buf = [0u8; MAX_HEADER_LEN];
    for n in 0..h.len() {
        assert_eq!(h.emit(&mut buf[..n]), Err(Error::BufferTooSmall));
    }
    assert_eq!(h.emit(&mut buf[..h.len()]), Ok(h.len()));
}

#[test]
fn int_flag_without_hops_is_valid() {
    let mut h = data_header();
    h.int = IntList::new();
    let mut buf = [0u8; MAX_HEADER_LEN + 4];
    let n = h.emit(&mut buf).unwrap();
    assert_eq!(n, COMMON_LEN + DATA_EXT_LEN);
    let p = parse(&buf[..n + 4], PayloadMode::Bytes).unwrap();
    assert_eq!(p.header, h);
    assert!(p.header.common.flags.contains(Flags::INT));
}

/// A valid data packet with its 4 payload bytes.
fn data_packet() -> Vec<u8> {
    let mut buf = vec![0u8; MAX_HEADER_LEN];
    let n = data_header().emit(&mut buf).unwrap();
    buf.truncate(n);
    buf.extend_from_slice(b"abcd");
    buf
}

#[test]
fn parse_rejects_bad_packets() {
    let good = data_packet();
    assert!(parse(&good, PayloadMode::Bytes).is_ok());
    let bad = |f: &dyn Fn(&mut Vec<u8>), mode| {
        let mut p = good.clone();
        f(&mut p);
        parse(&p, mode).unwrap_err()
    };
    use PayloadMode::{Bytes, Virtual};
    assert_eq!(bad(&|p| p[0] = 2, Bytes), Error::BadVersion);
    assert_eq!(bad(&|p| p[0] = 0, Bytes), Error::BadVersion);
    assert_eq!(bad(&|p| p[1] = 0, Bytes), Error::BadOpcode);
    assert_eq!(bad(&|p| p[1] = 11, Bytes), Error::BadOpcode);
    assert_eq!(bad(&|p| p[2] = 0x80, Bytes), Error::BadFlags);
    assert_eq!(
        bad(&|p| p[3] &= !0x10, Bytes),
        Error::BadFlags,
        "hops, INT clear"
    );
    assert_eq!(bad(&|p| p[19] += 1, Bytes), Error::BadLength, "hdr_len");
    assert_eq!(bad(&|p| p[19] -= 1, Bytes), Error::BadLength, "hdr_len");
    assert_eq!(bad(&|p| p.push(0), Bytes), Error::BadLength, "extra byte");
    assert_eq!(bad(&|p| p.truncate(p.len() - 1), Bytes), Error::Truncated);
    assert_eq!(
        bad(&|p| p[23] = 5, Bytes),
        Error::BadField,
        "past message end"
    );
    assert_eq!(bad(&|p| p[32 + 12] = 2, Bytes), Error::BadField, "kind");
    assert_eq!(bad(&|p| p[32 + 13] = 3, Bytes), Error::BadField, "dflags");
    assert_eq!(bad(&|p| p[32 + 14] = 9, Bytes), Error::TooManyHops);
    assert_eq!(
        bad(&|p| p[32 + 14] = 2, Bytes),
        Error::BadLength,
        "int_count"
    );
    assert_eq!(bad(&|p| p[32 + 15] = 1, Bytes), Error::BadField, "reserved");
    assert_eq!(
        bad(&|p| p[3] |= 0x04, Bytes),
        Error::BadLength,
        "trimmed with payload"
    );
    assert_eq!(
        bad(&|_| {}, Virtual),
        Error::BadLength,
        "virtual with payload"
    );

    let hdr = &good[..good.len() - 4];
    assert_eq!(parse(hdr, Bytes), Err(Error::Truncated));
    let v = parse(hdr, Virtual).unwrap();
    assert_eq!(v.header, data_header());
    assert!(v.payload.is_empty());
    let mut trimmed = hdr.to_vec();
    trimmed[3] |= 0x04;
    let t = parse(&trimmed, Bytes).unwrap();
    assert!(t.payload.is_empty());
    assert_eq!(t.header.common.payload_len, 4);

    for n in 0..good.len() {
        assert!(parse(&good[..n], Bytes).is_err(), "{n}");
        assert!(
            parse(&good[..n.min(hdr.len() - 1)], Virtual).is_err(),
            "{n}"
        );
    }
}

#[test]
fn parse_rejects_bad_ack_and_control_fields() {
    let ack = common_bytes(2, 0, 32 + 32, 0);
    let mut p = ack.clone();
    p.extend_from_slice(&[0; 32]);
    assert!(parse(&p, PayloadMode::Bytes).is_ok());
    let mut q = p.clone();
    q[32 + 28] = MAX_SACK_WORDS as u8 + 1; // sack_len
    assert_eq!(parse(&q, PayloadMode::Bytes), Err(Error::TooManySackWords));
    let mut q = p.clone();
    q[32 + 29] = 9; // int_count
    assert_eq!(parse(&q, PayloadMode::Bytes), Err(Error::TooManyHops));
    let mut q = p.clone();
    q[32 + 30] = 1; // reserved
    assert_eq!(parse(&q, PayloadMode::Bytes), Err(Error::BadField));
    let mut q = p.clone();
    q[32 + 28] = 1; // one SACK word announced, not carried
    assert!(parse(&q, PayloadMode::Bytes).is_err());
    let mut q = p.clone();
    q[23] = 1; // payload_len on an ACK
    assert_eq!(parse(&q, PayloadMode::Bytes), Err(Error::BadLength));
    let mut q = p.clone();
    q[3] = 0x10; // INT on an ACK
    assert_eq!(parse(&q, PayloadMode::Bytes), Err(Error::BadFlags));

    let mut nack = common_bytes(3, 0, 56, 0);
    nack.extend_from_slice(&[0; 24]);
    assert_eq!(
        parse(&nack, PayloadMode::Bytes),
        Err(Error::BadField),
        "reason 0"
    );
    nack[32 + 8] = 8;
    assert_eq!(
        parse(&nack, PayloadMode::Bytes),
        Err(Error::BadField),
        "reason 8"
    );
    nack[32 + 8] = 7;
    assert!(parse(&nack, PayloadMode::Bytes).is_ok());
    nack[32 + 20] = 1;
    assert_eq!(
        parse(&nack, PayloadMode::Bytes),
        Err(Error::BadField),
        "reserved"
    );

    let mut syn = common_bytes(4, 0, 72, 0);
    syn.extend(handshake_bytes([0; 8]));
    assert!(parse(&syn, PayloadMode::Bytes).is_ok());
    syn[32 + 34] = 2;
    assert_eq!(
        parse(&syn, PayloadMode::Bytes),
        Err(Error::BadField),
        "mode"
    );

    let mut close = common_bytes(7, 0, 40, 0);
    close.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]);
    assert_eq!(
        parse(&close, PayloadMode::Bytes),
        Err(Error::BadField),
        "reserved"
    );

    let cnp = common_bytes(8, 0x0001, 32, 0);
    assert_eq!(
        parse(&cnp, PayloadMode::Bytes),
        Err(Error::BadFlags),
        "ACK_REQ on CNP"
    );
    let cnp = common_bytes(8, 0, 40, 0);
    assert_eq!(
        parse(&cnp, PayloadMode::Virtual),
        Err(Error::BadLength),
        "hdr_len"
    );
}

#[test]
fn trim_cuts_the_payload_and_keeps_its_length() {
    let mut p = data_packet();
    let n = trim(&mut p).unwrap();
    assert_eq!(n, p.len() - 4);
    let t = parse(&p[..n], PayloadMode::Bytes).unwrap();
    let mut want = data_header();
    want.common.flags.set(Flags::TRIMMED, true);
    assert_eq!(t.header, want);
    assert!(t.payload.is_empty());
    assert_eq!(t.header.common.payload_len, 4);

    // Trimming a trimmed packet changes nothing.
    let mut again = p[..n].to_vec();
    assert_eq!(trim(&mut again), Ok(n));
    assert_eq!(again, &p[..n]);
}

#[test]
fn trim_rejects_non_data_and_bad_packets() {
    let mut cnp = common_bytes(8, 0, 32, 0);
    assert_eq!(trim(&mut cnp), Err(Error::BadOpcode));
    let mut hdr_only = data_packet();
    hdr_only.truncate(hdr_only.len() - 4);
    let before = hdr_only.clone();
    assert_eq!(trim(&mut hdr_only), Err(Error::Truncated));
    assert_eq!(hdr_only, before, "untouched on error");
    assert_eq!(trim(&mut []), Err(Error::Truncated));
}

#[test]
fn errors_display() {
    assert_eq!(Error::Truncated.to_string(), "packet truncated");
    let e: &dyn core::error::Error = &Error::BadField;
    assert!(!e.to_string().is_empty());
}
