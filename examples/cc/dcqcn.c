/* SPDX-License-Identifier: Apache-2.0 */
/*
 * dcqcn.c -- the DCQCN reaction point (Zhu et al., SIGCOMM 2015) with NVIDIA ConnectX
 * firmware's parameters, as a Weir eBPF policy.
 *
 * This is the eBPF twin of the native controller in congestion/src/dcqcn.rs and computes
 * exactly the same thing, bit for bit (policy/tests/equivalence.rs checks the rate and the
 * timer after every event of long random event sequences). Read the native module's
 * documentation for the law; this file follows it function by function with the same names.
 * Integer arithmetic only: rates in bit/s, times in ps, alpha in Q32 fixed point (2^32 = 1).
 *
 * Build: clang -O2 -target bpf -c dcqcn.c -o dcqcn.o
 */
#include "weir_cc.h"

/* Parameters, in this index order (units: ps, bit/s, bytes, Q10/Q32 fractions, 0/1). */
enum {
	P_DCE_TCP_G = 0,                 /* alpha gain G, 10-bit fixed point (1019) */
	P_DCE_TCP_RTT_PS = 1,            /* alpha period (1 us) */
	P_INITIAL_ALPHA_Q32 = 2,         /* alpha on the first notification (2^32 = 1.0) */
	P_RPG_GD = 3,                    /* alpha-to-cut shift (11: cut by alpha/2) */
	P_RPG_MIN_DEC_FAC = 4,           /* percentage a cut must leave (50) */
	P_RPG_MIN_RATE_BPS = 5,          /* lowest rate (1 Mb/s) */
	P_RATE_REDUCE_MONITOR_PS = 6,    /* at most one cut per period (4 us) */
	P_RPG_TIME_RESET_PS = 7,         /* increase timer T (300 us), 0 = off */
	P_RPG_BYTE_RESET = 8,            /* increase byte counter B (32767), 0 = off */
	P_RPG_THRESHOLD = 9,             /* fast-recovery stages F (1) */
	P_RPG_AI_RATE_BPS = 10,          /* additive step (5 Mb/s) */
	P_RPG_HAI_RATE_BPS = 11,         /* hyper step (50 Mb/s) */
	P_CLAMP_TGT_RATE = 12,           /* 0/1 */
	P_NP_MIN_TIME_BETWEEN_CNPS_PS = 13, /* notification-point pacing of echoes (4 us) */
	P_TRIM_AS_CNP = 14,              /* 0/1 (1) */
	P_LOSS_AS_CNP = 15,              /* 0/1 (0) */
};

/* Defaults: NVIDIA ConnectX firmware's, as DcqcnParams::default() (policy/tests/equivalence.rs
 * checks they stay equal). */
WEIR_CC_PARAM_NAMES("dce_tcp_g=1019\0dce_tcp_rtt_ps=1000000\0initial_alpha_q32=4294967296\0"
		    "rpg_gd=11\0rpg_min_dec_fac=50\0rpg_min_rate_bps=1000000\0"
		    "rate_reduce_monitor_period_ps=4000000\0rpg_time_reset_ps=300000000\0"
		    "rpg_byte_reset=32767\0rpg_threshold=1\0rpg_ai_rate_bps=5000000\0"
		    "rpg_hai_rate_bps=50000000\0clamp_tgt_rate=0\0np_min_time_between_cnps_ps=4000000\0"
		    "trim_as_cnp=1\0loss_as_cnp=0\0");

#define U64_MAX 0xffffffffffffffffULL
#define ALPHA_ONE (1ULL << 32)
/* Straight-line repetition: the verifier refuses loops, and clang does not reliably unroll
 * loops with early exits, so bounded iterations are spelled out with forward gotos. */
#define REP4(m, b) m(b) m((b) + 1) m((b) + 2) m((b) + 3)
#define REP16(m, b) REP4(m, b) REP4(m, (b) + 4) REP4(m, (b) + 8) REP4(m, (b) + 12)

