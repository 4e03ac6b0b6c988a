//! Property tests: round trips for every opcode in both payload modes, canonical encoding,
//! and parse robustness on arbitrary, mutated and truncated input.

use proptest::collection::vec;
use proptest::prelude::*;
use weir_wire::*;

const OPCODES: [Opcode; 10] = [
    Opcode::Data,
    Opcode::Ack,
    Opcode::Nack,
    Opcode::Syn,
    Opcode::SynAck,
    Opcode::Probe,
    Opcode::Close,
    Opcode::Cnp,
    Opcode::Credit,
    Opcode::CreditReq,
];

fn int_list() -> impl Strategy<Value = IntList> {
    vec(
        (any::<u32>(), any::<u32>(), any::<u64>(), any::<u64>()).prop_map(|(q, r, tx, ts)| {
            IntHop {
                qlen: q,
                rate_mbps: r,
                tx_bytes: tx,
                ts_ns: ts,
            }
        }),
        0..=MAX_INT_HOPS,
    )
    .prop_map(|hops| IntList::from_slice(&hops).unwrap())
}

/// The common header of `opcode` with random allowed flags.
fn common(opcode: Opcode) -> impl Strategy<Value = Common> {
    (
        any::<u16>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u16>(),
        any::<u64>(),
    )
        .prop_map(move |(f, src_conn, dst_conn, psn, entropy, token)| Common {
            opcode,
            flags: Flags(f & opcode.allowed_flags().0),
            src_conn,
            dst_conn,
            psn,
            entropy,
            payload_len: 0,
            token,
        })
}

fn nack_reason() -> impl Strategy<Value = NackReason> {
    (1u8..=7).prop_map(|v| NackReason::try_from(v).unwrap())
}

/// A valid data header for a payload of `payload_len` bytes.
fn data(payload_len: u32) -> impl Strategy<Value = Header> {
    (
        common(Opcode::Data),
        (any::<u32>(), any::<u32>(), any::<u32>()),
        any::<bool>(),
        any::<bool>(),
        (any::<u64>(), any::<u32>(), any::<u32>(), any::<u64>()),
        int_list(),
    )
        .prop_map(
            move |(mut common, (msg_id, a, b), write, notify, (tag, rkey, imm, tx_ts), int)| {
                common.payload_len = payload_len;
                if !int.is_empty() {
                    common.flags.set(Flags::INT, true);
                }
                let p = u64::from(payload_len);
                let off = u64::from(a) % (u64::from(u32::MAX) - p + 1);
                let room = u64::from(u32::MAX) - off - p;
                let len = off + p + u64::from(b) % (room + 1);
                Header {
                    common,
                    ext: Ext::Data(DataExt {
                        msg_id,
                        msg_len: len as u32,
                        msg_offset: off as u32,
                        kind: if write { MsgKind::Write } else { MsgKind::Send },
                        notify,
                        tag,
                        rkey,
                        imm,
                        tx_ts,
                    }),
                    int,
                }
            },
        )
}

