/* param_rate with declared parameter defaults (name=value) for the loader's tests. */
#include "weir_cc.h"

WEIR_CC_PROGRAM int param_defaults(struct weir_cc_ctx *ctx)
{
	ctx->out_rate_bps = ctx->params[0];
	ctx->out_window = ctx->params[1];
	return 0;
}

WEIR_CC_PARAM_NAMES("rate_bps=25000000000\0window=65536\0");
