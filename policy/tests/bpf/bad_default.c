/* A parameter default that is not a number: the loader must refuse it, naming the parameter. */
#include "weir_cc.h"

WEIR_CC_PROGRAM int param_defaults(struct weir_cc_ctx *ctx)
{
	ctx->out_rate_bps = ctx->params[0];
	ctx->out_window = ctx->params[1];
	return 0;
}

WEIR_CC_PARAM_NAMES("rate_bps=fast\0window=65536\0");