/* Per-flow state (policy/tests/equivalence.rs reads rt, alpha and the counters). */
struct dcqcn_state {
	weir_u64 rc;         /*   0: current rate R_C */
	weir_u64 rt;         /*   8: target rate R_T */
	weir_u64 alpha;      /*  16: Q32 */
	weir_u64 alpha_next; /*  24: end of the current alpha period (if alpha_armed) */
	weir_u64 last_cut;   /*  32: (if has_last_cut) */
	weir_u64 np_last;    /*  40: last accepted notification (if has_np_last) */
	weir_u64 inc_next;   /*  48: next increase timer event (if has_inc_next) */
	weir_u64 t_stage;    /*  56 */
	weir_u64 b_stage;    /*  64 */
	weir_u64 bytes;      /*  72 */
	weir_u64 now;        /*  80: latest time seen */
	weir_u64 cnps;       /*  88 */
	weir_u64 cuts;       /*  96 */
	weir_u64 increases;  /* 104 */
	weir_u8 alpha_armed; /* 112 */
	weir_u8 alpha_cnp;
	weir_u8 has_last_cut;
	weir_u8 cut_pending;
	weir_u8 has_np_last;
	weir_u8 has_inc_next;
};

/* Parameters after the same clamping as Dcqcn::new, read on every event (hot reload). */
struct cfg {
	weir_u64 line, min, gain, alpha_period, init_alpha, gd, keep_pct, monitor;
	weir_u64 time_reset, byte_reset, f, ai, hai, clamp, np_min, trim_as_cnp, loss_as_cnp;
};

enum counter { TIMER, BYTES };

/* x < 2^64 - 1, through a register (see WEIR_CC_OPAQUE in weir_cc.h). */
static __always_inline int below_max(weir_u64 x)
{
	return x < WEIR_CC_OPAQUE(U64_MAX);
}

static __always_inline weir_u64 sat_add(weir_u64 a, weir_u64 b)
{
	weir_u64 s = a + b;
	return s < a ? U64_MAX : s;
}

static __always_inline weir_u64 sat_sub(weir_u64 a, weir_u64 b)
{
	return a > b ? a - b : 0;
}

static __always_inline weir_u64 sat_mul(weir_u64 a, weir_u64 b)
{
	if (a == 0)
		return 0;
	/* Opaque, or clang turns the check into a 128-bit multiply (__multi3), which the BPF
	 * back end cannot emit. */
	weir_u64 limit = WEIR_CC_OPAQUE(U64_MAX / a);
	return b > limit ? U64_MAX : a * b;
}

static __always_inline weir_u64 min64(weir_u64 a, weir_u64 b)
{
	return a < b ? a : b;
}

static __always_inline weir_u64 max64(weir_u64 a, weir_u64 b)
{
	return a > b ? a : b;
}

/* a * b / 2^32 for b <= 2^32, exact (dcqcn.rs: mul_q32). */
static __always_inline weir_u64 mul_q32(weir_u64 a, weir_u64 b)
{
	return (a >> 32) * b + (((a & 0xffffffffULL) * b) >> 32);
}

/* a * pct / 100 for pct <= 100, exact (dcqcn.rs: mul_pct). */
static __always_inline weir_u64 mul_pct(weir_u64 a, weir_u64 pct)
{
	return (a / 100) * pct + (a % 100) * pct / 100;
}

/* (gain / 1024)^k in Q32 (dcqcn.rs: pow_q32). */
static __always_inline weir_u64 pow_q32(weir_u64 gain, weir_u64 k)
{
	if (gain >= 1024 || k == 0)
		return ALPHA_ONE;
	if (k >= (1ULL << 16))
		return 0;
	weir_u64 x = gain << 22;
	weir_u64 acc = ALPHA_ONE;
#define SQUARE(i)                              \
	if (k == 0)                            \
		goto done;                     \
	if (k & 1)                             \
		acc = (acc * x) >> 32;         \
	x = (x * x) >> 32;                     \
	k >>= 1;
	REP16(SQUARE, 0)
#undef SQUARE
done:
	return acc;
}

