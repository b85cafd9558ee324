//! The collectors register, count by direction and kind, and export under `weft_p2p_`.

use prometheus::{Encoder, Registry, TextEncoder};
use weft_consensus::{Height, Round};
use weft_gossip::metrics::{Direction, GossipMetrics};
use weft_gossip::{Message, RouterCounters};

#[test]
fn collectors_count_and_export() {
    let registry = Registry::new();
    let metrics = GossipMetrics::new().unwrap();
    metrics.register(&registry).unwrap();
    let status = Message::Status {
        height: Height(1),
        round: Round(0),
    };
    let bytes = status.encode().len();
    metrics.observe(Direction::Sent, &status, bytes);
    metrics.observe(Direction::Sent, &status, bytes);
    metrics.observe(Direction::Received, &status, bytes);
    metrics.peers.set(3);
    let now = RouterCounters {
        votes_filtered: 5,
        bundles_sent: 2,
        ..RouterCounters::default()
    };
    metrics.add_router_counters(RouterCounters::default(), now);
    let mut text = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut text)
        .unwrap();
    let text = String::from_utf8(text).unwrap();
    for line in [
        "weft_p2p_messages_total{direction=\"sent\",kind=\"status\"} 2",
        "weft_p2p_messages_total{direction=\"received\",kind=\"status\"} 1",
        &format!(
            "weft_p2p_message_bytes_total{{direction=\"sent\",kind=\"status\"}} {}",
            2 * bytes
        ),
        "weft_p2p_semantic_total{counter=\"votes_filtered\"} 5",
        "weft_p2p_semantic_total{counter=\"bundles_sent\"} 2",
        "weft_p2p_peers 3",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    // Registering twice is refused, not silently doubled.
    assert!(metrics.register(&registry).is_err());
}
