//! Peers that misbehave, over real loopback connections. Each behaviour is survived (what the
//! node keeps for the peer stays bounded, and honest votes still flow both ways through the
//! node under attack) and costs the peer: a penalty, then a ban and a disconnection.
//!
//! - far-future votes, and one signer's flood of distinct votes;
//! - oversized frames (the allocation bound is `tests/oversize.rs`, under a global probe);
//! - a slow reader that accepts the node's stream and never reads it;
//! - a peer that opens more streams than the limit;
//! - a validator removed from the set that keeps voting.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::AsyncWriteExt;
use libp2p::PeerId;
use libp2p::identity::Keypair;
use parking_lot::Mutex;
use weft_consensus::{
    Height, HeightSets, Round, SignedVote, Validator, ValidatorId, ValidatorSet, ValueId, VoteType,
};
use weft_gossip::cluster::{Cluster, Inbound, RawPeer};
use weft_gossip::score::{BAN_THRESHOLD, Offence};
use weft_gossip::semantic::{FUTURE_HEIGHTS_MAX, VOTES_PER_SIGNER_HEIGHT_MAX};
use weft_gossip::{
    FRAME_BYTES_MAX, GossipConfig, GossipEvent, GossipHandle, GossipMode, Limits, Message, Router,
    generate,
};

const CHAIN: &str = "weft-abuse-test";
const DEADLINE: Duration = Duration::from_secs(20);
/// The height every honest node works on (and advertises).
const HEIGHT: Height = Height(10);
/// The member whose key the attackers' votes carry (a byzantine validator's genuine
/// signatures, relayed by the attacking peer).
const SIGNER: usize = 2;

/// The votes each member delivered to its node.
type Delivered = Arc<Mutex<HashSet<SignedVote>>>;

/// Three nodes in a triangle, each advertising [`HEIGHT`]; `tweak` adjusts each config.
async fn start(tweak: impl Fn(usize, &mut GossipConfig)) -> (Cluster, Vec<Delivered>) {
    let overlay = generate(3, 2, 0, 7).unwrap();
    let mut cluster = Cluster::start(overlay, GossipMode::Semantic, CHAIN, tweak)
        .await
        .unwrap();
    cluster.wait_connected(DEADLINE).await.unwrap();
    for member in &cluster.members {
        member.handle.advertise(HEIGHT, Round(0));
    }
    let delivered = cluster
        .take_events()
        .into_iter()
        .map(|mut events| {
            let seen = Delivered::default();
            let sink = seen.clone();
            tokio::spawn(async move {
                while let Some(event) = events.recv().await {
                    if let GossipEvent::Consensus {
                        message: Message::Vote(vote),
                        ..
                    } = event
                    {
                        sink.lock().insert(vote);
                    }
                }
            });
            seen
        })
        .collect();
    (cluster, delivered)
}