static __always_inline void load_cfg(const struct weir_cc_ctx *ctx, struct cfg *c)
{
	c->line = max64(ctx->line_rate_bps, 1);
	c->min = min64(max64(ctx->params[P_RPG_MIN_RATE_BPS], 1), c->line);
	c->gain = min64(ctx->params[P_DCE_TCP_G], 1024);
	c->alpha_period = max64(ctx->params[P_DCE_TCP_RTT_PS], 1);
	c->init_alpha = min64(ctx->params[P_INITIAL_ALPHA_Q32], ALPHA_ONE);
	c->gd = ctx->params[P_RPG_GD];
	c->keep_pct = min64(ctx->params[P_RPG_MIN_DEC_FAC], 100);
	c->monitor = ctx->params[P_RATE_REDUCE_MONITOR_PS];
	c->time_reset = ctx->params[P_RPG_TIME_RESET_PS];
	c->byte_reset = ctx->params[P_RPG_BYTE_RESET];
	c->f = ctx->params[P_RPG_THRESHOLD];
	c->ai = ctx->params[P_RPG_AI_RATE_BPS];
	c->hai = ctx->params[P_RPG_HAI_RATE_BPS];
	c->clamp = ctx->params[P_CLAMP_TGT_RATE];
	c->np_min = ctx->params[P_NP_MIN_TIME_BETWEEN_CNPS_PS];
	c->trim_as_cnp = ctx->params[P_TRIM_AS_CNP];
	c->loss_as_cnp = ctx->params[P_LOSS_AS_CNP];
}

/* Applies the alpha updates of every period that ended at or before `at`. */
static __always_inline void advance_alpha(struct dcqcn_state *s, const struct cfg *c,
					  weir_u64 at)
{
	if (!s->alpha_armed || at < s->alpha_next)
		return;
	weir_u64 periods = 1 + (at - s->alpha_next) / c->alpha_period;
	/* DOCA DCQCN parameters, alpha update: alpha <- (G*alpha + (1024 - G)*[cnp]) / 1024 */
	weir_u64 hit = s->alpha_cnp ? (1024 - c->gain) * ALPHA_ONE : 0;
	s->alpha = (c->gain * s->alpha + hit) >> 10;
	s->alpha = mul_q32(s->alpha, pow_q32(c->gain, periods - 1));
	s->alpha_cnp = 0;
	weir_u64 next = sat_add(s->alpha_next, sat_mul(periods, c->alpha_period));
	if (below_max(next))
		s->alpha_next = next;
	else
		s->alpha_armed = 0;
}

/* One rate cut at `at` (alpha already advanced to `at`). SIGCOMM 2015 section 3. */
static __always_inline void cut(struct dcqcn_state *s, const struct cfg *c, weir_u64 at)
{
	if (c->clamp || s->t_stage > 0 || s->b_stage > 0)
		s->rt = s->rc;
	weir_u64 frac;
	if (c->gd >= 10)
		frac = c->gd - 10 >= 64 ? 0 : s->alpha >> (c->gd - 10);
	else
		frac = s->alpha << (10 - c->gd);
	weir_u64 by_alpha = mul_q32(s->rc, sat_sub(ALPHA_ONE, frac));
	weir_u64 floor = mul_pct(s->rc, c->keep_pct);
	s->rc = max64(min64(max64(by_alpha, floor), s->rc), c->min);
	s->t_stage = 0;
	s->b_stage = 0;
	s->bytes = 0;
	s->has_inc_next = 0;
	if (c->time_reset > 0 && s->rc < c->line) {
		weir_u64 next = sat_add(at, c->time_reset);
		s->has_inc_next = below_max(next);
		s->inc_next = next;
	}
	s->has_last_cut = 1;
	s->last_cut = at;
	s->cut_pending = 0;
	s->cuts += 1;
}

/* Phases of the increase machinery, in the only order they can follow each other within one
 * run of events from one counter (dcqcn.rs: Dcqcn::segment). */
enum phase { FAST_RECOVERY, ADDITIVE, HYPER_GROWING, HYPER_STEADY };

/* One phase: how many events stay in it and their steps. Event j raises R_T by
 * step + j*step (HYPER_GROWING: hai*(i0 + j)) or by step (the others). */
