/* SPDX-License-Identifier: Apache-2.0 */
/*
 * xdp_chain.c - XDP attach point (native or generic XDP).
 *
 * vnf_entry classifies the packet and starts the chain of the active
 * generation; every other program runs one network function and tail-calls
 * the next position (see lib/chain.h).  User space places the function
 * programs into the prog array vnf_progs.
 */
#define VNF_HOOK_XDP 1
#define VNF_PROG_SEC "xdp"

#include "lib/programs.h"

/* Not attached: cnf-dataplane runs it with BPF_PROG_TEST_RUN every
 * 100 ms (engine/fragreplay.rs) to delete the fragments parked longer than the timeout
 * and count them fragment_expired (lib/fragpark.h).  Its return value is
 * unused. */
SEC("xdp")
int vnf_frag_sweep(struct xdp_md *ctx)
{
	(void)ctx;
	return vnf_frag_sweep_body();
}
