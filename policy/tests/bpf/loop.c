/* Refused: a loop clang cannot unroll (its bound comes from the context). */
#include "weir_cc.h"

WEIR_CC_PROGRAM int loop(struct weir_cc_ctx *ctx)
{
	weir_u64 sum = 0;
#pragma nounroll
	for (weir_u64 i = 0; i < ctx->params[0]; i++)
		sum = (sum << 1) ^ i;
	ctx->out_rate_bps = sum;
	return 0;
}
