//! An oversized frame is refused without allocating past the frame cap, and the stream, the
//! connection and the node carry on; a second one gets the peer banned and disconnected. Its
//! own test binary: the probe is a process-wide allocator, so no other test may run beside it.

// A test unwraps: a panic is how it fails (production code may not; see Cargo.toml).
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use weft_consensus::{Height, Round, ValueId, VoteType};
use weft_execution::probe::{AllocProbe, arm_everywhere, disarm_everywhere};
use weft_gossip::cluster::{Cluster, RawPeer};
use weft_gossip::score::{BAN_THRESHOLD, Offence};
use weft_gossip::{FRAME_BYTES_MAX, GossipEvent, GossipMode, Message, generate};

#[global_allocator]
static ALLOCATOR: AllocProbe = AllocProbe;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_is_skipped_without_allocating_and_the_node_carries_on() {
    let overlay = generate(2, 1, 0, 0).unwrap();
    let mut cluster = Cluster::start(overlay, GossipMode::Semantic, "weft-oversize", |_, _| {})
        .await
        .unwrap();
    cluster
        .wait_connected(Duration::from_secs(30))
        .await
        .unwrap();
    let mut events = cluster.take_events();
    let target = cluster.members[0].handle.clone();
    let mut raw = RawPeer::connect(&target.listen_addrs()[0], target.network())
        .await
        .unwrap();

    // A frame that announces 64 MiB and carries 8 MiB before the sender gives up on it is
    // the worst case: announced far past the cap, and more payload than the cap.
    let announced = 64usize << 20;
    let carried = 8usize << 20;
    arm_everywhere();
    raw.send(&(announced as u32).to_le_bytes()).await.unwrap();
    let chunk = vec![0x5Au8; 64 * 1024];
    for _ in 0..carried / chunk.len() {
        raw.send(&chunk).await.unwrap();
    }
    let until = Instant::now() + Duration::from_secs(30);
    while target.score(&raw.peer_id) < Offence::OversizedFrame.penalty() {
        assert!(
            Instant::now() < until,
            "the oversized frame was never charged"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Finish the announced payload, so that the stream is back at a frame boundary.
    for _ in 0..(announced - carried) / chunk.len() {
        raw.send(&chunk).await.unwrap();
    }
    let vote = cluster.vote(
        1,
        VoteType::Prevote,
        Height(3),
        Round(0),
        Some(ValueId([3; 32])),
    );
    raw.send(&Message::Vote(vote).to_frame()).await.unwrap();
    let delivered = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match events[0].recv().await {
                Some(GossipEvent::Consensus {
                    message: Message::Vote(v),
                    ..
                }) if v == vote => return,
                Some(_) => continue,
                None => panic!("node 0 stopped"),
            }
        }
    })
    .await;
    let largest = disarm_everywhere();
    assert!(
        delivered.is_ok(),
        "the vote after the oversized frame was not delivered"
    );
    assert!(
        largest < FRAME_BYTES_MAX,
        "largest allocation {largest} bytes while skipping a {announced}-byte frame"
    );
    assert_eq!(
        target.score(&raw.peer_id),
        Offence::OversizedFrame.penalty()
    );
    assert!(
        target.peers().iter().any(|p| p.peer == raw.peer_id),
        "the connection was dropped"
    );

    // A second oversized frame reaches the ban threshold: the peer is banned and
    // disconnected, still without a large allocation.
    assert!(2 * Offence::OversizedFrame.penalty() >= BAN_THRESHOLD);
    arm_everywhere();
    raw.send(&(announced as u32).to_le_bytes()).await.unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    while !target.is_banned(&raw.peer_id) || target.peers().iter().any(|p| p.peer == raw.peer_id) {
        assert!(
            Instant::now() < until,
            "the repeated offender was not banned and disconnected"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let largest = disarm_everywhere();
    assert!(
        largest < FRAME_BYTES_MAX,
        "largest allocation {largest} bytes while banning for a second oversized frame"
    );
    cluster.shutdown().await;
}
