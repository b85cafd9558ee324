//! State sync against peers that lie, in process over loopback libp2p: a chain built offline,
//! one honest server, one liar, and a joining node. Whatever the liar serves (a corrupt chunk,
//! a manifest that does not sum to the state root, a manifest or chunks of another height), the
//! joiner catches it on arrival, charges the liar, fetches what it needs from the honest peer,
//! and ends with exactly the servers' state.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use parking_lot::RwLock;
use weft_consensus::Height;
use weft_execution::{Address, ChainId, Payload, Transaction};
use weft_genesis::{ConsensusParams, Genesis};
use weft_gossip::{GossipConfig, GossipHandle, Hooks, SnapshotRequest, SnapshotResponse};
use weft_node::chain::Chain;
use weft_node::metrics::NodeMetrics;
use weft_node::snapshots::{SnapshotStore, serve};
use weft_node::statesync::{StateSyncConfig, Trust, run};

const CHAIN: &str = "weft-sync-liars";
/// Enough accounts for several chunks.
const ACCOUNTS: u32 = 30_000;
const HEIGHTS: u64 = 120;
/// A second, earlier snapshot the liar serves in place of the latest.
const EARLIER: u64 = 60;

fn keys() -> Vec<SigningKey> {
    (1..=4u8)
        .map(|i| SigningKey::from_bytes(&[i; 32]))
        .collect()
}

fn account_key(i: u32) -> SigningKey {
    let mut seed = [3u8; 32];
    seed[..4].copy_from_slice(&i.to_be_bytes());
    SigningKey::from_bytes(&seed)
}

fn genesis() -> Genesis {
    let validators = keys()
        .iter()
        .enumerate()
        .map(|(i, k)| (format!("v{i}"), k.verifying_key().to_bytes(), 10))
        .collect();
    let accounts = (0..ACCOUNTS)
        .map(|i| {
            (
                account_key(i).verifying_key().to_bytes(),
                1_000 + u64::from(i),
            )
        })
        .collect();
    Genesis::new(
        CHAIN,
        1_700_000_000_000,
        validators,
        accounts,
        ConsensusParams::fast(),
    )
    .unwrap()
}

/// A chain of `HEIGHTS` blocks with snapshots at `EARLIER` and at the top, in `dir`.
fn source(dir: &Path) -> (Arc<RwLock<Chain>>, Arc<SnapshotStore>) {
    let chain_dir = dir.join("chain");
    let store = Arc::new(SnapshotStore::open(&dir.join("snapshots"), 4, true).unwrap());
    weft_node::fixture::grow(&chain_dir, genesis(), &keys(), EARLIER, |_| Vec::new()).unwrap();
    let snapshot = |store: &SnapshotStore| {
        let chain = Chain::open(&chain_dir, genesis(), 1).unwrap();
        let reader = chain.begin_snapshot().unwrap();
        store.write(chain.height().0, reader).unwrap();
    };
    snapshot(&store);
    // Transfers between the snapshots, so the two states differ in every chunk.
    let transfers = |height: Height| {
        let from = account_key(height.0 as u32);
        let to = account_key(height.0 as u32 + 10_000)
            .verifying_key()
            .to_bytes();
        vec![Transaction::sign(
            ChainId::new(CHAIN).unwrap(),
            &from,
            0,
            Payload::Transfer {
                to: Address(to),
                amount: 5,
            },
        )]
    };
    weft_node::fixture::grow(&chain_dir, genesis(), &keys(), HEIGHTS - EARLIER, transfers).unwrap();
    snapshot(&store);
    let chain = Chain::open(&chain_dir, genesis(), 1).unwrap();
    (Arc::new(RwLock::new(chain)), store)
}

async fn spawn(
    chain: &Arc<RwLock<Chain>>,
    peers: Vec<libp2p::Multiaddr>,
    snapshots: Arc<dyn Fn(&SnapshotRequest) -> SnapshotResponse + Send + Sync>,
) -> GossipHandle {
    let key = libp2p::identity::Keypair::generate_ed25519();
    let mut config = GossipConfig::new(key, CHAIN, chain.read().current_validators().clone());
    config.genesis_hash = genesis().hash();
    config.static_peers = peers;
    let blocks = chain.clone();
    let hooks = Hooks {
        blocks: Arc::new(move |from: Height, count: u32, max: usize| {
            blocks.read().sync_blocks(from, count, max)
        }),
        snapshots: Arc::new(move |request: &SnapshotRequest| snapshots(request)),
        ..Hooks::default()
    };
    weft_gossip::spawn(config, hooks).await.unwrap().0
}

/// The lies a peer tells.
#[derive(Clone, Copy, Debug)]
enum Lie {
    /// Flips a byte of every chunk it serves.
    CorruptChunk,
    /// Serves a manifest whose first chunk hash is another's: it no longer sums to the root.
    WrongManifest,
    /// Lists the latest snapshot but serves the earlier one's manifest.
    OtherHeightManifest,
    /// Serves the earlier snapshot's chunks for the latest one's.
    OtherHeightChunks,
}