/// Waits for `done` to hold, failing with `describe()` at the deadline.
async fn wait_for(mut done: impl FnMut() -> bool, describe: impl Fn() -> String) {
    let until = Instant::now() + DEADLINE;
    while !done() {
        assert!(Instant::now() < until, "timed out: {}", describe());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn wait_banned_and_gone(target: &GossipHandle, peer: PeerId) {
    wait_for(
        || target.is_banned(&peer),
        || format!("never banned; score {}", target.score(&peer)),
    )
    .await;
    wait_for(
        || target.peers().iter().all(|p| p.peer != peer),
        || "the banned peer is still connected".into(),
    )
    .await;
}

/// Member 0 (under attack) and member 1 each publish a new vote at [`HEIGHT`] (tagged by
/// `round`); every other member must deliver both.
async fn honest_votes_flow(cluster: &Cluster, delivered: &[Delivered], round: u32) {
    let value = Some(ValueId([round as u8; 32]));
    let votes: Vec<SignedVote> = (0..2)
        .map(|m| cluster.vote(m, VoteType::Prevote, HEIGHT, Round(round), value))
        .collect();
    for (m, vote) in votes.iter().enumerate() {
        cluster.members[m].handle.publish(Message::Vote(*vote));
    }
    let missing = || -> Vec<(usize, usize)> {
        (0..cluster.members.len())
            .flat_map(|at| (0..2).map(move |from| (at, from)))
            .filter(|&(at, from)| at != from && !delivered[at].lock().contains(&votes[from]))
            .collect()
    };
    wait_for(
        || missing().is_empty(),
        || format!("honest votes (member, from) {:?} not delivered", missing()),
    )
    .await;
}

/// A validator removed from the set from the height after [`HEIGHT`] on keeps voting: its vote
/// of [`HEIGHT`], where it still is, is delivered; its vote of the next height is delivered
/// nowhere and costs the peer that sent it (the removed validator's own node) an
/// unknown-validator penalty, and honest votes still flow. (Both heights are ones the honest
/// nodes, advertising [`HEIGHT`], take from peers.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_validator_that_keeps_voting_is_ignored_and_charged() {
    let (cluster, delivered) = start(|_, _| {}).await;
    let removed = SIGNER;
    let all = cluster.validators.clone();
    let rest = all
        .apply_updates(&[Validator {
            id: cluster.members[removed].id,
            power: 0,
        }])
        .unwrap();
    let after = Height(HEIGHT.0 + 1);
    let sets = HeightSets::new([
        (HEIGHT, all.clone()),
        (after, rest.clone()),
        (Height(HEIGHT.0 + 2), rest),
    ])
    .unwrap();
    for member in &cluster.members {
        member.handle.set_validators(sets.clone());
    }
    let value = Some(ValueId([7; 32]));
    let old = cluster.vote(removed, VoteType::Prevote, HEIGHT, Round(5), value);
    let new = cluster.vote(removed, VoteType::Prevote, after, Round(0), value);
    let sender = cluster.members[removed].handle.peer_id();
    cluster.members[removed].handle.publish(Message::Vote(old));
    cluster.members[removed].handle.publish(Message::Vote(new));
    wait_for(
        || (0..2).all(|m| delivered[m].lock().contains(&old)),
        || "the vote of a height it was still in was not delivered".into(),
    )
    .await;
    wait_for(
        || {
            (0..2).all(|m| {
                cluster.members[m].handle.score(&sender) >= Offence::UnknownValidator.penalty()
            })
        },
        || {
            format!(
                "scores {:?}",
                (0..2)
                    .map(|m| cluster.members[m].handle.score(&sender))
                    .collect::<Vec<_>>()
            )
        },
    )
    .await;
    assert!(
        (0..2).all(|m| !delivered[m].lock().contains(&new)),
        "a removed validator's vote was delivered"
    );
    honest_votes_flow(&cluster, &delivered, 3).await;
    cluster.shutdown().await;
}

fn height_of(message: &Message) -> Height {
    match message {
        Message::Vote(vote) => vote.message.height,
        Message::Proposal { proposal, .. } => proposal.message.height,
        other => panic!("held() returned {other:?}"),
    }
}

/// Genuine votes of one validator for heights far beyond the window cost the relaying peer
/// and leave the height in progress alone (before the window, one such vote made the router
/// forget every honest vote of the current height). A flood of distinct votes from one signer
/// at the current height is bounded per signer and costs the peer once past the bound, while
/// the honest node relaying the first of them is not charged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn far_future_and_flooded_votes_cost_the_peer_and_spare_the_height_in_progress() {
    let (cluster, delivered) = start(|_, _| {}).await;
    let target = cluster.members[0].handle.clone();
    let addr = target.listen_addrs()[0].clone();
    honest_votes_flow(&cluster, &delivered, 1000).await;

    let mut far = RawPeer::connect(&addr, target.network()).await.unwrap();
    let to_ban = BAN_THRESHOLD.div_ceil(Offence::FarFuture.penalty()) as u64;
    for i in 0..2 * to_ban {
        let vote = cluster.vote(
            SIGNER,
            VoteType::Precommit,
            Height(1_000_000 + i),
            Round(0),
            Some(ValueId([7; 32])),
        );
        if far.send(&Message::Vote(vote).to_frame()).await.is_err() {
            break;
        }
    }
    wait_banned_and_gone(&target, far.peer_id).await;
    let ceiling = HEIGHT.0 + FUTURE_HEIGHTS_MAX;
    let held = target.held(Height(0));
    assert!(
        held.iter().all(|m| height_of(m).0 <= ceiling),
        "a vote beyond height {ceiling} is held"
    );
    assert!(
        delivered[0]
            .lock()
            .iter()
            .all(|v| v.message.height.0 <= ceiling),
        "a vote beyond height {ceiling} reached the node"
    );
    honest_votes_flow(&cluster, &delivered, 1001).await;

    let mut flood = RawPeer::connect(&addr, target.network()).await.unwrap();
    let bound = VOTES_PER_SIGNER_HEIGHT_MAX as usize;
    let to_ban = BAN_THRESHOLD.div_ceil(Offence::VoteFlood.penalty()) as usize;
    let mut sent = 0;
    for i in 0..(bound + 2 * to_ban) as u32 {
        let mut value = [0xF0; 32];
        value[..4].copy_from_slice(&i.to_le_bytes());
        let vote = cluster.vote(
            SIGNER,
            VoteType::Prevote,
            HEIGHT,
            Round(0),
            Some(ValueId(value)),
        );
        if flood.send(&Message::Vote(vote).to_frame()).await.is_err() {
            break;
        }
        sent += 1;
    }
    assert!(sent > bound, "the connection closed after {sent} votes");
    wait_banned_and_gone(&target, flood.peer_id).await;
    let signer = cluster.members[SIGNER].id;
    let held_of_signer = target
        .held(HEIGHT)
        .iter()
        .filter(|m| matches!(m, Message::Vote(v) if v.message.validator == signer))
        .count();
    assert!(
        held_of_signer <= bound,
        "{held_of_signer} votes of one signer held at one height"
    );
    // Node 0 relayed the signer's votes up to the bound: an honest relay, not charged.
    for member in &cluster.members[1..] {
        assert_eq!(member.handle.score(&target.peer_id()), 0);
    }
    honest_votes_flow(&cluster, &delivered, 1002).await;
    cluster.shutdown().await;
}

