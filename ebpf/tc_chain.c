/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tc_chain.c - TC (clsact ingress) attach point, fallback when XDP cannot attach.
 *
 * vnf_entry classifies the packet and starts the chain of the active
 * generation; every other program runs one network function and tail-calls
 * the next position (see lib/chain.h).  User space places the function
 * programs into the prog array vnf_progs.
 */
#define VNF_HOOK_TC 1
/* aya 0.14 loads TC programs from sections named "classifier". */
#define VNF_PROG_SEC "classifier"

#include "lib/programs.h"