struct seg {
	int phase;
	weir_u64 len;
	weir_u64 i0;
	weir_u64 step;
};

/* k*i0 + k(k-1)/2, saturating (dcqcn.rs: units). */
static __always_inline weir_u64 units(weir_u64 k, weir_u64 i0)
{
	weir_u64 tri = (k % 2 == 0) ? sat_mul(k / 2, sat_sub(k, 1)) : sat_mul(k, (k - 1) / 2);
	return sat_add(sat_mul(k, i0), tri);
}

/* Number of significant bits of x (0 for 0). */
static __always_inline weir_u64 bit_length(weir_u64 x)
{
	weir_u64 n = 0;
	if (x >> 32) {
		n += 32;
		x >>= 32;
	}
	if (x >> 16) {
		n += 16;
		x >>= 16;
	}
	if (x >> 8) {
		n += 8;
		x >>= 8;
	}
	if (x >> 4) {
		n += 4;
		x >>= 4;
	}
	if (x >> 2) {
		n += 2;
		x >>= 2;
	}
	if (x >> 1) {
		n += 1;
		x >>= 1;
	}
	return n + x;
}

/* The step of event j of the phase (dcqcn.rs: Step::delta). */
static __always_inline weir_u64 delta(int growing, weir_u64 i0, weir_u64 step, weir_u64 j)
{
	return growing ? sat_mul(step, sat_add(i0, j)) : step;
}

/* Sum of the first k steps, saturating (dcqcn.rs: Step::sum). */
static __always_inline weir_u64 step_sum(int growing, weir_u64 i0, weir_u64 step, weir_u64 k)
{
	return growing ? sat_mul(units(k, i0), step) : sat_mul(step, k);
}

/* The largest k <= m whose first k steps sum to at most room (dcqcn.rs: Step::fitting). */
static __always_inline weir_u64 fitting(int growing, weir_u64 i0, weir_u64 step, weir_u64 room,
					weir_u64 m)
{
	if (step == 0)
		return m;
	if (!growing)
		return min64(m, room / step);
	weir_u64 r = room / step;
	weir_u64 k = 0;
	/* Bit by bit from bit 33: units(k) >= k(k-1)/2 keeps the answer below 2^34. */
#define FIT_BIT(i)                                                    \
	{                                                             \
		weir_u64 cand = k | (1ULL << (33 - (i)));             \
		if (cand <= m && units(cand, i0) <= r)                \
			k = cand;                                     \
	}
	REP16(FIT_BIT, 0) REP16(FIT_BIT, 16) FIT_BIT(32) FIT_BIT(33)
#undef FIT_BIT
	return k;
}

/* The gap R_T - R_C after k events whose steps all fit below the line rate
 * (dcqcn.rs: Step::gap_after): g_k = delta(k-2) + floor((g_2 - a) / 2^(k-2)). */
static __always_inline weir_u64 gap_after(int growing, weir_u64 i0, weir_u64 step, weir_u64 gap,
					  weir_u64 k)
{
	weir_u64 a = growing ? sat_mul(step, i0) : step;
	weir_u64 b = growing ? step : 0;
	if (k == 0)
		return gap;
	weir_u64 g1 = sat_add(gap, a) / 2;
	if (k == 1)
		return g1;
	weir_u64 g2 = sat_add(sat_add(g1, a), b) / 2;
	weir_u64 base = delta(growing, i0, step, k - 2);
	weir_u64 sh = k - 2;
	if (g2 >= a) {
		weir_u64 e = g2 - a;
		return sat_add(base, sh >= 64 ? 0 : e >> sh);
	}
	/* Floor of a negative number divided by 2^sh: minus the ceiling of its magnitude's. */
	weir_u64 e = a - g2;
	weir_u64 up = sh >= 64 ? 1 : ((e - 1) >> sh) + 1;
	return sat_sub(base, up);
}

/* Applies m events of one phase in closed form, exactly as one by one (dcqcn.rs: Step::run
 * and Dcqcn::apply). */
