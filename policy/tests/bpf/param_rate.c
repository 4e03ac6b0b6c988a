/* Rate and window straight from the parameters; records the parameter generation it saw. */
#include "weir_cc.h"

WEIR_CC_PROGRAM int param_rate(struct weir_cc_ctx *ctx)
{
	ctx->out_rate_bps = ctx->params[0];
	ctx->out_window = ctx->params[1];
	*(weir_u32 *)(void *)ctx->state = ctx->params_gen;
	return 0;
}

WEIR_CC_PARAM_NAMES("rate_bps\0window\0");
