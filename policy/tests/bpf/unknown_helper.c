/* Refused: calls helper 6 (the kernel's bpf_trace_printk), which Weir does not provide. */
#include "weir_cc.h"

static long (*const trace_printk)(const char *fmt, weir_u32 size, ...) = (void *)6;

WEIR_CC_PROGRAM int unknown_helper(struct weir_cc_ctx *ctx)
{
	char fmt[] = "hi";
	trace_printk(fmt, sizeof(fmt));
	ctx->out_rate_bps = 1000;
	return 0;
}
