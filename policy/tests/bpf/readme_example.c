/* The policy shown in examples/cc/README.md: halve the rate on a CNP, down to a floor. */
#include "weir_cc.h"

struct my_state { weir_u64 rate; };

WEIR_CC_PARAM_NAMES("floor_bps\0");

WEIR_CC_PROGRAM int my_policy(struct weir_cc_ctx *ctx)
{
	struct my_state *s = WEIR_CC_STATE(ctx, struct my_state);
	if (ctx->event == WEIR_CC_EV_INIT)
		s->rate = ctx->line_rate_bps;
	else if (ctx->event == WEIR_CC_EV_FEEDBACK && (ctx->fb_flags & WEIR_CC_FB_CNP))
		s->rate = s->rate / 2 > ctx->params[0] ? s->rate / 2 : ctx->params[0];
	ctx->out_rate_bps = s->rate;
	return 0;
}