/// A valid header of `opcode` other than data.
fn control(opcode: Opcode) -> BoxedStrategy<Header> {
    let ext: BoxedStrategy<Ext> = match opcode {
        Opcode::Data => unreachable!(),
        Opcode::Ack => (
            (any::<u32>(), any::<u32>(), any::<u32>()),
            (any::<u32>(), any::<u32>(), any::<u64>()),
            (any::<[u64; MAX_SACK_WORDS]>(), 0..=MAX_SACK_WORDS as u8),
        )
            .prop_map(
                |((cum, base, rwnd), (ecn, delay, echo), (mut words, len))| {
                    words[usize::from(len)..].fill(0);
                    Ext::Ack(AckExt {
                        cum_psn: cum,
                        sack: Sack { base, words, len },
                        rwnd_psn: rwnd,
                        ecn_bytes: ecn,
                        rx_delay_ns: delay,
                        echo_ts: echo,
                    })
                },
            )
            .boxed(),
        Opcode::Nack => (any::<u32>(), any::<u32>(), nack_reason(), any::<u64>())
            .prop_map(|(cum_psn, nack_psn, reason, echo_ts)| {
                Ext::Nack(NackExt {
                    cum_psn,
                    nack_psn,
                    reason,
                    echo_ts,
                })
            })
            .boxed(),
        Opcode::Syn | Opcode::SynAck => (
            (any::<u64>(), any::<u64>(), any::<u64>()),
            (any::<u32>(), any::<u32>(), any::<u16>()),
            (any::<bool>(), any::<u32>()),
        )
            .prop_map(
                |((nonce, echo_nonce, user_data), (initial_psn, max_payload, paths), (gbn, rw))| {
                    Ext::Handshake(HandshakeExt {
                        nonce,
                        echo_nonce,
                        user_data,
                        initial_psn,
                        max_payload,
                        paths,
                        mode: if gbn { Mode::GoBackN } else { Mode::Weir },
                        rwnd_pkts: rw,
                        rx_ports: 0,
                    })
                },
            )
            .boxed(),
        Opcode::Probe => any::<u64>()
            .prop_map(|tx_ts| Ext::Probe(ProbeExt { tx_ts }))
            .boxed(),
        Opcode::Close => any::<u32>()
            .prop_map(|reason| Ext::Close(CloseExt { reason }))
            .boxed(),
        Opcode::Cnp => Just(Ext::None).boxed(),
        Opcode::Credit => any::<u64>()
            .prop_map(|credit| Ext::Credit(CreditExt { credit }))
            .boxed(),
        Opcode::CreditReq => (any::<u64>(), any::<u64>())
            .prop_map(|(demand, granted)| Ext::CreditReq(CreditReqExt { demand, granted }))
            .boxed(),
    };
    let int = if opcode == Opcode::Ack {
        int_list().boxed()
    } else {
        Just(IntList::new()).boxed()
    };
    (common(opcode), ext, int)
        .prop_map(|(common, ext, int)| Header { common, ext, int })
        .boxed()
}

/// A valid header of any opcode, with the payload bytes it describes (empty except for data).
fn packet() -> impl Strategy<Value = (Header, Vec<u8>)> {
    let data = vec(any::<u8>(), 0..1500).prop_flat_map(|payload| {
        let n = payload.len() as u32;
        (data(n), Just(payload))
    });
    let control = proptest::sample::select(&OPCODES[1..])
        .prop_flat_map(control)
        .prop_map(|h| (h, Vec::new()));
    prop_oneof![data, control]
}

/// The bytes of `h` followed by the payload as `mode` carries it.
fn encode(h: &Header, payload: &[u8], mode: PayloadMode) -> Vec<u8> {
    let mut buf = vec![0u8; MAX_HEADER_LEN];
    let n = h.emit(&mut buf).unwrap();
    assert_eq!(n, h.len());
    buf.truncate(n);
    if mode == PayloadMode::Bytes && !h.common.flags.contains(Flags::TRIMMED) {
        buf.extend_from_slice(payload);
    }
    buf
}

/// If `buf` parses, emitting the header reproduces its header bytes exactly and the result
/// parses to the same header and payload.
fn check_canonical(buf: &[u8], mode: PayloadMode) {
    let Ok(p) = parse(buf, mode) else { return };
    let mut out = [0u8; MAX_HEADER_LEN];
    let n = p.header.emit(&mut out).expect("a parsed header emits");
    assert_eq!(n, p.header_len);
    assert_eq!(&out[..n], &buf[..n]);
    let mut again = out[..n].to_vec();
    again.extend_from_slice(p.payload);
    let q = parse(&again, mode).expect("re-emitted packet parses");
    assert_eq!(q.header, p.header);
    assert_eq!(q.payload, p.payload);
}

