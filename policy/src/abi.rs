//! The program ABI (version 1): the context record a policy program sees, byte for byte the
//! `struct weir_cc_ctx` of `examples/cc/weir_cc.h`.
//!
//! Contract: [`Context`] is `repr(C)`, 936 bytes, every field at the offset the header states
//! (checked at compile time below and by `_Static_assert`s in the header). A program gets a
//! pointer to one context per flow in r1, may read all of it and may write only the outputs
//! and the state, i.e. the bytes in [`WRITABLE_START`, [`CONTEXT_SIZE`]); the verifier enforces
//! this. Times are picoseconds, rates bit/s, sizes bytes; everything is an integer.

use core::mem::{offset_of, size_of};

/// Version of this ABI, in [`Context::abi_version`].
pub const ABI_VERSION: u32 = 1;
/// INT records the context holds.
pub const MAX_HOPS: usize = 8;
/// Parameters the context holds.
pub const MAX_PARAMS: usize = 32;
/// Bytes of per-flow state.
pub const STATE_BYTES: usize = 256;
/// Size of the context in bytes.
pub const CONTEXT_SIZE: usize = 936;
/// First byte a program may write (the outputs, then the state).
pub const WRITABLE_START: usize = offset_of!(Context, out_window);

/// Event kinds, [`Context::event`].
pub mod event {
    /// The flow was created; the state is zero.
    pub const INIT: u32 = 0;
    /// A packet was sent.
    pub const SENT: u32 = 1;
    /// Feedback arrived.
    pub const FEEDBACK: u32 = 2;
    /// The program's timer expired.
    pub const TIMEOUT: u32 = 3;
}

/// Loss kinds, [`Context::fb_loss`].
pub mod loss {
    /// No loss.
    pub const NONE: u8 = 0;
    /// Detected from SACK holes.
    pub const DETECTED: u8 = 1;
    /// Trimmed in the fabric.
    pub const TRIMMED: u8 = 2;
    /// Trimmed by the last-hop switch.
    pub const TRIMMED_LAST_HOP: u8 = 3;
    /// The receiver had no room.
    pub const RECEIVER_NO_RESOURCES: u8 = 4;
}

/// Feedback flags, [`Context::fb_flags`].
pub mod fb_flags {
    /// A CNP arrived.
    pub const CNP: u32 = 0x1;
    /// A retransmission timeout fired.
    pub const RTO: u32 = 0x2;
    /// `fb_rtt_ps` holds a sample.
    pub const RTT: u32 = 0x4;
    /// `fb_host_delay_ps` holds the receiver's host delay.
    pub const HOST_DELAY: u32 = 0x8;
}

/// One INT record (`struct weir_cc_hop`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hop {
    /// Egress queue length, bytes.
    pub qlen: u64,
    /// Egress link rate, bit/s.
    pub rate_bps: u64,
    /// Bytes transmitted by the egress port (wrapping).
    pub tx_bytes: u64,
    /// Switch timestamp, ps.
    pub ts_ps: u64,
}

/// The context (`struct weir_cc_ctx`); see the header for each field's meaning.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
#[allow(missing_docs, reason = "one-to-one with the documented C header")]
pub struct Context {
    pub abi_version: u32,
    pub event: u32,
    pub now_ps: u64,
    pub line_rate_bps: u64,
    pub base_rtt_ps: u64,
    pub mtu: u32,
    pub paths: u16,
    pub _pad0: u16,
    pub sent_bytes: u64,
    pub sent_in_flight: u64,
    pub sent_path: u16,
    pub sent_retransmit: u8,
    pub _pad1: [u8; 5],
    pub fb_acked_bytes: u64,
    pub fb_ecn_bytes: u64,
    pub fb_rtt_ps: u64,
    pub fb_host_delay_ps: u64,
    pub fb_lost_bytes: u64,
    pub fb_in_flight: u64,
    pub fb_acked_packets: u32,
    pub fb_flags: u32,
    pub fb_path: u16,
    pub fb_loss: u8,
    pub fb_n_hops: u8,
    pub fb_hops_total: u32,
    pub hops: [Hop; MAX_HOPS],
    pub params: [u64; MAX_PARAMS],
    pub n_params: u32,
    pub params_gen: u32,
    pub out_window: u64,
    pub out_rate_bps: u64,
    pub out_timer_ps: u64,
    pub out_path_hint: u32,
    pub _out_pad: u32,
    pub state: [u8; STATE_BYTES],
}

