/* SPDX-License-Identifier: Apache-2.0 */
/*
 * weir_cc.h -- the program ABI of Weir's programmable congestion control (ABI version 1).
 *
 * A policy is one eBPF function, compiled from restricted C with
 *
 *     clang -O2 -target bpf -c my_policy.c -o my_policy.o
 *
 * and loaded by Weir (`weir-policy` crate), which verifies it before it ever runs. The
 * function is called once per event of one flow (connection or path) with r1 pointing at a
 * `struct weir_cc_ctx`: the event, the flow's facts, the parameters, the outputs of the
 * previous call and the flow's private state. It returns 0 on success; any other value is a
 * program-declared error (the engine counts it and keeps the last good limits).
 *
 * Contract
 *  - Integers only. Times are u64 PICOSECONDS (Weir's clock unit), rates u64 bit/s, sizes
 *    bytes. There is no floating point in eBPF; use fixed point (see examples/cc/dcqcn.c).
 *  - One context per flow. `state` (WEIR_CC_STATE_BYTES) is zero before the INIT event and is
 *    kept between calls: it is the only memory that persists. The outputs also persist: a
 *    call that leaves an output alone keeps its previous value.
 *  - Each call fills the header and the fields of its event kind only. Fields of other event
 *    kinds hold stale values from earlier events: read only what the current event defines.
 *  - The program may read the whole context, write only the outputs and `state`, and use up
 *    to 512 bytes of stack (r10). Everything else is refused at load time.
 *  - The verifier (weir-policy, src/verifier.rs) refuses: loops (any cycle in the control
 *    flow; write loops with constant bounds and `#pragma unroll`, or spell them out with
 *    forward gotos), calls to anything but the helpers below (mark every function
 *    `static __always_inline`), memory access outside the context / stack or whose bounds it
 *    cannot prove, reads of uninitialised registers, writes to r10, more instructions than
 *    the budget (default 16384, at most 32767), unsigned 64-bit comparisons against negative
 *    immediates (see WEIR_CC_OPAQUE), and any path that runs past the last instruction (end
 *    with `exit`, return 0). No maps, no global or static variables (no relocations): keep
 *    constants in code and data in `state`.
 *  - Division by zero yields 0 and modulo by zero leaves the dividend unchanged (eBPF
 *    semantics), never a trap.
 *  - Outputs are sanitised by the engine, never trusted: window (bytes) 0 = not
 *    window-limited, else clamped to [1, 2^40]; rate (bit/s) 0 = not rate-limited, else
 *    clamped to [1, line rate]; a result with neither is refused (last good limits kept);
 *    a timer at or before `now_ps` is dropped; a path hint outside [1, 65536] is dropped.
 *
 * Parameters: `params[0..n_params)` are u64s set from configuration (index order is the
 * program's own; name them with WEIR_CC_PARAM_NAMES so `weir cc` can set them by name). They
 * may change between any two calls (hot reload); `params_gen` increases on every change.
 */
#ifndef WEIR_CC_H
#define WEIR_CC_H

#define WEIR_CC_ABI_VERSION 1

/* Fixed-size types without libc (BPF programs have no standard headers at hand). */
typedef unsigned char weir_u8;
typedef unsigned short weir_u16;
typedef unsigned int weir_u32;
typedef unsigned long long weir_u64;
typedef long long weir_i64;

/* Event kinds (`weir_cc_ctx.event`). */
enum weir_cc_event {
	/* The flow was created: path facts and parameters are set, `state` is all zero.
	 * Initialise the state and set the first outputs. */
	WEIR_CC_EV_INIT = 0,
	/* A packet was put on the wire: `sent_*` fields. */
	WEIR_CC_EV_SENT = 1,
	/* Feedback arrived (ACK/SACK/NACK/ECN echo/CNP/RTT/INT/loss/RTO): `fb_*`, `hops`. */
	WEIR_CC_EV_FEEDBACK = 2,
	/* The timer the program asked for (`out_timer_ps`) expired (possibly late). */
	WEIR_CC_EV_TIMEOUT = 3,
};