static __always_inline void run(struct dcqcn_state *s, const struct cfg *c, int counter,
				weir_u64 m, int growing, weir_u64 i0, weir_u64 step)
{
	weir_u64 line = c->line;
	if (m == 0 || s->rc >= line)
		return;
	weir_u64 rt = s->rt;
	weir_u64 gap = rt - s->rc;
	weir_u64 done = 0;
	if (rt < line) {
		/* Events whose whole step fits below the line rate. */
		weir_u64 room = line - rt;
		weir_u64 k = fitting(growing, i0, step, room, m);
		gap = gap_after(growing, i0, step, gap, k);
		rt = sat_add(rt, step_sum(growing, i0, step, k));
		done = k;
		m -= k;
		if (m > 0 && rt < line) {
			/* The next step overshoots: R_T stops at the line rate. */
			gap = sat_add(gap, line - rt) / 2;
			rt = line;
			done += 1;
			m -= 1;
		}
	}
	if (m > 0) {
		/* R_T is at the line rate: every event halves the gap until it is gone. */
		weir_u64 e = min64(m, bit_length(gap));
		gap = e >= 64 ? 0 : gap >> e;
		done += e;
	}
	s->rt = rt;
	s->rc = sat_sub(rt, gap);
	if (counter == TIMER)
		s->t_stage = sat_add(s->t_stage, done);
	else
		s->b_stage = sat_add(s->b_stage, done);
	s->increases = sat_add(s->increases, done);
}

/* The phase the next `counter` event is in (dcqcn.rs: Dcqcn::segment). SIGCOMM 2015 section
 * 3: fast recovery for the first F stages, additive once the timer or the byte counter passed
 * F, hyper (R_T += i*R_HAI) once both have. */
static __always_inline struct seg segment(const struct dcqcn_state *s, const struct cfg *c,
					  int counter)
{
	int single = c->time_reset == 0 || c->byte_reset == 0;
	weir_u64 x = counter == TIMER ? s->t_stage : s->b_stage;
	weir_u64 o = counter == TIMER ? s->b_stage : s->t_stage;
	if (single)
		o = x;
	weir_u64 f = c->f;
	struct seg g = { .phase = ADDITIVE, .len = U64_MAX, .i0 = 0, .step = c->ai };
	if (max64(x, o) < f) {
		g.phase = FAST_RECOVERY;
		g.len = f - x;
		g.step = 0;
	} else if (min64(x, o) > f) {
		if (single || x < o) {
			g.phase = HYPER_GROWING;
			g.len = single ? U64_MAX : o - x;
			g.i0 = x - f;
			g.step = c->hai;
		} else {
			g.phase = HYPER_STEADY;
			g.step = sat_mul(c->hai, o - f);
		}
	} else if (single || o > f) {
		g.len = f + 1 - x;
	}
	return g;
}

/* Applies n increase events from `counter`. Each run of one counter goes through the phases
 * in the order fast recovery, additive, growing hyper, steady hyper (each phase but the last
 * ends at a stage count that leads into a later one), so one pass over the four, each
 * handled by code specialised for it, does what dcqcn.rs's loop over segments does. */
static __always_inline void increase(struct dcqcn_state *s, const struct cfg *c, int counter,
				     weir_u64 n)
{
#define PHASE(p, growing)                                                         \
	if (n > 0 && s->rc < c->line) {                                          \
		struct seg g = segment(s, c, counter);                           \
		if (g.phase == (p)) {                                            \
			weir_u64 m = min64(g.len, n);                            \
			run(s, c, counter, m, growing, g.i0, g.step);            \
			n -= m;                                                  \
		}                                                                \
	}
	PHASE(FAST_RECOVERY, 0)
	PHASE(ADDITIVE, 0)
	PHASE(HYPER_GROWING, 1)
	PHASE(HYPER_STEADY, 0)
#undef PHASE
	if (s->rc >= c->line)
		s->has_inc_next = 0;
}

/* Timer events from inc_next up to `until` (inclusive). */
static __always_inline void timer_run(struct dcqcn_state *s, const struct cfg *c,
				      weir_u64 until)
{
	weir_u64 i = s->inc_next;
	weir_u64 t = max64(c->time_reset, 1);
	weir_u64 k = 1 + (until - i) / t;
	weir_u64 next = sat_add(i, sat_mul(k, t));
	s->has_inc_next = below_max(next);
	s->inc_next = next;
	increase(s, c, TIMER, k);
}

