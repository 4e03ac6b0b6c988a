/* Refused at load: keeps a counter in a global variable (needs a relocation). */
#include "weir_cc.h"

weir_u64 calls;

WEIR_CC_PROGRAM int global(struct weir_cc_ctx *ctx)
{
	calls++;
	ctx->out_rate_bps = 1000 + calls;
	return 0;
}
