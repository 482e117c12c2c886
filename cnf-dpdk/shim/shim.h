/* The DPDK headers the bindings are generated from, plus the shim that gives DPDK's
 * `static inline` fast-path functions a linkable symbol. */
#ifndef CNF_DPDK_SHIM_H
#define CNF_DPDK_SHIM_H

#include <stdint.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_bus_vdev.h>

uint16_t cnf_dpdk_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
uint16_t cnf_dpdk_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
struct rte_mbuf *cnf_dpdk_pktmbuf_alloc(struct rte_mempool *mp);
void cnf_dpdk_pktmbuf_free(struct rte_mbuf *m);
int cnf_dpdk_mbuf_data(struct rte_mbuf *m, uint8_t **data, uint32_t *len, uint32_t *room);
int cnf_dpdk_mbuf_set_len(struct rte_mbuf *m, uint32_t len);
int cnf_dpdk_errno(void);

#endif