async fn restore_beside(lie: Lie) {
    let dir = tempfile::tempdir().unwrap();
    let (chain, store) = source(dir.path());
    let top = chain.read().height().0;

    // The honest peer declines its first manifest request, so the liar's is always asked.
    let declined = Arc::new(AtomicBool::new(false));
    let honest = {
        let (chain, store, declined) = (chain.clone(), store.clone(), declined.clone());
        spawn(
            &chain.clone(),
            Vec::new(),
            Arc::new(move |request: &SnapshotRequest| {
                if matches!(request, SnapshotRequest::Manifest { .. })
                    && !declined.swap(true, Ordering::SeqCst)
                {
                    return SnapshotResponse::Manifest(None);
                }
                serve(&chain, Some(&store), request)
            }),
        )
        .await
    };
    let liar = {
        let (chain, store) = (chain.clone(), store.clone());
        spawn(
            &chain.clone(),
            Vec::new(),
            Arc::new(move |request: &SnapshotRequest| match (lie, *request) {
                (Lie::CorruptChunk, SnapshotRequest::Chunk { height, index }) => {
                    let mut bytes = store.chunk(height, index).unwrap();
                    let at = bytes.len() - 2;
                    bytes[at] ^= 0x40;
                    SnapshotResponse::Chunk(Some(bytes))
                }
                (Lie::WrongManifest, SnapshotRequest::Manifest { height }) => {
                    let bytes = store.manifest(height).unwrap();
                    let mut manifest = weft_execution::snapshot::Manifest::decode(&bytes).unwrap();
                    manifest.chunks.swap(0, 1);
                    manifest.chunks[0] = weft_execution::LtHash::identity();
                    SnapshotResponse::Manifest(Some(manifest.encode()))
                }
                (Lie::OtherHeightManifest, SnapshotRequest::Manifest { .. }) => {
                    SnapshotResponse::Manifest(store.manifest(EARLIER))
                }
                (Lie::OtherHeightChunks, SnapshotRequest::Chunk { index, .. }) => {
                    SnapshotResponse::Chunk(store.chunk(EARLIER, index))
                }
                _ => serve(&chain, Some(&store), request),
            }),
        )
        .await
    };

    let joiner_dir = tempfile::tempdir().unwrap();
    let joiner = Arc::new(RwLock::new(
        Chain::open(&joiner_dir.path().join("chain"), genesis(), 1).unwrap(),
    ));
    let servers: Vec<libp2p::Multiaddr> = [&honest, &liar]
        .iter()
        .map(|handle| handle.listen_addrs()[0].clone())
        .collect();
    let gossip = spawn(
        &joiner,
        servers,
        Arc::new(|_: &SnapshotRequest| SnapshotResponse::List(Vec::new())),
    )
    .await;
    let config = StateSyncConfig {
        trust: Trust::Genesis,
        discovery: Duration::from_millis(500),
        fetchers: 4,
        deadline: Duration::from_secs(60),
    };
    let metrics = NodeMetrics::new().unwrap();
    let restored = run(&gossip, joiner.clone(), &config, &metrics)
        .await
        .unwrap_or_else(|e| panic!("{lie:?}: {e}"));

    assert_eq!(restored.height, Height(top), "{lie:?}");
    assert_eq!(
        restored.charged,
        vec![liar.peer_id()],
        "{lie:?}: only the liar is charged"
    );
    assert!(
        gossip.score(&liar.peer_id()) > 0 || gossip.is_banned(&liar.peer_id()),
        "{lie:?}"
    );
    assert_eq!(gossip.score(&honest.peer_id()), 0, "{lie:?}");
    assert!(metrics.statesync_chunks_refused.get() >= 1);
    {
        let (source, joined) = (chain.read(), joiner.read());
        assert_eq!(joined.height(), source.height());
        assert_eq!(joined.last_hash(), source.last_hash());
        assert_eq!(joined.state_root(), source.state_root());
        assert_eq!(joined.earliest_height(), Height(top));
        assert_eq!(
            joined.current_validators(),
            source.current_validators(),
            "the next height's set, priorities included"
        );
        assert_eq!(joined.next_validators(), source.next_validators());
        assert_eq!(
            joined.state().pairs().unwrap(),
            source.state().pairs().unwrap()
        );
        joined.verify_integrity().unwrap();
    }
    for handle in [&gossip, &honest, &liar] {
        handle.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_chunk_is_refetched_from_an_honest_peer_and_the_liar_charged() {
    restore_beside(Lie::CorruptChunk).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_that_does_not_sum_to_the_state_root_is_refused_and_charged() {
    restore_beside(Lie::WrongManifest).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_of_another_height_is_refused_and_charged() {
    restore_beside(Lie::OtherHeightManifest).await;
    restore_beside(Lie::OtherHeightChunks).await;
}