/* Loss kinds (`weir_cc_ctx.fb_loss`). */
enum weir_cc_loss {
	WEIR_CC_LOSS_NONE = 0,
	/* Detected from SACK holes / reordering threshold. */
	WEIR_CC_LOSS_DETECTED = 1,
	/* A switch trimmed the packet in the fabric. */
	WEIR_CC_LOSS_TRIMMED = 2,
	/* The last-hop switch trimmed it (receiver incast). */
	WEIR_CC_LOSS_TRIMMED_LAST_HOP = 3,
	/* The receiver had no room: not a network congestion signal. */
	WEIR_CC_LOSS_RECEIVER_NO_RESOURCES = 4,
};

/* Feedback flags (`weir_cc_ctx.fb_flags`). */
#define WEIR_CC_FB_CNP 0x1u        /* a congestion notification packet arrived */
#define WEIR_CC_FB_RTO 0x2u        /* a retransmission timeout fired */
#define WEIR_CC_FB_RTT 0x4u        /* fb_rtt_ps holds an RTT sample */
#define WEIR_CC_FB_HOST_DELAY 0x8u /* fb_host_delay_ps holds the receiver's host delay */

#define WEIR_CC_MAX_HOPS 8
#define WEIR_CC_MAX_PARAMS 32
#define WEIR_CC_STATE_BYTES 256

/* One INT record (per hop), 32 bytes. */
struct weir_cc_hop {
	weir_u64 qlen;     /* egress queue length, bytes */
	weir_u64 rate_bps; /* egress link rate, bit/s */
	weir_u64 tx_bytes; /* bytes transmitted by the egress port (wrapping counter) */
	weir_u64 ts_ps;    /* switch timestamp, ps */
};

/* The context r1 points at (936 bytes). Offsets are part of the ABI. */
struct weir_cc_ctx {
	/* --- header (every event), read-only --- */
	weir_u32 abi_version; /*   0: WEIR_CC_ABI_VERSION */
	weir_u32 event;       /*   4: enum weir_cc_event */
	weir_u64 now_ps;      /*   8: time of the event, ps (may go backwards: treat as no time) */

	/* --- path facts (set before INIT, constant), read-only --- */
	weir_u64 line_rate_bps; /*  16: local NIC line rate, >= 1 */
	weir_u64 base_rtt_ps;   /*  24: unloaded RTT, 0 = unknown */
	weir_u32 mtu;           /*  32: largest payload per packet, bytes */
	weir_u16 paths;         /*  36: number of paths (entropies) the flow sprays over */
	weir_u16 _pad0;         /*  38 */

	/* --- WEIR_CC_EV_SENT, read-only --- */
	weir_u64 sent_bytes;      /*  40: bytes on the wire for this packet */
	weir_u64 sent_in_flight;  /*  48: bytes in flight after sending it */
	weir_u16 sent_path;       /*  56: path it went on */
	weir_u8 sent_retransmit;  /*  58: 1 if a retransmission */
	weir_u8 _pad1[5];         /*  59 */

	/* --- WEIR_CC_EV_FEEDBACK, read-only --- */
	weir_u64 fb_acked_bytes;   /*  64: bytes newly acknowledged */
	weir_u64 fb_ecn_bytes;     /*  72: of those, bytes that carried ECN CE */
	weir_u64 fb_rtt_ps;        /*  80: RTT sample if fb_flags & WEIR_CC_FB_RTT */
	weir_u64 fb_host_delay_ps; /*  88: receiver host delay if fb_flags & WEIR_CC_FB_HOST_DELAY */
	weir_u64 fb_lost_bytes;    /*  96: bytes of lost / NACKed packets */
	weir_u64 fb_in_flight;     /* 104: bytes in flight after this event */
	weir_u32 fb_acked_packets; /* 112: packets newly acknowledged */
	weir_u32 fb_flags;         /* 116: WEIR_CC_FB_* */
	weir_u16 fb_path;          /* 120: path the feedback concerns */
	weir_u8 fb_loss;           /* 122: enum weir_cc_loss */
	weir_u8 fb_n_hops;         /* 123: valid entries in hops[], <= WEIR_CC_MAX_HOPS */
	weir_u32 fb_hops_total;    /* 124: INT records carried (may exceed WEIR_CC_MAX_HOPS) */
	struct weir_cc_hop hops[WEIR_CC_MAX_HOPS]; /* 128: first fb_n_hops valid */

