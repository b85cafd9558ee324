//! The transport on loopback: real libp2p nodes in one process, on ephemeral ports.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use weft_consensus::{CommitCertificate, Height, Round, SignedVote, ValueId, Vote, VoteType};
use weft_gossip::cluster::{Cluster, RawPeer, sign_vote, validator_id, validator_key};
use weft_gossip::score::Offence;
use weft_gossip::{
    GossipEvent, GossipMode, Hooks, Message, SyncBlock, SyncError, TxVerdict, VoteBundle, generate,
};

const DEADLINE: Duration = Duration::from_secs(30);
const CHAIN: &str = "weft-net-test";

/// (voter, type, height, value) of every vote a node delivered, and the proposals it delivered.
#[derive(Default)]
struct Seen {
    votes: BTreeSet<(usize, VoteType, Height, Option<ValueId>)>,
    proposals: BTreeSet<(Height, ValueId)>,
    txs: Vec<Vec<u8>>,
}

/// Collects each node's events in the background.
fn collect(cluster: &mut Cluster) -> Vec<Arc<Mutex<Seen>>> {
    let ids: Vec<_> = cluster.members.iter().map(|m| m.id).collect();
    cluster
        .take_events()
        .into_iter()
        .map(|mut events| {
            let seen = Arc::new(Mutex::new(Seen::default()));
            let sink = seen.clone();
            let ids = ids.clone();
            tokio::spawn(async move {
                while let Some(event) = events.recv().await {
                    let mut seen = sink.lock();
                    match event {
                        GossipEvent::Consensus {
                            message: Message::Vote(vote),
                            ..
                        } => {
                            let m = vote.message;
                            let voter = ids.iter().position(|id| *id == m.validator).unwrap();
                            seen.votes.insert((voter, m.vote_type, m.height, m.value));
                        }
                        GossipEvent::Consensus {
                            message: Message::Proposal { proposal: p, .. },
                            ..
                        } => {
                            seen.proposals.insert((p.message.height, p.message.value));
                        }
                        GossipEvent::Txs { txs, .. } => seen.txs.extend(txs),
                        GossipEvent::Consensus { message, .. } => {
                            panic!("gossip delivered {message:?}, not a vote or proposal")
                        }
                    }
                }
            });
            seen
        })
        .collect()
}