/* Applies every timer due at or before `now`, in time order, then advances alpha to `now`.
 * Returns the effective (monotone) time. The order is at most: timer events before a due
 * deferred cut, the cut, timer events after it. */
static __always_inline weir_u64 advance(struct dcqcn_state *s, const struct cfg *c, weir_u64 now)
{
	now = max64(now, s->now);
	s->now = now;
	if (s->cut_pending) {
		weir_u64 d = sat_add(s->last_cut, c->monitor);
		if (d <= now) {
			if (s->has_inc_next && s->inc_next <= d - 1)
				timer_run(s, c, d - 1);
			advance_alpha(s, c, d);
			cut(s, c, d);
		}
	}
	if (s->has_inc_next && s->inc_next <= now)
		timer_run(s, c, now);
	advance_alpha(s, c, now);
	return now;
}

/* A congestion notification at `now`; `from_peer`: a CNP, already paced by the peer. */
static __always_inline void notify(struct dcqcn_state *s, const struct cfg *c, weir_u64 now,
				   int from_peer)
{
	if (!from_peer && s->has_np_last && now < sat_add(s->np_last, c->np_min))
		return;
	s->has_np_last = 1;
	s->np_last = now;
	s->cnps += 1;
	if (!s->alpha_armed) {
		s->alpha = c->init_alpha;
		weir_u64 next = sat_add(now, c->alpha_period);
		if (below_max(next)) {
			s->alpha_armed = 1;
			s->alpha_next = next;
		}
	} else {
		s->alpha_cnp = 1;
	}
	if (s->has_last_cut && now < sat_add(s->last_cut, c->monitor))
		s->cut_pending = 1;
	else
		cut(s, c, now);
}

WEIR_CC_PROGRAM int dcqcn(struct weir_cc_ctx *ctx)
{
	struct dcqcn_state *s = WEIR_CC_STATE(ctx, struct dcqcn_state);
	struct cfg c;
	load_cfg(ctx, &c);

	weir_u32 event = ctx->event;
	if (event == WEIR_CC_EV_INIT) {
		s->rc = c.line;
		s->rt = c.line;
		s->alpha = c.init_alpha;
		s->now = ctx->now_ps;
	} else {
		weir_u64 now = advance(s, &c, ctx->now_ps);
		if (event == WEIR_CC_EV_SENT) {
			weir_u64 b = c.byte_reset;
			if (b != 0 && s->rc < c.line) {
				/* The byte counter raises an increase event every B bytes sent. */
				s->bytes = sat_add(s->bytes, ctx->sent_bytes);
				weir_u64 events = s->bytes / b;
				s->bytes %= b;
				if (events > 0)
					increase(s, &c, BYTES, events);
			}
		} else if (event == WEIR_CC_EV_FEEDBACK) {
			weir_u8 loss = ctx->fb_loss;
			int congestion_loss = 0;
			if (loss == WEIR_CC_LOSS_TRIMMED || loss == WEIR_CC_LOSS_TRIMMED_LAST_HOP)
				congestion_loss = c.trim_as_cnp != 0;
			else if (loss == WEIR_CC_LOSS_DETECTED)
				congestion_loss = c.loss_as_cnp != 0;
			if (ctx->fb_flags & WEIR_CC_FB_CNP)
				notify(s, &c, now, 1);
			else if (ctx->fb_ecn_bytes > 0 || congestion_loss)
				notify(s, &c, now, 0);
			/* An RTO: deliberately no reaction (see dcqcn.rs). */
		}
	}

	weir_u64 timer = 0;
	if (s->cut_pending)
		timer = sat_add(s->last_cut, c.monitor);
	if (s->has_inc_next && (timer == 0 || s->inc_next < timer))
		timer = s->inc_next;
	ctx->out_rate_bps = s->rc;
	ctx->out_window = 0;
	ctx->out_timer_ps = timer;
	ctx->out_path_hint = 0;
	return 0;
}