/// An oversized frame costs its sender at once (the node skips its payload through a fixed
/// buffer); a second one, on a second stream, gets the peer banned and disconnected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frames_cost_the_peer_and_repeated_ones_ban_it() {
    let (cluster, delivered) = start(|_, _| {}).await;
    let target = cluster.members[0].handle.clone();
    let mut raw = RawPeer::connect(&target.listen_addrs()[0], target.network())
        .await
        .unwrap();
    let oversized = ((FRAME_BYTES_MAX + 1) as u32).to_le_bytes();
    raw.send(&oversized).await.unwrap();
    raw.send(&[0xAB; 64 * 1024]).await.unwrap();
    wait_for(
        || target.score(&raw.peer_id) == Offence::OversizedFrame.penalty(),
        || {
            format!(
                "score {} after one oversized frame",
                target.score(&raw.peer_id)
            )
        },
    )
    .await;
    let limit = Limits::default().streams_per_peer_max;
    assert!(target.inbound_streams(&raw.peer_id).unwrap() <= limit);
    honest_votes_flow(&cluster, &delivered, 2000).await;

    let mut second = raw.open_stream().await.unwrap();
    second.write_all(&oversized).await.unwrap();
    second.flush().await.unwrap();
    wait_banned_and_gone(&target, raw.peer_id).await;
    honest_votes_flow(&cluster, &delivered, 2001).await;
    cluster.shutdown().await;
}

