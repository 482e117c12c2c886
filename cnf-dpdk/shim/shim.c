/* Linkable wrappers around DPDK's static inline fast-path functions (one line each). */
#include "shim.h"

uint16_t cnf_dpdk_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_rx_burst(port, queue, pkts, n);
}

uint16_t cnf_dpdk_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_tx_burst(port, queue, pkts, n);
}

struct rte_mbuf *cnf_dpdk_pktmbuf_alloc(struct rte_mempool *mp)
{
	return rte_pktmbuf_alloc(mp);
}

void cnf_dpdk_pktmbuf_free(struct rte_mbuf *m)
{
	rte_pktmbuf_free(m);
}

/* The data of a one-segment mbuf: start, length, and the room the frame may grow into
 * (length + tailroom). -1 for a chained (multi-segment) mbuf. */
int cnf_dpdk_mbuf_data(struct rte_mbuf *m, uint8_t **data, uint32_t *len, uint32_t *room)
{
	if (m->nb_segs != 1 || m->next != NULL)
		return -1;
	*data = rte_pktmbuf_mtod(m, uint8_t *);
	*len = m->data_len;
	*room = (uint32_t)m->data_len + rte_pktmbuf_tailroom(m);
	return 0;
}

/* Sets the length of a one-segment mbuf; -1 when it exceeds the room. */
int cnf_dpdk_mbuf_set_len(struct rte_mbuf *m, uint32_t len)
{
	if (m->nb_segs != 1 || len > (uint32_t)m->data_len + rte_pktmbuf_tailroom(m))
		return -1;
	m->data_len = (uint16_t)len;
	m->pkt_len = len;
	return 0;
}

int cnf_dpdk_errno(void)
{
	return rte_errno;
}
