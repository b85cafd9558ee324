//! Two networks never mix: a peer is heard only once it has stated our chain id and genesis
//! hash, and a peer of another network is disconnected and refused. Static peers may be
//! named by DNS. Real libp2p nodes on loopback.

use std::time::{Duration, Instant};

use libp2p::Multiaddr;
use libp2p::identity::Keypair;
use tokio::sync::mpsc;
use weft_consensus::{Height, Round, ValueId, VoteType};
use weft_gossip::cluster::{Cluster, RawPeer};
use weft_gossip::net::NetworkId;
use weft_gossip::{GossipConfig, GossipEvent, GossipHandle, GossipMode, Hooks, Message, generate};

const DEADLINE: Duration = Duration::from_secs(30);
const CHAIN: &str = "weft-networks-test";
const VALUE: ValueId = ValueId([0x5; 32]);

async fn wait_for(mut done: impl FnMut() -> bool, describe: impl Fn() -> String) {
    let until = Instant::now() + DEADLINE;
    while !done() {
        assert!(Instant::now() < until, "timed out: {}", describe());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn refused(handle: &GossipHandle) -> u64 {
    handle
        .metrics()
        .semantic
        .with_label_values(&["foreign_peers_refused"])
        .get()
}

/// A node outside the cluster's validator set, on `network`, dialling `peers`.
async fn outsider(
    cluster: &Cluster,
    network: &NetworkId,
    peers: Vec<Multiaddr>,
) -> (GossipHandle, mpsc::Receiver<GossipEvent>) {
    let keypair = Keypair::generate_ed25519();
    let mut config = GossipConfig::new(keypair, &network.chain_id, cluster.validators.clone());
    config.genesis_hash = network.genesis_hash;
    config.static_peers = peers;
    weft_gossip::spawn(config, Hooks::default()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_of_another_chain_or_genesis_are_refused_and_never_heard() {
    let mut cluster = Cluster::start(
        generate(2, 1, 0, 1).unwrap(),
        GossipMode::Semantic,
        CHAIN,
        |_, _| {},
    )
    .await
    .unwrap();
    cluster.wait_connected(DEADLINE).await.unwrap();
    let home = cluster.members[0].handle.clone();
    let addr = home.listen_addrs()[0].clone();
    let ours = home.network().clone();
    let mut events = cluster.take_events().remove(0);

    // A node with our chain id but another genesis, and one on another chain: each dials us,
    // is refused, and neither side counts the other as a peer.
    let other_genesis = NetworkId::new(CHAIN, [0x99; 32]);
    let other_chain = NetworkId::new("weft-other-chain", ours.genesis_hash);
    for (case, network) in [("genesis", &other_genesis), ("chain", &other_chain)] {
        let before = refused(&home);
        let (stranger, _events) = outsider(&cluster, network, vec![addr.clone()]).await;
        wait_for(
            || refused(&home) > before,
            || format!("the peer of another {case} was never refused"),
        )
        .await;
        let stranger_id = stranger.peer_id();
        assert!(
            home.peers().iter().all(|p| p.peer != stranger_id),
            "{case}: {:?}",
            home.peers()
        );
        assert!(
            stranger.peers().is_empty(),
            "{case}: {:?}",
            stranger.peers()
        );
        stranger.shutdown().await;
    }

    // A raw peer that states another genesis: its genuine vote is never delivered. A raw peer
    // of our network, connecting after it, is heard.
    let before = refused(&home);
    let mut foreign = RawPeer::connect(&addr, &other_genesis).await.unwrap();
    let vote = cluster.vote(0, VoteType::Prevote, Height(1), Round(0), Some(VALUE));
    let _ = foreign.send(&Message::Vote(vote).to_frame()).await;
    let mut ours_raw = RawPeer::connect(&addr, &ours).await.unwrap();
    let vote = cluster.vote(0, VoteType::Prevote, Height(2), Round(0), Some(VALUE));
    ours_raw
        .send(&Message::Vote(vote).to_frame())
        .await
        .unwrap();
    wait_for(
        || refused(&home) > before,
        || "the foreign raw peer was not refused".into(),
    )
    .await;
    // Its streams were held unread until it stated its network, then dropped: nothing of it
    // can arrive after the refusal.
    let mut heights = Vec::new();
    let until = Instant::now() + DEADLINE;
    while !heights.contains(&Height(2)) {
        assert!(
            Instant::now() < until,
            "the vote of a peer of our network never arrived"
        );
        if let Ok(Some(GossipEvent::Consensus {
            message: Message::Vote(vote),
            ..
        })) = tokio::time::timeout(Duration::from_millis(100), events.recv()).await
        {
            heights.push(vote.message.height);
        }
    }
    while let Ok(event) = events.try_recv() {
        if let GossipEvent::Consensus {
            message: Message::Vote(vote),
            ..
        } = event
        {
            heights.push(vote.message.height);
        }
    }
    assert!(
        !heights.contains(&Height(1)),
        "the vote of a peer of another network was delivered"
    );
    let peers: Vec<_> = home.peers().iter().map(|p| p.peer).collect();
    assert!(peers.contains(&ours_raw.peer_id), "{peers:?}");
    assert!(!peers.contains(&foreign.peer_id), "{peers:?}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_peer_named_by_dns_is_dialled() {
    let cluster = Cluster::start(
        generate(2, 1, 0, 2).unwrap(),
        GossipMode::Semantic,
        "weft-networks-dns-test",
        |_, _| {},
    )
    .await
    .unwrap();
    let home = cluster.members[0].handle.clone();
    let listen = home.listen_addrs()[0].clone();
    let port = listen
        .iter()
        .find_map(|p| match p {
            libp2p::multiaddr::Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .unwrap();
    let by_name: Multiaddr = format!("/dns4/localhost/tcp/{port}/p2p/{}", home.peer_id())
        .parse()
        .unwrap();
    let (joiner, _events) = outsider(&cluster, home.network(), vec![by_name]).await;
    wait_for(
        || joiner.peers().iter().any(|p| p.peer == home.peer_id()),
        || "the peer named by DNS was never connected".into(),
    )
    .await;
    joiner.shutdown().await;
    cluster.shutdown().await;
}