	/* --- parameters (hot-reloadable), read-only --- */
	weir_u64 params[WEIR_CC_MAX_PARAMS]; /* 384: unset entries are 0 */
	weir_u32 n_params;                   /* 640: entries set from configuration */
	weir_u32 params_gen;                 /* 644: increases on every reload */

	/* --- outputs, read-write, persistent --- */
	weir_u64 out_window;    /* 648: bytes in flight allowed, 0 = not window-limited */
	weir_u64 out_rate_bps;  /* 656: pacing rate, 0 = not rate-limited */
	weir_u64 out_timer_ps;  /* 664: absolute time of the next TIMEOUT event, 0 = none */
	weir_u32 out_path_hint; /* 672: 0 = none, p + 1 = move the flow off path p */
	weir_u32 _out_pad;      /* 676 */

	/* --- per-flow state, read-write, persistent --- */
	weir_u8 state[WEIR_CC_STATE_BYTES]; /* 680 */
};

#define WEIR_CC_CTX_SIZE 936

#define WEIR_CC_ASSERT_OFFSET(field, off) \
	_Static_assert(__builtin_offsetof(struct weir_cc_ctx, field) == (off), "ABI offset " #field)
WEIR_CC_ASSERT_OFFSET(now_ps, 8);
WEIR_CC_ASSERT_OFFSET(line_rate_bps, 16);
WEIR_CC_ASSERT_OFFSET(sent_bytes, 40);
WEIR_CC_ASSERT_OFFSET(fb_acked_bytes, 64);
WEIR_CC_ASSERT_OFFSET(fb_flags, 116);
WEIR_CC_ASSERT_OFFSET(hops, 128);
WEIR_CC_ASSERT_OFFSET(params, 384);
WEIR_CC_ASSERT_OFFSET(out_window, 648);
WEIR_CC_ASSERT_OFFSET(state, 680);
_Static_assert(sizeof(struct weir_cc_ctx) == WEIR_CC_CTX_SIZE, "ABI size");

/* The program's entry point goes in this ELF section (the loader looks for it). */
#define WEIR_CC_PROGRAM __attribute__((section("weir_cc"), used))

/* Parameter names, in index order, as one string of NUL-separated names, e.g.
 *     WEIR_CC_PARAM_NAMES("gain\0period_ps\0");
 * An entry may carry its default as `name=value` (decimal), e.g. "gain=5\0period_ps=300000\0":
 * a parameter the loader is not given takes its default (0 without one).
 * Stored in the `weir_cc_params` section; optional. */
#define WEIR_CC_PARAM_NAMES(names) \
	char __weir_cc_param_names[] __attribute__((section("weir_cc_params"), used)) = names

/* The flow's state as the program's own struct; fails to compile if it does not fit. */
#define WEIR_CC_STATE(ctx, type)                                                        \
	({                                                                                  \
		_Static_assert(sizeof(type) <= WEIR_CC_STATE_BYTES, "state too large");      \
		(type *)(void *)(ctx)->state;                                               \
	})

/* Helpers (call numbers). The verifier refuses any other call. */
#define WEIR_CC_HELPER_MULDIV 1

/* floor(a * b / d) computed in 128 bits, saturated to 2^64 - 1; d == 0 gives 2^64 - 1. */
static weir_u64 (*const weir_cc_muldiv)(weir_u64 a, weir_u64 b, weir_u64 d) =
	(void *)WEIR_CC_HELPER_MULDIV;

/* A value clang cannot see through: it stays in a register. The verifier refuses unsigned
 * 64-bit jumps against a NEGATIVE immediate (rbpf's interpreter zero-extends the immediate
 * where clang and the kernel sign-extend it), so compare with such constants through this:
 *     if (x < WEIR_CC_OPAQUE(~0ULL)) ...      instead of      if (x < ~0ULL) ... */
#define WEIR_CC_OPAQUE(x)                          \
	({                                         \
		__typeof__(x) __weir_v = (x);      \
		asm volatile("" : "+r"(__weir_v)); \
		__weir_v;                          \
	})

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

#endif /* WEIR_CC_H */
