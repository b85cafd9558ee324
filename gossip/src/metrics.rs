//! Prometheus collectors for gossip, for the node to register. Names follow CometBFT's `p2p_`
//! metrics under the `weft_` prefix, plus the semantic gossip counters.

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

use crate::semantic::RouterCounters;
use crate::wire::Message;

/// Which way a message went.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Direction {
    Sent,
    Received,
}

/// The gossip collectors.
#[derive(Clone, Debug)]
pub struct GossipMetrics {
    /// `weft_p2p_messages_total{direction, kind}`.
    pub messages: IntCounterVec,
    /// `weft_p2p_message_bytes_total{direction, kind}`.
    pub bytes: IntCounterVec,
    /// `weft_p2p_duplicates_received_total`, `weft_p2p_votes_filtered_total`,
    /// `weft_p2p_bundles_sent_total`, `weft_p2p_bundled_votes_total`,
    /// `weft_p2p_queue_overflows_total`, as one vector by `counter`.
    pub semantic: IntCounterVec,
    /// `weft_p2p_peers`.
    pub peers: IntGauge,
    /// `weft_p2p_snapshot_requests_served_total{kind}`: snapshot requests this node answered,
    /// by kind (`list`, `manifest`, `chunk`, `light_block`).
    pub snapshots_served: IntCounterVec,
}

impl GossipMetrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let opts =
            |name: &str, help: &str| Opts::new(name, help).namespace("weft").subsystem("p2p");
        Ok(GossipMetrics {
            messages: IntCounterVec::new(
                opts(
                    "messages_total",
                    "Consensus gossip messages, by direction and kind",
                ),
                &["direction", "kind"],
            )?,
            bytes: IntCounterVec::new(
                opts(
                    "message_bytes_total",
                    "Consensus gossip bytes, by direction and kind",
                ),
                &["direction", "kind"],
            )?,
            semantic: IntCounterVec::new(
                opts(
                    "semantic_total",
                    "Duplicates received, votes filtered, bundles sent, votes in bundles, queue overflows",
                ),
                &["counter"],
            )?,
            peers: IntGauge::with_opts(opts("peers", "Connected peers"))?,
            snapshots_served: IntCounterVec::new(
                opts(
                    "snapshot_requests_served_total",
                    "State-sync snapshot requests answered, by kind",
                ),
                &["kind"],
            )?,
        })
    }

    /// Registers every collector with `registry`.
    pub fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.messages.clone()))?;
        registry.register(Box::new(self.bytes.clone()))?;
        registry.register(Box::new(self.semantic.clone()))?;
        registry.register(Box::new(self.peers.clone()))?;
        registry.register(Box::new(self.snapshots_served.clone()))?;
        Ok(())
    }

    /// Counts one message of `bytes` bytes.
    pub fn observe(&self, direction: Direction, message: &Message, bytes: usize) {
        let direction = match direction {
            Direction::Sent => "sent",
            Direction::Received => "received",
        };
        let kind = kind(message);
        self.messages.with_label_values(&[direction, kind]).inc();
        self.bytes
            .with_label_values(&[direction, kind])
            .inc_by(bytes as u64);
    }

    /// Adds what the router counted since `before`.
    pub fn add_router_counters(&self, before: RouterCounters, now: RouterCounters) {
        let pairs = [
            (
                "duplicates_received",
                before.duplicates_received,
                now.duplicates_received,
            ),
            ("votes_filtered", before.votes_filtered, now.votes_filtered),
            ("bundles_sent", before.bundles_sent, now.bundles_sent),
            (
                "votes_in_bundles",
                before.votes_in_bundles,
                now.votes_in_bundles,
            ),
            (
                "queue_overflows",
                before.queue_overflows,
                now.queue_overflows,
            ),
        ];
        for (name, before, now) in pairs {
            self.semantic
                .with_label_values(&[name])
                .inc_by(now.saturating_sub(before));
        }
    }
}

/// The metric label of a message's kind.
pub fn kind(message: &Message) -> &'static str {
    match message {
        Message::Status { .. } => "status",
        Message::Proposal { .. } => "proposal",
        Message::Vote(vote) => match vote.message.vote_type {
            weft_consensus::VoteType::Prevote => "prevote",
            weft_consensus::VoteType::Precommit => "precommit",
        },
        Message::Bundle(_) => "bundle",
        Message::Commit(_) => "commit",
    }
}
