//! Weft's gossip layer: the libp2p swarm, semantic gossip for consensus messages, tx gossip and
//! block sync.
//!
//! Empty until the gossip issue lands.
//!
//! Architecture invariant: gossip decides nothing about consensus beyond the filter and
//! aggregation rules it is handed.
