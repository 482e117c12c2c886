//! The laptop testbed: a VNFChain brought up in network namespaces and veth pairs on one machine.
