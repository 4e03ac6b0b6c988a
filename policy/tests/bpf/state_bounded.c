/* Accepted: the same write, with the index checked first. */
#include "weir_cc.h"

WEIR_CC_PROGRAM int state_bounded(struct weir_cc_ctx *ctx)
{
	weir_u64 i = ctx->params[0];
	if (i < WEIR_CC_STATE_BYTES)
		ctx->state[i] += 1;
	ctx->out_rate_bps = 1000;
	return 0;
}
