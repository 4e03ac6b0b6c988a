/* SPDX-License-Identifier: Apache-2.0 */
/*
 * swift.c -- Swift (Kumar et al., SIGCOMM 2020) as a Weir eBPF policy: the eBPF twin of
 * congestion/src/swift.rs, which documents the law and its exact integer form ("Fixed-point
 * representation"); this file follows that description step by step and computes the same
 * windows and rates bit for bit (policy/tests/equivalence.rs checks it after every event).
 *
 * Windows are Q16 packets (65536 = one packet of `mtu` bytes), gains Q16, delays ns. The
 * constants come precomputed from the native controller (`Swift::fixed()`), as parameters.
 *
 * Build: clang -O2 -target bpf -c swift.c -o swift.o
 */
#include "weir_cc.h"

/* Parameters: the fields of `SwiftFixed`, in this order. */
enum {
	P_MTU = 0,            /* bytes per packet, in [1, 2^20] */
	P_LINE_BPS = 1,       /* line rate, >= 1 */
	P_BASE_TARGET_NS = 2, /* fabric base target */
	P_PER_HOP_NS = 3,     /* target per hop */
	P_HOPS = 4,           /* hop count without INT, <= 255 */
	P_FS_RANGE_NS = 5,    /* flow-scaling range */
	P_FS_INV_LO = 6,      /* inv(fs_min_cwnd) */
	P_FS_INV_HI = 7,      /* inv(fs_max_cwnd) <= inv_lo */
	P_HOST_TARGET_NS = 8, /* endpoint target */
	P_AI_Q = 9,           /* additive increment, Q16 */
	P_BETA_Q = 10,        /* beta, Q16 */
	P_MDF_Q = 11,         /* max_mdf, Q16 */
	P_MIN_CWND_Q = 12,
	P_MAX_CWND_Q = 13,
	P_INIT_CWND_Q = 14,
	P_RETX_RESET = 15,
};

/* Defaults: Swift::fixed() of SwiftParams::default() for a 4096-byte MTU at 100 Gb/s
 * (policy/tests/equivalence.rs checks they stay equal); other paths need their own values. */
WEIR_CC_PARAM_NAMES("mtu=4096\0line_bps=100000000000\0base_target_ns=25000\0per_hop_ns=1000\0"
		    "hops=1\0fs_range_ns=100000\0fs_inv_lo=207246\0fs_inv_hi=4096\0"
		    "host_target_ns=100000\0ai_q=65536\0beta_q=52429\0mdf_q=32768\0min_cwnd_q=655\0"
		    "max_cwnd_q=16777216\0init_cwnd_q=2097152\0retx_reset=3\0");

#define ONE (1ULL << 16)
#define MAX_CWND_Q (1ULL << 36)
#define MAX_ACKED_Q (1ULL << 32)
#define MAX_NS ((1ULL << 32) - 1)

/* Straight-line repetition (the verifier refuses loops). */
#define REP4(m, b) m(b) m((b) + 1) m((b) + 2) m((b) + 3)
#define REP16(m, b) REP4(m, b) REP4(m, (b) + 4) REP4(m, (b) + 8) REP4(m, (b) + 12)

/* Per-flow state (policy/tests/equivalence.rs reads the windows and counters). */
struct swift_state {
	weir_u64 fcwnd;             /*  0: fabric window, Q16 */
	weir_u64 ecwnd;             /*  8: endpoint window, Q16 */
	weir_u64 f_last;            /* 16: fabric window's last decrease (if f_decreased) */
	weir_u64 e_last;            /* 24 */
	weir_u64 srtt;              /* 32: ns, >= 1 */
	weir_u64 now;               /* 40 */
	weir_u64 decreases;         /* 48 */
	weir_u64 loss_decreases;    /* 56 */
	weir_u64 timeout_decreases; /* 64 */
	weir_u64 resets;            /* 72 */
	weir_u32 retx;              /* 80 */
	weir_u8 f_decreased;        /* 84 */
	weir_u8 e_decreased;        /* 85 */
};

struct k {
	weir_u64 mtu, line, base_target, per_hop, hops, fs_range, fs_inv_lo, fs_inv_hi;
	weir_u64 host_target, ai, beta, mdf, min_cwnd, max_cwnd, init_cwnd, retx_reset;
};

static __always_inline weir_u64 min64(weir_u64 a, weir_u64 b)
{
	return a < b ? a : b;
}

static __always_inline weir_u64 max64(weir_u64 a, weir_u64 b)
{
	return a > b ? a : b;
}

static __always_inline weir_u64 clamp64(weir_u64 x, weir_u64 lo, weir_u64 hi)
{
	return max64(min64(x, hi), lo);
}

static __always_inline weir_u64 sat_add(weir_u64 a, weir_u64 b)
{
	weir_u64 s = a + b;
	return s < a ? WEIR_CC_OPAQUE(~0ULL) : s;
}

static __always_inline weir_u64 sat_mul(weir_u64 a, weir_u64 b)
{
	if (a == 0)
		return 0;
	weir_u64 limit = WEIR_CC_OPAQUE(~0ULL / a);
	return b > limit ? WEIR_CC_OPAQUE(~0ULL) : a * b;
}

