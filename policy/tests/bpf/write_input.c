/* Refused: writes an input field (the parameters are read-only). */
#include "weir_cc.h"

WEIR_CC_PROGRAM int write_input(struct weir_cc_ctx *ctx)
{
	ctx->params[0] = 7;
	ctx->out_rate_bps = 1000;
	return 0;
}