/// Node 0 publishes a proposal whose block is larger than any stream window, and waits for
/// its writer to `slow` to take it: the writer then blocks in it.
async fn stall(cluster: &Cluster, slow: &PeerId, round: u32) {
    let target = &cluster.members[0].handle;
    wait_for(
        || target.queued(slow).is_some(),
        || "the slow reader is not connected".into(),
    )
    .await;
    let proposal = cluster.proposal(0, HEIGHT, Round(round), ValueId([0xB; 32]));
    target.publish(Message::Proposal {
        proposal,
        block: Arc::from(vec![0x5A; 2 << 20]),
    });
    wait_for(
        || target.queued(slow).is_none_or(|queued| queued == 0),
        || format!("the writer never took the block: {:?}", target.queued(slow)),
    )
    .await;
}

/// A peer that accepts the node's stream and never reads it: its queue stays within the
/// limit (the oldest messages are dropped) while the node serves honest peers; after
/// `write_stall_max` it is charged and disconnected, and coming back to stall again gets it
/// banned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_is_bounded_charged_and_dropped() {
    const QUEUE_MAX: usize = 64;
    let (cluster, delivered) = start(|i, config| {
        if i == 0 {
            config.limits.peer_queue_max = QUEUE_MAX;
            config.limits.write_stall_max = Duration::from_secs(1);
        }
    })
    .await;
    let target = cluster.members[0].handle.clone();
    let addr = target.listen_addrs()[0].clone();
    let keypair = Keypair::generate_ed25519();
    let slow = keypair.public().to_peer_id();
    let raw = RawPeer::connect_as(keypair.clone(), &addr, target.network(), Inbound::Hold)
        .await
        .unwrap();
    stall(&cluster, &slow, 0).await;
    let overflows = target.counters().queue_overflows;
    for round in 0..4 * QUEUE_MAX as u32 {
        let vote = cluster.vote(
            0,
            VoteType::Prevote,
            HEIGHT,
            Round(round),
            Some(ValueId([1; 32])),
        );
        target.publish(Message::Vote(vote));
        if let Some(queued) = target.queued(&slow) {
            assert!(
                queued <= QUEUE_MAX,
                "{queued} messages queued for the slow reader"
            );
        }
    }
    assert!(target.counters().queue_overflows > overflows);
    honest_votes_flow(&cluster, &delivered, 3000).await;
    wait_for(
        || target.score(&slow) == Offence::SlowReader.penalty(),
        || format!("slow reader's score {}", target.score(&slow)),
    )
    .await;
    wait_for(
        || target.queued(&slow).is_none(),
        || "the slow reader is still connected".into(),
    )
    .await;
    drop(raw);

    // Each return stalls again, until the peer is banned.
    let returns = BAN_THRESHOLD.div_ceil(Offence::SlowReader.penalty()) - 1;
    for round in 1..=returns {
        let before = target.score(&slow);
        let raw = RawPeer::connect_as(keypair.clone(), &addr, target.network(), Inbound::Hold)
            .await
            .unwrap();
        stall(&cluster, &slow, round).await;
        wait_for(
            || target.is_banned(&slow) || target.score(&slow) > before,
            || "the returning slow reader was not charged".into(),
        )
        .await;
        drop(raw);
    }
    wait_banned_and_gone(&target, slow).await;
    honest_votes_flow(&cluster, &delivered, 3001).await;
    cluster.shutdown().await;
}

