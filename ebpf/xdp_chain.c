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
