//! Parameter vectors of the shipped example programs (`examples/cc/`), from their native
//! twins' parameters: the order and units the programs read (`WEIR_CC_PARAM_NAMES` in each
//! `.c` file). Used to run an example with the same configuration as a built-in — by the
//! equivalence tests, the benchmarks, and anyone reloading an example's parameters.

use weir_congestion::DcqcnParams;
use weir_congestion::swift::SwiftFixed;

/// `examples/cc/dcqcn.c`'s parameters for `p` (times in ps, rates in bit/s, α in Q32).
pub fn dcqcn(p: &DcqcnParams) -> Vec<u64> {
    vec![
        u64::from(p.dce_tcp_g),
        p.dce_tcp_rtt.as_ps(),
        p.initial_alpha_q32(),
        u64::from(p.rpg_gd),
        u64::from(p.rpg_min_dec_fac),
        p.rpg_min_rate.bps(),
        p.rate_reduce_monitor_period.as_ps(),
        p.rpg_time_reset.as_ps(),
        p.rpg_byte_reset,
        u64::from(p.rpg_threshold),
        p.rpg_ai_rate.bps(),
        p.rpg_hai_rate.bps(),
        u64::from(p.clamp_tgt_rate),
        p.np_min_time_between_cnps.as_ps(),
        u64::from(p.trim_as_cnp),
        u64::from(p.loss_as_cnp),
    ]
}

/// `examples/cc/swift.c`'s parameters: the native controller's integer constants
/// ([`weir_congestion::Swift::fixed`]), which depend on the path's MTU and line rate.
pub fn swift(k: &SwiftFixed) -> Vec<u64> {
    vec![
        k.mtu,
        k.line_bps,
        k.base_target_ns,
        k.per_hop_ns,
        k.hops,
        k.fs_range_ns,
        k.fs_inv_lo,
        k.fs_inv_hi,
        k.host_target_ns,
        k.ai_q,
        k.beta_q,
        k.mdf_q,
        k.min_cwnd_q,
        k.max_cwnd_q,
        k.init_cwnd_q,
        u64::from(k.retx_reset),
    ]
}