proptest! {
    #[test]
    fn round_trip_bytes((h, payload) in packet()) {
        let buf = encode(&h, &payload, PayloadMode::Bytes);
        let p = parse(&buf, PayloadMode::Bytes).unwrap();
        prop_assert_eq!(p.header, h);
        prop_assert_eq!(p.header_len, h.len());
        if h.common.flags.contains(Flags::TRIMMED) {
            prop_assert!(p.payload.is_empty());
        } else {
            prop_assert_eq!(p.payload, &payload[..]);
        }
        check_canonical(&buf, PayloadMode::Bytes);
    }

    #[test]
    fn round_trip_virtual((h, payload) in packet(), big in any::<u32>()) {
        let buf = encode(&h, &payload, PayloadMode::Virtual);
        let p = parse(&buf, PayloadMode::Virtual).unwrap();
        prop_assert_eq!(p.header, h);
        prop_assert!(p.payload.is_empty());
        prop_assert_eq!(p.header_len, buf.len());
        // Virtual payloads may be far larger than any buffer.
        if let Ext::Data(mut d) = h.ext {
            let mut h = h;
            h.common.payload_len = big;
            d.msg_offset = 0;
            d.msg_len = big;
            h.ext = Ext::Data(d);
            let buf = encode(&h, &[], PayloadMode::Virtual);
            prop_assert_eq!(parse(&buf, PayloadMode::Virtual).unwrap().header, h);
        }
    }

    #[test]
    fn every_truncation_fails((h, payload) in packet()) {
        for mode in [PayloadMode::Bytes, PayloadMode::Virtual] {
            let buf = encode(&h, &payload, mode);
            for n in 0..buf.len() {
                prop_assert!(parse(&buf[..n], mode).is_err(), "{:?} {}", mode, n);
            }
            let mut longer = buf.clone();
            longer.push(0);
            prop_assert_eq!(parse(&longer, mode).unwrap_err(), Error::BadLength);
        }
    }

    #[test]
    fn mutations_never_panic(
        (h, payload) in packet(),
        at in any::<prop::sample::Index>(),
        xor in 1..=u8::MAX,
        cut in any::<prop::sample::Index>(),
    ) {
        for mode in [PayloadMode::Bytes, PayloadMode::Virtual] {
            let mut buf = encode(&h, &payload, mode);
            let i = at.index(buf.len());
            buf[i] ^= xor;
            check_canonical(&buf, mode);
            let n = cut.index(buf.len() + 1);
            check_canonical(&buf[..n], mode);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(buf in vec(any::<u8>(), 0..400)) {
        check_canonical(&buf, PayloadMode::Bytes);
        check_canonical(&buf, PayloadMode::Virtual);
    }

    #[test]
    fn plausible_bytes_never_panic(
        mut buf in vec(any::<u8>(), COMMON_LEN..400),
        op in 1u8..=10,
        small in any::<[u8; 4]>(),
    ) {
        // Get past the version and opcode checks, keep counts and flags small (the low byte
        // holds every defined flag) and the length field right often enough to reach the
        // deeper checks.
        buf[0] = VERSION;
        buf[1] = op;
        buf[2] = 0;
        let len = buf.len() as u16;
        if small[0] & 1 == 0 {
            buf[18..20].copy_from_slice(&len.to_be_bytes());
        }
        if small[1] & 1 == 0 {
            buf[20..24].fill(0);
        }
        if let Some(b) = buf.get_mut(COMMON_LEN + 14) {
            *b = small[2] % 10;
        }
        if let Some(b) = buf.get_mut(COMMON_LEN + 28) {
            *b = small[3] % 6;
        }
        check_canonical(&buf, PayloadMode::Bytes);
        check_canonical(&buf, PayloadMode::Virtual);
        let mut t = buf.clone();
        let _ = trim(&mut t);
    }

    #[test]
    fn trim_keeps_the_header((h, payload) in packet()) {
        let mut buf = encode(&h, &payload, PayloadMode::Bytes);
        let r = trim(&mut buf);
        if h.common.opcode != Opcode::Data {
            prop_assert_eq!(r, Err(Error::BadOpcode));
            return Ok(());
        }
        let n = r.unwrap();
        prop_assert_eq!(n, h.len());
        let p = parse(&buf[..n], PayloadMode::Bytes).unwrap();
        let mut want = h;
        want.common.flags.set(Flags::TRIMMED, true);
        prop_assert_eq!(p.header, want);
        prop_assert!(p.payload.is_empty());
    }
}
