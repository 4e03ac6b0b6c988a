/* Refused: writes the state at an index the program never bounds. */
#include "weir_cc.h"

WEIR_CC_PROGRAM int state_overflow(struct weir_cc_ctx *ctx)
{
	ctx->state[ctx->params[0]] = 1;
	ctx->out_rate_bps = 1000;
	return 0;
}
