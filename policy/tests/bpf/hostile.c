/* Verifies, then misbehaves at run time in every way the outputs allow, chosen by
 * params[0]: division and modulo by zero, huge or zero outputs, an expired timer, a bad path
 * hint, a non-zero return. The engine must survive all of it. */
#include "weir_cc.h"

WEIR_CC_PROGRAM int hostile(struct weir_cc_ctx *ctx)
{
	weir_u64 mode = ctx->params[0];
	weir_u64 zero = ctx->params[1];
	weir_u64 *runs = (weir_u64 *)(void *)ctx->state;
	*runs += 1;
	switch (mode) {
	case 0: /* well-behaved: 10 Gb/s, 1 MB window, timer in 1 us */
		ctx->out_rate_bps = 10000000000ULL;
		ctx->out_window = 1000000;
		ctx->out_timer_ps = ctx->now_ps + 1000000;
		ctx->out_path_hint = 0;
		return 0;
	case 1: /* division and modulo by zero */
		ctx->out_rate_bps = ctx->line_rate_bps / zero;
		ctx->out_window = ctx->line_rate_bps % zero;
		return 0;
	case 2: /* everything huge */
		ctx->out_rate_bps = ~0ULL;
		ctx->out_window = ~0ULL;
		ctx->out_timer_ps = ~0ULL;
		ctx->out_path_hint = ~0U;
		return 0;
	case 3: /* nothing at all */
		ctx->out_rate_bps = 0;
		ctx->out_window = 0;
		return 0;
	case 4: /* a timer that is already due, forever */
		ctx->out_rate_bps = 5;
		ctx->out_window = 0;
		ctx->out_timer_ps = ctx->now_ps;
		return 0;
	case 5: /* says it failed */
		ctx->out_rate_bps = 1;
		return 22;
	default: /* negative-looking values */
		ctx->out_rate_bps = (weir_u64)-1000;
		ctx->out_window = (weir_u64)-1;
		ctx->out_path_hint = 65537;
		return 0;
	}
}