/// Streams past `streams_per_peer_max` are reset and charged; the node never reads more than
/// the limit for one peer, and enough excess gets the peer banned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_opening_many_streams_is_capped_charged_and_banned() {
    let (cluster, delivered) = start(|_, _| {}).await;
    let target = cluster.members[0].handle.clone();
    let mut raw = RawPeer::connect(&target.listen_addrs()[0], target.network())
        .await
        .unwrap();
    let peer = raw.peer_id;
    let limit = Limits::default().streams_per_peer_max;
    // libp2p-stream hands inbound streams over through a one-slot channel and resets those
    // that find it full, so each stream waits for the node to take the one before.
    let mut streams = Vec::new();
    for open in 1..=limit {
        if open > 1 {
            streams.push(raw.open_stream().await.unwrap());
        }
        wait_for(
            || target.inbound_streams(&peer) == Some(open),
            || {
                format!(
                    "{:?} streams read, not {open}",
                    target.inbound_streams(&peer)
                )
            },
        )
        .await;
    }
    let to_ban = BAN_THRESHOLD.div_ceil(Offence::ExcessStreams.penalty());
    for excess in 1..=to_ban {
        let Ok(stream) = raw.open_stream().await else {
            break;
        };
        streams.push(stream);
        wait_for(
            || {
                target.is_banned(&peer)
                    || target.score(&peer) == excess * Offence::ExcessStreams.penalty()
            },
            || {
                format!(
                    "score {} after {excess} excess streams",
                    target.score(&peer)
                )
            },
        )
        .await;
        if let Some(open) = target.inbound_streams(&peer) {
            assert!(open <= limit, "{open} streams read for one peer");
        }
        if excess == 1 {
            honest_votes_flow(&cluster, &delivered, 4000).await;
        }
    }
    wait_banned_and_gone(&target, peer).await;
    honest_votes_flow(&cluster, &delivered, 4001).await;
    cluster.shutdown().await;
}

fn router_vote(validator: u8, height: u64, value: u32) -> SignedVote {
    let mut id = [0; 32];
    id[..4].copy_from_slice(&value.to_le_bytes());
    weft_consensus::Signed {
        message: weft_consensus::Vote {
            vote_type: VoteType::Prevote,
            height: Height(height),
            round: Round(0),
            value: Some(ValueId(id)),
            validator: ValidatorId([validator; 32]),
        },
        signature: weft_consensus::Signature([validator; 64]),
    }
}

/// The router alone: once the node has advertised its height, a vote beyond the window is
/// neither delivered nor kept, leaves the height in progress alone, and is blamed on the
/// sender only if it is also beyond the window of the height the sender advertised; a
/// signer's votes past its bound are counted against the peer that sent them.
#[test]
fn the_router_keeps_its_window_and_blames_the_sender() {
    let validators = ValidatorSet::new((1..=4).map(|i| Validator {
        id: ValidatorId([i; 32]),
        power: 1,
    }))
    .unwrap();
    let mut router = Router::new(GossipMode::Semantic, validators, 2);
    router.advertise(HEIGHT, Round(0));
    let far = HEIGHT.0 + FUTURE_HEIGHTS_MAX + 1;
    // Peer 0 never advertised: blamed. Peer 1 advertised a height whose window holds the
    // vote (it may be ahead of us): refused, not blamed.
    router.on_verified(
        1,
        Message::Status {
            height: Height(far),
            round: Round(0),
        },
    );
    for (peer, blamed) in [(0, 1), (1, 0)] {
        let routed = router.on_verified_checked(peer, Message::Vote(router_vote(1, far, 0)));
        assert_eq!((routed.fresh.len(), routed.far_future), (0, blamed));
    }
    let within = router_vote(2, HEIGHT.0 + FUTURE_HEIGHTS_MAX, 0);
    assert_eq!(router.on_verified(0, Message::Vote(within)).len(), 1);
    // The height in progress is still kept: a new vote for it is fresh.
    let current = router_vote(3, HEIGHT.0, 0);
    assert_eq!(router.on_verified(0, Message::Vote(current)).len(), 1);
    assert!(router.held(Height(far)).is_empty());
    assert_eq!(router.held(HEIGHT).len(), 2);

    let bound = VOTES_PER_SIGNER_HEIGHT_MAX;
    let flooded: u32 = (0..bound + 5)
        .map(|i| {
            let vote = router_vote(4, HEIGHT.0, i);
            router.on_verified_checked(1, Message::Vote(vote)).flooded
        })
        .sum();
    assert_eq!(flooded, 5);
    // The first votes of the flood are not blamed on the relay that sent them on.
    let relayed: u32 = (0..bound)
        .map(|i| {
            let vote = router_vote(4, HEIGHT.0, i);
            router.on_verified_checked(0, Message::Vote(vote)).flooded
        })
        .sum();
    assert_eq!(relayed, 0);
}