/* A duration in ps as whole ns, at most 2^32 - 1 (swift.rs: to_ns). */
static __always_inline weir_u64 to_ns(weir_u64 ps)
{
	return min64(ps / 1000, MAX_NS);
}

/* Floor of the square root of x < 2^54, digit by digit (swift.rs: isqrt). */
static __always_inline weir_u64 isqrt(weir_u64 x)
{
	weir_u64 rem = x;
	weir_u64 root = 0;
	/* Bit pairs from 2^52 down; while the bit exceeds x nothing changes (root stays 0). */
#define DIGIT(i)                                               \
	{                                                      \
		weir_u64 bit = 1ULL << (52 - 2 * (i));         \
		if (bit <= x && rem >= root + bit) {           \
			rem -= root + bit;                     \
			root = (root >> 1) + bit;              \
		} else {                                       \
			root >>= 1;                            \
		}                                              \
	}
	REP16(DIGIT, 0) REP4(DIGIT, 16) REP4(DIGIT, 20) DIGIT(24) DIGIT(25) DIGIT(26)
#undef DIGIT
	return root;
}

/* 1/sqrt(c) in Q16 for a Q16 window (swift.rs: inv_sqrt). */
static __always_inline weir_u64 inv_sqrt(weir_u64 c_q)
{
	weir_u64 c = clamp64(c_q, 1, MAX_CWND_Q);
	return (1ULL << 32) / isqrt(c << 16);
}

/* Swift section "Scaling the target delay": base + hops*h + fs(fcwnd). */
static __always_inline weir_u64 target_ns(const struct k *k, weir_u64 hops, weir_u64 cwnd_q)
{
	weir_u64 inv = inv_sqrt(cwnd_q);
	weir_u64 fs;
	if (inv <= k->fs_inv_hi)
		fs = 0;
	else if (inv >= k->fs_inv_lo)
		fs = k->fs_range;
	else
		fs = k->fs_range * (inv - k->fs_inv_hi) / (k->fs_inv_lo - k->fs_inv_hi);
	return sat_add(sat_add(k->base_target, sat_mul(hops, k->per_hop)), fs);
}

/* At most one decrease per smoothed RTT (Algorithm 1: can_decrease). */
static __always_inline int can_decrease(const struct swift_state *s, int host, weir_u64 now)
{
	int decreased = host ? s->e_decreased : s->f_decreased;
	weir_u64 last = host ? s->e_last : s->f_last;
	if (!decreased)
		return 1;
	weir_u64 since = now > last ? now - last : 0;
	return since >= sat_mul(s->srtt, 1000);
}

/* Clamps and stores a window; records a decrease. Returns whether it decreased. */
static __always_inline int store(struct swift_state *s, const struct k *k, int host, weir_u64 c,
				 weir_u64 before, weir_u64 now)
{
	c = clamp64(c, k->min_cwnd, k->max_cwnd);
	int decreased = c < before;
	if (host) {
		s->ecwnd = c;
		if (decreased) {
			s->e_decreased = 1;
			s->e_last = now;
		}
	} else {
		s->fcwnd = c;
		if (decreased) {
			s->f_decreased = 1;
			s->f_last = now;
		}
	}
	return decreased;
}

/* Algorithm 1: additive increase below the target, bounded multiplicative decrease above. */
static __always_inline void aimd(struct swift_state *s, const struct k *k, int host,
				 weir_u64 delay, weir_u64 target, weir_u64 acked_q, weir_u64 now)
{
	weir_u64 before = host ? s->ecwnd : s->fcwnd;
	weir_u64 c = before;
	if (delay < target) {
		weir_u64 inc = c >= ONE ? k->ai * acked_q / c : k->ai * acked_q / ONE;
		c = sat_add(c, inc);
	} else if (can_decrease(s, host, now)) {
		weir_u64 dec = delay == 0 ? 0 : k->beta * (delay - target) / delay;
		dec = min64(dec, k->mdf);
		c = c * (ONE - dec) / ONE;
		if (c < before)
			s->decreases += 1;
	}
	store(s, k, host, c, before, now);
}

/* Fast recovery / timeout cut by max_mdf, under the guard. */
static __always_inline int cut_max(struct swift_state *s, const struct k *k, int host,
				   weir_u64 now)
{
	if (!can_decrease(s, host, now))
		return 0;
	weir_u64 before = host ? s->ecwnd : s->fcwnd;
	return store(s, k, host, before * (ONE - k->mdf) / ONE, before, now);
}

