/* Accepted: walks the INT records with a bounded, unrolled loop; a window from the deepest
 * queue, the hint from the hop index, the muldiv helper for the rate. */
#include "weir_cc.h"

WEIR_CC_PROGRAM int hops(struct weir_cc_ctx *ctx)
{
	if (ctx->event != WEIR_CC_EV_FEEDBACK) {
		ctx->out_rate_bps = ctx->line_rate_bps;
		return 0;
	}
	weir_u64 deepest = 0;
	weir_u32 at = 0;
	weir_u32 n = ctx->fb_n_hops;
#pragma unroll
	for (weir_u32 i = 0; i < WEIR_CC_MAX_HOPS; i++) {
		if (i < n && ctx->hops[i].qlen > deepest) {
			deepest = ctx->hops[i].qlen;
			at = i;
		}
	}
	ctx->out_window = deepest + 1;
	ctx->out_path_hint = at + 1;
	ctx->out_rate_bps = weir_cc_muldiv(ctx->line_rate_bps, 3, 4);
	return 0;
}