impl Context {
    /// An all-zero context.
    pub const fn zeroed() -> Self {
        Context {
            abi_version: 0,
            event: 0,
            now_ps: 0,
            line_rate_bps: 0,
            base_rtt_ps: 0,
            mtu: 0,
            paths: 0,
            _pad0: 0,
            sent_bytes: 0,
            sent_in_flight: 0,
            sent_path: 0,
            sent_retransmit: 0,
            _pad1: [0; 5],
            fb_acked_bytes: 0,
            fb_ecn_bytes: 0,
            fb_rtt_ps: 0,
            fb_host_delay_ps: 0,
            fb_lost_bytes: 0,
            fb_in_flight: 0,
            fb_acked_packets: 0,
            fb_flags: 0,
            fb_path: 0,
            fb_loss: 0,
            fb_n_hops: 0,
            fb_hops_total: 0,
            hops: [Hop {
                qlen: 0,
                rate_bps: 0,
                tx_bytes: 0,
                ts_ps: 0,
            }; MAX_HOPS],
            params: [0; MAX_PARAMS],
            n_params: 0,
            params_gen: 0,
            out_window: 0,
            out_rate_bps: 0,
            out_timer_ps: 0,
            out_path_hint: 0,
            _out_pad: 0,
            state: [0; STATE_BYTES],
        }
    }
}

// The layout is the ABI: these are the offsets `weir_cc.h` asserts too.
const _: () = {
    assert!(size_of::<Hop>() == 32);
    assert!(size_of::<Context>() == CONTEXT_SIZE);
    assert!(offset_of!(Context, event) == 4);
    assert!(offset_of!(Context, now_ps) == 8);
    assert!(offset_of!(Context, line_rate_bps) == 16);
    assert!(offset_of!(Context, base_rtt_ps) == 24);
    assert!(offset_of!(Context, mtu) == 32);
    assert!(offset_of!(Context, paths) == 36);
    assert!(offset_of!(Context, sent_bytes) == 40);
    assert!(offset_of!(Context, sent_in_flight) == 48);
    assert!(offset_of!(Context, sent_path) == 56);
    assert!(offset_of!(Context, sent_retransmit) == 58);
    assert!(offset_of!(Context, fb_acked_bytes) == 64);
    assert!(offset_of!(Context, fb_ecn_bytes) == 72);
    assert!(offset_of!(Context, fb_rtt_ps) == 80);
    assert!(offset_of!(Context, fb_host_delay_ps) == 88);
    assert!(offset_of!(Context, fb_lost_bytes) == 96);
    assert!(offset_of!(Context, fb_in_flight) == 104);
    assert!(offset_of!(Context, fb_acked_packets) == 112);
    assert!(offset_of!(Context, fb_flags) == 116);
    assert!(offset_of!(Context, fb_path) == 120);
    assert!(offset_of!(Context, fb_loss) == 122);
    assert!(offset_of!(Context, fb_n_hops) == 123);
    assert!(offset_of!(Context, fb_hops_total) == 124);
    assert!(offset_of!(Context, hops) == 128);
    assert!(offset_of!(Context, params) == 384);
    assert!(offset_of!(Context, n_params) == 640);
    assert!(offset_of!(Context, params_gen) == 644);
    assert!(offset_of!(Context, out_window) == 648);
    assert!(offset_of!(Context, out_rate_bps) == 656);
    assert!(offset_of!(Context, out_timer_ps) == 664);
    assert!(offset_of!(Context, out_path_hint) == 672);
    assert!(offset_of!(Context, state) == 680);
    assert!(WRITABLE_START == 648);
};