/// Waits for `done` to hold, failing with `describe()` at the deadline.
async fn wait_for(mut done: impl FnMut() -> bool, describe: impl Fn() -> String) {
    let until = Instant::now() + DEADLINE;
    while !done() {
        assert!(Instant::now() < until, "timed out: {}", describe());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

const AGREED: ValueId = ValueId([0xA; 32]);
const SPLIT: [ValueId; 2] = [ValueId([0xB; 32]), ValueId([0xC; 32])];

/// Every node publishes a prevote and a precommit at height 1 (all for one value: quorums form)
/// and at height 2 (split 5/5: no value reaches a quorum); node 0 proposes at height 1.
async fn delivery_over_sparse_overlay(mode: GossipMode) {
    let n = 10;
    let overlay = generate(n, 3, 1, 11).unwrap();
    let mut cluster = Cluster::start(overlay, mode, CHAIN, |_, _| {})
        .await
        .unwrap();
    cluster.wait_connected(DEADLINE).await.unwrap();
    let seen = collect(&mut cluster);
    cluster.members[0]
        .handle
        .publish(Message::proposal_without_block(cluster.proposal(
            0,
            Height(1),
            Round(0),
            AGREED,
        )));
    for i in 0..n {
        for vote_type in [VoteType::Prevote, VoteType::Precommit] {
            let agreed = cluster.vote(i, vote_type, Height(1), Round(0), Some(AGREED));
            let split = cluster.vote(i, vote_type, Height(2), Round(0), Some(SPLIT[i % 2]));
            cluster.members[i].handle.publish(Message::Vote(agreed));
            cluster.members[i].handle.publish(Message::Vote(split));
        }
    }
    let quorum = 7; // of 10, power 1 each
    let complete = |node: usize, seen: &Seen| -> Result<(), String> {
        if node != 0 && !seen.proposals.contains(&(Height(1), AGREED)) {
            return Err(format!("node {node} lacks the proposal"));
        }
        for vote_type in [VoteType::Prevote, VoteType::Precommit] {
            // Split votes: no quorum anywhere, so every vote must reach every node.
            for voter in (0..n).filter(|&v| v != node) {
                let value = Some(SPLIT[voter % 2]);
                if !seen.votes.contains(&(voter, vote_type, Height(2), value)) {
                    return Err(format!(
                        "node {node} lacks {voter}'s {vote_type:?} at height 2"
                    ));
                }
            }
            // Agreed votes: plain delivers all; semantic at least the quorum (own vote counted).
            let got = seen
                .votes
                .iter()
                .filter(|(_, t, h, _)| *t == vote_type && *h == Height(1))
                .count();
            let needed = match mode {
                GossipMode::Plain => n - 1,
                GossipMode::Semantic => quorum - 1,
            };
            if got < needed {
                return Err(format!(
                    "node {node} holds {got} {vote_type:?}s at height 1"
                ));
            }
        }
        Ok(())
    };
    wait_for(
        || (0..n).all(|i| complete(i, &seen[i].lock()).is_ok()),
        || {
            (0..n)
                .filter_map(|i| complete(i, &seen[i].lock()).err())
                .collect::<Vec<_>>()
                .join("; ")
        },
    )
    .await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_mode_delivers_every_vote_to_every_node_over_loopback() {
    delivery_over_sparse_overlay(GossipMode::Plain).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semantic_mode_never_withholds_a_vote_a_node_needs_over_loopback() {
    delivery_over_sparse_overlay(GossipMode::Semantic).await;
}

fn corrupt(mut vote: SignedVote) -> SignedVote {
    vote.signature.0[10] ^= 0x40;
    vote
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_signature_in_a_bundle_costs_only_itself_and_its_sender() {
    let overlay = generate(4, 3, 1, 1).unwrap();
    let mut cluster = Cluster::start(overlay, GossipMode::Semantic, CHAIN, |_, _| {})
        .await
        .unwrap();
    cluster.wait_connected(DEADLINE).await.unwrap();
    let seen = collect(&mut cluster);
    let target = cluster.members[0].handle.clone();
    let mut raw = RawPeer::connect(&target.listen_addrs()[0], target.network())
        .await
        .unwrap();

    let value = Some(ValueId([9; 32]));
    let votes: Vec<SignedVote> = (1..4)
        .map(|i| cluster.vote(i, VoteType::Prevote, Height(5), Round(0), value))
        .collect();
    let mut bundle = VoteBundle::from_votes(&votes).unwrap();
    let bad = cluster.members[2].id;
    for signer in &mut bundle.signers {
        if signer.0 == bad {
            signer.1.0[3] ^= 1;
        }
    }
    raw.send(&Message::Bundle(bundle).to_frame()).await.unwrap();

    let wanted = |seen: &Seen| {
        seen.votes
            .contains(&(1, VoteType::Prevote, Height(5), value))
            && seen
                .votes
                .contains(&(3, VoteType::Prevote, Height(5), value))
    };
    wait_for(
        || wanted(&seen[0].lock()),
        || "node 0 lacks the valid votes".into(),
    )
    .await;
    // The valid votes are relayed on: node 1 learns node 3's vote.
    wait_for(
        || {
            seen[1]
                .lock()
                .votes
                .contains(&(3, VoteType::Prevote, Height(5), value))
        },
        || "node 1 lacks the relayed vote".into(),
    )
    .await;
    assert!(
        !seen[0]
            .lock()
            .votes
            .contains(&(2, VoteType::Prevote, Height(5), value)),
        "the vote with the bad signature was delivered"
    );
    assert_eq!(target.score(&raw.peer_id), Offence::BadSignature.penalty());

    // The genuine vote of validator 2 is still accepted after its forgery was refused.
    raw.send(&Message::Vote(votes[1]).to_frame()).await.unwrap();
    wait_for(
        || {
            seen[0]
                .lock()
                .votes
                .contains(&(2, VoteType::Prevote, Height(5), value))
        },
        || "node 0 refused the genuine vote after the forged one".into(),
    )
    .await;

    // A lone forged vote and a malformed payload cost more; past the threshold, a ban.
    raw.send(&Message::Vote(corrupt(votes[0])).to_frame())
        .await
        .unwrap();
    let mut malformed = 3u32.to_le_bytes().to_vec();
    malformed.extend_from_slice(&[0xEE, 1, 2]);
    raw.send(&malformed).await.unwrap();
    let expected = 2 * Offence::BadSignature.penalty() + Offence::Malformed.penalty();
    wait_for(
        || target.score(&raw.peer_id) >= expected,
        || format!("score {} short of {expected}", target.score(&raw.peer_id)),
    )
    .await;
    for _ in 0..4 {
        raw.send(&Message::Vote(corrupt(votes[2])).to_frame())
            .await
            .unwrap();
    }
    wait_for(
        || target.is_banned(&raw.peer_id),
        || "the peer was never banned".into(),
    )
    .await;
    wait_for(
        || target.peers().iter().all(|p| p.peer != raw.peer_id),
        || "the banned peer is still connected".into(),
    )
    .await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txs_travel_in_validated_batches_and_bad_batches_cost_the_sender() {
    let overlay = generate(3, 2, 0, 3).unwrap();
    let validator = |txs: &[Vec<u8>]| -> Vec<TxVerdict> {
        txs.iter()
            .map(|tx| match tx.first() {
                Some(b'o') => TxVerdict::Accept,
                Some(b'i') => TxVerdict::Ignore,
                _ => TxVerdict::Reject,
            })
            .collect()
    };
    let mut cluster = Cluster::start_with_hooks(
        overlay,
        GossipMode::Semantic,
        CHAIN,
        |_, _| {},
        |_| Hooks {
            txs: Arc::new(validator),
            ..Hooks::default()
        },
    )
    .await
    .unwrap();
    cluster.wait_connected(DEADLINE).await.unwrap();
    let seen = collect(&mut cluster);
    let sender = cluster.members[0].handle.clone();
    // Gossipsub learns subscriptions after connecting; publish fresh txs until they arrive.
    let mut round = 0u32;
    wait_for(
        || {
            let arrived = (1..3).all(|i| seen[i].lock().txs.iter().any(|tx| tx[0] == b'o'));
            if !arrived {
                round += 1;
                let txs = vec![
                    format!("ok-{round}").into_bytes(),
                    format!("ig-{round}").into_bytes(),
                ];
                let sender = sender.clone();
                tokio::spawn(async move { sender.publish_txs(txs).await.unwrap() });
            }
            arrived
        },
        || "txs never arrived".into(),
    )
    .await;
    for seen in &seen[1..] {
        let seen = seen.lock();
        assert!(
            seen.txs.iter().all(|tx| tx[0] == b'o'),
            "an ignored tx was delivered"
        );
    }
    sender
        .publish_txs(vec![b"ok-mixed".to_vec(), b"bad".to_vec()])
        .await
        .unwrap();
    let id = sender.peer_id();
    wait_for(
        || (1..3).any(|i| cluster.members[i].handle.score(&id) > 0),
        || "the bad batch cost its sender nothing".into(),
    )
    .await;
    for seen in &seen[1..] {
        assert!(
            !seen.lock().txs.contains(&b"ok-mixed".to_vec()),
            "a tx from a rejected batch was delivered"
        );
    }
    cluster.shutdown().await;
}

fn block_at(height: u64, bytes: usize) -> SyncBlock {
    let key = validator_key(CHAIN, 0);
    let value = ValueId([height as u8; 32]);
    let precommit = Vote {
        vote_type: VoteType::Precommit,
        height: Height(height),
        round: Round(0),
        value: Some(value),
        validator: validator_id(&key),
    };
    SyncBlock {
        height: Height(height),
        block: vec![height as u8; bytes],
        certificate: CommitCertificate {
            height: Height(height),
            round: Round(0),
            value,
            precommits: vec![sign_vote(&key, CHAIN, precommit)],
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_sync_serves_bounded_contiguous_ranges() {
    let overlay = generate(3, 2, 0, 5).unwrap();
    let cluster = Cluster::start_with_hooks(
        overlay,
        GossipMode::Semantic,
        CHAIN,
        |_, _| {},
        |i| Hooks {
            blocks: Arc::new(move |from: Height, count: u32, _max: usize| match i {
                // An honest store of heights 1..=100.
                1 => (from.0..=100)
                    .take(count as usize)
                    .map(|h| block_at(h, 1_000))
                    .collect(),
                // A liar: certificates for other heights (a Weft server trims wrong heights
                // itself, so this is the lie that reaches the wire).
                2 => (from.0..from.0 + 3)
                    .map(|h| SyncBlock {
                        certificate: block_at(h + 1, 0).certificate,
                        ..block_at(h, 10)
                    })
                    .collect(),
                _ => Vec::new(),
            }),
            ..Hooks::default()
        },
    )
    .await
    .unwrap();
    cluster.wait_connected(DEADLINE).await.unwrap();
    let client = cluster.members[0].handle.clone();
    let honest = cluster.members[1].handle.peer_id();
    let liar = cluster.members[2].handle.peer_id();

    let blocks = client.request_blocks(honest, Height(5), 10).await.unwrap();
    let heights: Vec<u64> = blocks.iter().map(|b| b.height.0).collect();
    assert_eq!(heights, (5..15).collect::<Vec<_>>());
    assert_eq!(blocks[0], block_at(5, 1_000));

    let tail = client.request_blocks(honest, Height(99), 10).await.unwrap();
    assert_eq!(tail.len(), 2);
    assert!(
        client
            .request_blocks(honest, Height(101), 10)
            .await
            .unwrap()
            .is_empty()
    );

    assert_eq!(
        client.request_blocks(honest, Height(1), 0).await,
        Err(SyncError::BadCount(0))
    );
    assert_eq!(
        client.request_blocks(honest, Height(1), 65).await,
        Err(SyncError::BadCount(65))
    );
    let lie = client.request_blocks(liar, Height(7), 3).await;
    assert!(matches!(lie, Err(SyncError::BadResponse(_))), "{lie:?}");
    assert!(client.score(&liar) > 0, "the liar was not charged");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_static_peer_is_redialled() {
    let overlay = generate(2, 1, 0, 0).unwrap();
    let cluster = Cluster::start(overlay, GossipMode::Semantic, CHAIN, |_, config| {
        config.limits.redial_min = Duration::from_millis(50);
    })
    .await
    .unwrap();
    cluster.wait_connected(DEADLINE).await.unwrap();
    // Node 1 drops node 0 (a short ban); node 0 must come back by itself once it ends.
    let dialler = cluster.members[0].handle.peer_id();
    cluster.members[1]
        .handle
        .ban_for(dialler, Duration::from_millis(300));
    wait_for(
        || cluster.members[1].handle.peers().is_empty(),
        || "the ban did not disconnect".into(),
    )
    .await;
    wait_for(
        || cluster.members[1].handle.peers().len() == 1,
        || "node 0 did not redial after the ban ended".into(),
    )
    .await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_identity_comes_from_its_key_file_and_connections_are_limited() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node_key.json");
    let secret = weft_genesis::SecretKey::generate();
    weft_genesis::write_key_file(&path, &secret).unwrap();
    let keypair = weft_gossip::net::keypair_from_key_file(&path).unwrap();
    let expected = weft_gossip::net::keypair_from_secret(&secret)
        .public()
        .to_peer_id();

    let validators = Cluster::start(
        generate(2, 1, 0, 0).unwrap(),
        GossipMode::Plain,
        CHAIN,
        |_, _| {},
    )
    .await
    .unwrap();
    let mut config = weft_gossip::GossipConfig::new(keypair, CHAIN, validators.validators.clone());
    config.limits.connections_max = 1;
    let (node, _events) = weft_gossip::spawn(config, Hooks::default()).await.unwrap();
    assert_eq!(node.peer_id(), expected);

    let first = RawPeer::connect(&node.listen_addrs()[0], node.network())
        .await
        .unwrap();
    wait_for(
        || node.peers().len() == 1,
        || "the first peer never connected".into(),
    )
    .await;
    assert!(
        RawPeer::connect(&node.listen_addrs()[0], node.network())
            .await
            .is_err(),
        "a connection past the limit was accepted"
    );
    assert_eq!(node.peers().len(), 1);
    assert_eq!(node.peers()[0].peer, first.peer_id);
    node.shutdown().await;
    validators.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_genuine_proposal_paired_with_another_block_is_refused() {
    let overlay = generate(2, 1, 0, 2).unwrap();
    let mut cluster = Cluster::start_with_hooks(
        overlay,
        GossipMode::Semantic,
        CHAIN,
        |_, _| {},
        |_| Hooks {
            block_check: Arc::new(|_: &weft_consensus::SignedProposal, block: &[u8]| {
                block == b"the block"
            }),
            ..Hooks::default()
        },
    )
    .await
    .unwrap();
    cluster.wait_connected(DEADLINE).await.unwrap();
    let seen = collect(&mut cluster);
    let target = cluster.members[0].handle.clone();
    let mut raw = RawPeer::connect(&target.listen_addrs()[0], target.network())
        .await
        .unwrap();
    let proposal = cluster.proposal(1, Height(4), Round(0), AGREED);
    let forged = Message::Proposal {
        proposal,
        block: Arc::from(&b"another block"[..]),
    };
    raw.send(&forged.to_frame()).await.unwrap();
    wait_for(
        || target.score(&raw.peer_id) == Offence::Malformed.penalty(),
        || "the forged pairing was not charged".into(),
    )
    .await;
    assert!(
        seen[0].lock().proposals.is_empty(),
        "the forged pairing was delivered"
    );
    let genuine = Message::Proposal {
        proposal,
        block: Arc::from(&b"the block"[..]),
    };
    raw.send(&genuine.to_frame()).await.unwrap();
    wait_for(
        || seen[0].lock().proposals.contains(&(Height(4), AGREED)),
        || "the genuine pairing was refused after the forged one".into(),
    )
    .await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_connects_late_receives_the_heights_in_progress() {
    let overlay = generate(2, 1, 0, 4).unwrap();
    let cluster = Cluster::start(overlay, GossipMode::Semantic, CHAIN, |_, _| {})
        .await
        .unwrap();
    cluster.wait_connected(DEADLINE).await.unwrap();
    let proposal = cluster.proposal(0, Height(1), Round(0), AGREED);
    cluster.members[0]
        .handle
        .publish(Message::proposal_without_block(proposal));
    for i in 0..2 {
        let vote = cluster.vote(i, VoteType::Prevote, Height(1), Round(0), Some(AGREED));
        cluster.members[i].handle.publish(Message::Vote(vote));
    }
    // A third node, with a validator key outside the cluster's, joins after all that.
    let keypair = libp2p::identity::Keypair::generate_ed25519();
    let mut config = weft_gossip::GossipConfig::new(keypair, CHAIN, cluster.validators.clone());
    config.static_peers = vec![cluster.members[0].handle.listen_addrs()[0].clone()];
    let (late, mut events) = weft_gossip::spawn(config, Hooks::default()).await.unwrap();
    let mut got = (false, BTreeSet::new());
    let until = Instant::now() + DEADLINE;
    while !(got.0 && got.1.len() == 2) {
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Some(GossipEvent::Consensus { message, .. })) => match message {
                Message::Proposal { proposal: p, .. } => got.0 |= p == proposal,
                Message::Vote(v) => {
                    got.1.insert(v.message.validator);
                }
                _ => {}
            },
            other => panic!("the late peer got {got:?} and then {other:?}"),
        }
    }
    late.shutdown().await;
    cluster.shutdown().await;
}

/// How long an isolated node is watched to stay cut off (a bounded check, not a wait).
const ISOLATION_HOLD: Duration = Duration::from_secs(1);

/// Isolates `node` of a fully connected three-node cluster whose nodes redial after
/// `redial_min..=redial_max`: the node loses both peers and they lose it, it stays cut off
/// while the others knock, a vote published meanwhile reaches it only after healing, and
/// healing reconnects it to both.
async fn check_isolation(node: usize, redial: (Duration, Duration)) {
    let overlay = generate(3, 2, 0, 6).unwrap();
    let mut cluster = Cluster::start(overlay, GossipMode::Semantic, CHAIN, |_, config| {
        (config.limits.redial_min, config.limits.redial_max) = redial;
    })
    .await
    .unwrap();
    cluster.wait_connected(DEADLINE).await.unwrap();
    let seen = collect(&mut cluster);
    let handles: Vec<_> = cluster.members.iter().map(|m| m.handle.clone()).collect();
    let cut = handles[node].clone();
    let others: Vec<usize> = (0..3).filter(|&i| i != node).collect();
    let sees_cut = |i: usize| handles[i].peers().iter().any(|p| p.peer == cut.peer_id());
    let report = || {
        let counts: Vec<usize> = handles.iter().map(|h| h.peers().len()).collect();
        format!("node {node} isolated; peers per node {counts:?}")
    };

    cut.set_isolated(true);
    assert!(cut.is_isolated());
    wait_for(
        || cut.peers().is_empty() && !others.iter().any(|&i| sees_cut(i)),
        || format!("not cut off: {}", report()),
    )
    .await;
    let vote = cluster.vote(
        others[0],
        VoteType::Prevote,
        Height(1),
        Round(0),
        Some(AGREED),
    );
    handles[others[0]].publish(Message::Vote(vote));
    let vote_key = (others[0], VoteType::Prevote, Height(1), Some(AGREED));
    let hold_until = Instant::now() + ISOLATION_HOLD;
    while Instant::now() < hold_until {
        assert!(
            cut.peers().is_empty() && !others.iter().any(|&i| sees_cut(i)),
            "a connection got through: {}",
            report()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !seen[node].lock().votes.contains(&vote_key),
        "the isolated node received a vote"
    );

    cut.set_isolated(false);
    assert!(!cut.is_isolated());
    wait_for(
        || cut.peers().len() == 2 && others.iter().all(|&i| sees_cut(i)),
        || format!("not healed: {}", report()),
    )
    .await;
    wait_for(
        || seen[node].lock().votes.contains(&vote_key),
        || "the vote held during the isolation never arrived".into(),
    )
    .await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_dialler_redials_its_static_peers_at_once_on_healing() {
    // Node 0 dials both others. A backoff longer than the deadline: only healing's immediate
    // dial can reconnect in time.
    let long = DEADLINE * 2;
    check_isolation(0, (long, long)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_node_refuses_peers_that_keep_dialling_it() {
    // Node 2 is dialled by both others, which keep knocking every few hundred ms.
    check_isolation(2, (Duration::from_millis(50), Duration::from_millis(400))).await;
}