static __always_inline void load_k(const struct weir_cc_ctx *ctx, struct k *k)
{
	k->mtu = ctx->params[P_MTU];
	k->line = ctx->params[P_LINE_BPS];
	k->base_target = ctx->params[P_BASE_TARGET_NS];
	k->per_hop = ctx->params[P_PER_HOP_NS];
	k->hops = ctx->params[P_HOPS];
	k->fs_range = ctx->params[P_FS_RANGE_NS];
	k->fs_inv_lo = ctx->params[P_FS_INV_LO];
	k->fs_inv_hi = ctx->params[P_FS_INV_HI];
	k->host_target = ctx->params[P_HOST_TARGET_NS];
	k->ai = ctx->params[P_AI_Q];
	k->beta = ctx->params[P_BETA_Q];
	k->mdf = ctx->params[P_MDF_Q];
	k->min_cwnd = ctx->params[P_MIN_CWND_Q];
	k->max_cwnd = ctx->params[P_MAX_CWND_Q];
	k->init_cwnd = ctx->params[P_INIT_CWND_Q];
	k->retx_reset = ctx->params[P_RETX_RESET];
}

static __always_inline void on_feedback(struct weir_cc_ctx *ctx, struct swift_state *s,
					const struct k *k)
{
	/* 1. */
	weir_u64 now = max64(ctx->now_ps, s->now);
	s->now = now;
	weir_u32 flags = ctx->fb_flags;
	int has_rtt = (flags & WEIR_CC_FB_RTT) != 0;
	weir_u64 rtt = to_ns(ctx->fb_rtt_ps);
	/* 2. */
	if (has_rtt)
		s->srtt = max64((3 * s->srtt + rtt) / 4, 1);
	/* 3. */
	weir_u64 acked_bytes = ctx->fb_acked_bytes;
	weir_u64 acked_packets = ctx->fb_acked_packets;
	weir_u64 acked_q;
	if (acked_bytes > 0)
		acked_q = min64(min64(acked_bytes, 1ULL << 40) * ONE / k->mtu, MAX_ACKED_Q);
	else
		acked_q = min64(acked_packets * ONE, MAX_ACKED_Q);
	if (acked_bytes > 0 || acked_packets > 0)
		s->retx = 0;
	/* 4. Swift section "Separating fabric and endpoint congestion". */
	if (has_rtt) {
		int has_host = (flags & WEIR_CC_FB_HOST_DELAY) != 0;
		weir_u64 host_ns = has_host ? to_ns(ctx->fb_host_delay_ps) : 0;
		weir_u64 fabric_ns = rtt > host_ns ? rtt - host_ns : 0;
		weir_u64 n = ctx->fb_hops_total;
		weir_u64 hops = n == 0 ? k->hops : min64(n, 255);
		weir_u64 target = target_ns(k, hops, s->fcwnd);
		aimd(s, k, 0, fabric_ns, target, acked_q, now);
		if (has_host)
			aimd(s, k, 1, host_ns, k->host_target, acked_q, now);
	}
	/* 5. */
	weir_u8 loss = ctx->fb_loss;
	int cut = 0;
	if (loss == WEIR_CC_LOSS_DETECTED || loss == WEIR_CC_LOSS_TRIMMED ||
	    loss == WEIR_CC_LOSS_TRIMMED_LAST_HOP) {
		s->retx = 0;
		cut = cut_max(s, k, 0, now);
	} else if (loss == WEIR_CC_LOSS_RECEIVER_NO_RESOURCES) {
		cut = cut_max(s, k, 1, now);
	}
	if (cut)
		s->loss_decreases += 1;
	/* 6. */
	if (flags & WEIR_CC_FB_RTO) {
		if (s->retx != 0xffffffffu)
			s->retx += 1;
		if (s->retx >= k->retx_reset) {
			if (store(s, k, 0, k->min_cwnd, s->fcwnd, now))
				s->timeout_decreases += 1;
			s->resets += 1;
		} else if (cut_max(s, k, 0, now)) {
			s->timeout_decreases += 1;
		}
	}
}

WEIR_CC_PROGRAM int swift(struct weir_cc_ctx *ctx)
{
	struct swift_state *s = WEIR_CC_STATE(ctx, struct swift_state);
	struct k k;
	load_k(ctx, &k);
	weir_u32 event = ctx->event;
	if (event == WEIR_CC_EV_INIT) {
		s->fcwnd = k.init_cwnd;
		s->ecwnd = k.max_cwnd;
		weir_u64 base = ctx->base_rtt_ps;
		s->srtt = max64(base != 0 ? to_ns(base) : k.base_target, 1);
		s->now = ctx->now_ps;
	} else if (event == WEIR_CC_EV_FEEDBACK) {
		on_feedback(ctx, s, &k);
	} else if (event == WEIR_CC_EV_TIMEOUT) {
		s->now = max64(s->now, ctx->now_ps);
	}
	/* Limits: the window, or one packet and a pacing rate below one packet (Swift section
	 * "Large-scale incast"). */
	weir_u64 c = min64(s->fcwnd, s->ecwnd);
	if (c >= ONE) {
		ctx->out_window = c * k.mtu / ONE;
		ctx->out_rate_bps = 0;
	} else {
		ctx->out_window = k.mtu;
		weir_u64 bps = c * k.mtu * 15625000 / (s->srtt * 128);
		ctx->out_rate_bps = clamp64(bps, 1, k.line);
	}
	ctx->out_timer_ps = 0;
	ctx->out_path_hint = 0;
	return 0;
}
