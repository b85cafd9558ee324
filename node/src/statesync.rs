//! State sync: a new node restores a peer's snapshot instead of replaying every block, then
//! block-syncs the rest and joins consensus (ADR 0019).
//!
//! 1. **Discovery.** Every connected peer is asked which snapshots it keeps; the highest one
//!    (ties: the one most peers offer, by manifest hash) is chosen.
//! 2. **Light verification.** From the trust anchor (an operator's height and hash, or the
//!    genesis validators), the snapshot height's header is verified with its commit certificate,
//!    skipping and bisecting as CometBFT's light client does ([`crate::light`]).
//! 3. **Manifest.** Its chunk lattice hashes must sum to the verified header's state root.
//! 4. **Chunks,** fetched in parallel from every peer that offers the snapshot, each checked
//!    against its manifest entry as it arrives and written. A peer whose manifest, chunk or
//!    light block is false is charged ([`Offence::BadSnapshot`]) and asked nothing more; its
//!    chunk is fetched again from another.
//! 5. **Finish.** The height's block (from block sync, checked against the verified hash) and
//!    the validator sets are stored with the state in one batch. A restore cut off before that
//!    leaves a store that opens at genesis, and the node state-syncs again.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use parking_lot::RwLock;
use thiserror::Error;
use tokio::task::JoinSet;
use weft_consensus::{Height, ValueId};
use weft_execution::snapshot::Manifest;
use weft_gossip::score::Offence;
use weft_gossip::{GossipHandle, SnapshotRequest, SnapshotResponse, SyncError};

use crate::block::SealedBlock;
use crate::chain::{Chain, ChainError, RestoredHeight};
use crate::light::{LightBlock, LightError, Trusted, verify};
use crate::metrics::NodeMetrics;

/// Snapshots tried (each refused one is excluded) before state sync gives up.
const ATTEMPTS_MAX: usize = 4;
/// Light blocks fetched to verify one height (bisection steps included).
const LIGHT_STEPS_MAX: usize = 64;
/// How often discovery looks for peers and asks the new ones.
const DISCOVERY_POLL: Duration = Duration::from_millis(100);

/// What state sync trusts to begin with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trust {
    /// The genesis validators (a young chain).
    Genesis,
    /// A height and its block hash, from a source the operator trusts.
    Anchor { height: Height, hash: ValueId },
}

#[derive(Clone, Debug)]
pub struct StateSyncConfig {
    pub trust: Trust,
    /// How long to gather offers before choosing (at least until one peer offers one).
    pub discovery: Duration,
    /// Chunk requests in flight at once.
    pub fetchers: usize,
    /// Give up after this long in all.
    pub deadline: Duration,
}

#[derive(Debug, Error)]
pub enum StateSyncError {
    #[error("no peer offered a snapshot that could be verified and restored within {0:?}")]
    NoSnapshot(Duration),
    #[error("the trusted height {0:?}: {1}")]
    Anchor(Height, String),
    #[error("chain database: {0}")]
    Chain(#[from] ChainError),
    #[error("gossip has shut down")]
    Closed,
}

/// What a finished state sync restored.
#[derive(Clone, Debug)]
pub struct Restored {
    pub height: Height,
    pub chunks: u32,
    /// Peers charged for false data.
    pub charged: Vec<PeerId>,
    pub elapsed: Duration,
}

/// One snapshot on offer, and who offers it.
#[derive(Clone, Debug)]
struct Offer {
    height: u64,
    hash: [u8; 32],
    chunks: u32,
    peers: Vec<PeerId>,
}

/// Why one attempt at one snapshot failed: the snapshot is excluded and another tried.
#[derive(Debug)]
enum Attempt {
    Refused(String),
    Fatal(StateSyncError),
}

impl From<ChainError> for Attempt {
    fn from(error: ChainError) -> Self {
        Attempt::Fatal(error.into())
    }
}

struct Sync<'a> {
    gossip: &'a GossipHandle,
    chain: Arc<RwLock<Chain>>,
    config: &'a StateSyncConfig,
    metrics: &'a NodeMetrics,
    chain_id: String,
    /// Peers caught serving false data: charged once, asked nothing more.
    liars: HashSet<PeerId>,
    charged: Vec<PeerId>,
}

/// Restores the chain from a peer's snapshot. The chain must be at genesis (no block).
pub async fn run(
    gossip: &GossipHandle,
    chain: Arc<RwLock<Chain>>,
    config: &StateSyncConfig,
    metrics: &NodeMetrics,
) -> Result<Restored, StateSyncError> {
    let started = Instant::now();
    let chain_id = chain.read().chain_id().as_str().to_owned();
    let mut sync = Sync {
        gossip,
        chain,
        config,
        metrics,
        chain_id,
        liars: HashSet::new(),
        charged: Vec::new(),
    };
    let mut excluded: HashSet<(u64, [u8; 32])> = HashSet::new();
    for _ in 0..ATTEMPTS_MAX {
        let Some(offer) = sync.discover(&excluded, started).await? else {
            break;
        };
        tracing::info!(
            height = offer.height,
            chunks = offer.chunks,
            peers = offer.peers.len(),
            "state sync: snapshot chosen"
        );
        match sync.restore(&offer).await {
            Ok(()) => {
                metrics.statesync_snapshots_restored.inc();
                let elapsed = started.elapsed();
                tracing::info!(
                    height = offer.height,
                    ms = elapsed.as_millis() as u64,
                    "state sync: snapshot restored"
                );
                return Ok(Restored {
                    height: Height(offer.height),
                    chunks: offer.chunks,
                    charged: sync.charged,
                    elapsed,
                });
            }
            Err(Attempt::Refused(reason)) => {
                tracing::warn!(height = offer.height, %reason, "state sync: snapshot refused");
                excluded.insert((offer.height, offer.hash));
            }
            Err(Attempt::Fatal(error)) => return Err(error),
        }
    }
    Err(StateSyncError::NoSnapshot(started.elapsed()))
}

impl Sync<'_> {
    fn charge(&mut self, peer: PeerId, what: &str, error: &dyn std::fmt::Display) {
        tracing::warn!(%peer, what, %error, "state sync: false data from a peer; charged");
        self.metrics.statesync_chunks_refused.inc();
        self.gossip.charge(&peer, Offence::BadSnapshot);
        if self.liars.insert(peer) {
            self.charged.push(peer);
        }
    }

    fn honest_peers(&self) -> Vec<PeerId> {
        self.gossip
            .peers()
            .into_iter()
            .map(|info| info.peer)
            .filter(|peer| !self.liars.contains(peer))
            .collect()
    }

    async fn ask(
        &self,
        peer: PeerId,
        request: SnapshotRequest,
    ) -> Result<SnapshotResponse, SyncError> {
        self.gossip.request_snapshot(peer, request).await
    }

    /// Gathers offers until the discovery time is over and one is usable (or the deadline).
    async fn discover(
        &mut self,
        excluded: &HashSet<(u64, [u8; 32])>,
        started: Instant,
    ) -> Result<Option<Offer>, StateSyncError> {
        let since = Instant::now();
        let anchor = match self.config.trust {
            Trust::Genesis => 0,
            Trust::Anchor { height, .. } => height.0,
        };
        let mut offers: BTreeMap<(u64, [u8; 32]), Offer> = BTreeMap::new();
        let mut asked: HashSet<PeerId> = HashSet::new();
        let mut last_round = Instant::now();
        loop {
            let fresh: Vec<PeerId> = self
                .honest_peers()
                .into_iter()
                .filter(|peer| !asked.contains(peer))
                .collect();
            let mut lists = JoinSet::new();
            for peer in fresh {
                asked.insert(peer);
                let gossip = self.gossip.clone();
                lists.spawn(async move {
                    (
                        peer,
                        gossip.request_snapshot(peer, SnapshotRequest::List).await,
                    )
                });
            }
            while let Some(joined) = lists.join_next().await {
                let Ok((peer, Ok(SnapshotResponse::List(list)))) = joined else {
                    continue;
                };
                for info in list {
                    let key = (info.height, info.manifest_hash);
                    if excluded.contains(&key) || info.height < anchor || info.chunks == 0 {
                        continue;
                    }
                    offers
                        .entry(key)
                        .or_insert_with(|| Offer {
                            height: info.height,
                            hash: info.manifest_hash,
                            chunks: info.chunks,
                            peers: Vec::new(),
                        })
                        .peers
                        .push(peer);
                }
            }
            let best = offers
                .values()
                .max_by_key(|offer| (offer.height, offer.peers.len()))
                .cloned();
            if best.is_some() && since.elapsed() >= self.config.discovery {
                return Ok(best);
            }
            if started.elapsed() >= self.config.deadline {
                return Ok(best);
            }
            // Peers that answered before may have taken a snapshot since: ask again, once a
            // discovery period.
            if since.elapsed() >= self.config.discovery
                && last_round.elapsed() >= self.config.discovery
            {
                asked.clear();
                last_round = Instant::now();
            }
            tokio::time::sleep(DISCOVERY_POLL).await;
        }
    }

    /// A light block of `height` from any honest peer, checked against itself; a peer whose
    /// block is false is charged and another asked.
    async fn light_block(&mut self, height: Height) -> Result<LightBlock, Attempt> {
        for peer in self.honest_peers() {
            let answer = self
                .ask(peer, SnapshotRequest::LightBlock { height: height.0 })
                .await;
            let Ok(SnapshotResponse::LightBlock(Some(bytes))) = answer else {
                continue;
            };
            match LightBlock::decode(&bytes).and_then(|block| {
                if block.height() != height {
                    return Err(LightError::Invalid(format!(
                        "asked for height {height:?}, got {:?}",
                        block.height()
                    )));
                }
                block.check_self(&self.chain_id).map(|()| block)
            }) {
                Ok(block) => return Ok(block),
                Err(error) => self.charge(peer, "light block", &error),
            }
        }
        Err(Attempt::Refused(format!(
            "no peer served a valid light block of height {height:?}"
        )))
    }

    /// What the anchor makes trusted.
    async fn trusted(&mut self) -> Result<Trusted, Attempt> {
        match self.config.trust {
            Trust::Genesis => {
                let chain = self.chain.read();
                let genesis = chain.genesis();
                Ok(Trusted {
                    height: Height(genesis.initial_height - 1),
                    time_ms: genesis.genesis_time_ms(),
                    hash: None,
                    next_validators: Arc::new(genesis.validator_set()),
                })
            }
            Trust::Anchor { height, hash } => {
                let block = self.light_block(height).await.map_err(|e| match e {
                    Attempt::Refused(reason) => {
                        Attempt::Fatal(StateSyncError::Anchor(height, reason))
                    }
                    fatal => fatal,
                })?;
                if block.hash() != hash {
                    return Err(Attempt::Fatal(StateSyncError::Anchor(
                        height,
                        format!(
                            "the network's block there is {}, not the trusted {}",
                            hex::encode(block.hash().0),
                            hex::encode(hash.0)
                        ),
                    )));
                }
                Ok(Trusted::from_block(&block))
            }
        }
    }

    /// Verifies the header of `target` from the anchor, bisecting where the validator set
    /// changed too much to skip.
    async fn verify_to(&mut self, target: Height) -> Result<LightBlock, Attempt> {
        let mut trusted = self.trusted().await?;
        if trusted.height == target {
            // The snapshot is at the anchor itself: its block must be the trusted one.
            let block = self.light_block(target).await?;
            return if Some(block.hash()) == trusted.hash {
                Ok(block)
            } else {
                Err(Attempt::Refused(format!(
                    "the light block of {target:?} is not the trusted one"
                )))
            };
        }
        let mut pending = vec![target];
        let mut fetched: HashMap<Height, LightBlock> = HashMap::new();
        let mut verified = None;
        for _ in 0..LIGHT_STEPS_MAX {
            let Some(&height) = pending.last() else {
                break;
            };
            let block = match fetched.remove(&height) {
                Some(block) => block,
                None => self.light_block(height).await?,
            };
            match verify(&self.chain_id, &trusted, &block) {
                Ok(()) => {
                    trusted = Trusted::from_block(&block);
                    pending.pop();
                    verified = Some(block);
                }
                Err(LightError::NotEnoughTrust) => {
                    let middle = Height(trusted.height.0 + (height.0 - trusted.height.0) / 2);
                    fetched.insert(height, block);
                    pending.push(middle);
                }
                Err(error) => {
                    return Err(Attempt::Refused(format!(
                        "the header of height {height:?} does not verify: {error}"
                    )));
                }
            }
        }
        match verified {
            Some(block) if pending.is_empty() && block.height() == target => Ok(block),
            _ => Err(Attempt::Refused(format!(
                "height {target:?} not verified within {LIGHT_STEPS_MAX} light blocks"
            ))),
        }
    }

    /// The offer's manifest from one of its peers, checked against the verified header. Each
    /// peer is asked at most twice (one that did not answer may have been busy).
    async fn manifest(&mut self, offer: &Offer, header: &LightBlock) -> Result<Manifest, Attempt> {
        let twice = offer.peers.iter().chain(offer.peers.iter());
        for &peer in twice {
            if self.liars.contains(&peer) {
                continue;
            }
            let answer = self
                .ask(
                    peer,
                    SnapshotRequest::Manifest {
                        height: offer.height,
                    },
                )
                .await;
            let Ok(SnapshotResponse::Manifest(Some(bytes))) = answer else {
                continue;
            };
            let checked = Manifest::decode(&bytes).and_then(|manifest| {
                manifest
                    .check(offer.height, header.header.state_root)
                    .map(|()| manifest)
            });
            match checked {
                Ok(manifest) if manifest.hash() == offer.hash => return Ok(manifest),
                Ok(_) => {
                    // True, but not the snapshot it listed: not a lie about the state.
                    tracing::warn!(%peer, "state sync: manifest is not the one listed");
                }
                Err(error) => self.charge(peer, "manifest", &error),
            }
        }
        Err(Attempt::Refused(
            "no peer served a manifest that sums to the verified state root".into(),
        ))
    }

    async fn restore(&mut self, offer: &Offer) -> Result<(), Attempt> {
        let header = self.verify_to(Height(offer.height)).await?;
        let manifest = Arc::new(self.manifest(offer, &header).await?);
        self.chain.write().begin_restore()?;
        self.fetch_chunks(offer, &manifest).await?;
        let block = self.block(offer, &header).await?;
        let chain = self.chain.clone();
        let lattice = manifest.total();
        let restored = RestoredHeight {
            block,
            certificate: header.certificate,
            validators: header.validators,
            next_validators: header.next_validators,
        };
        tokio::task::spawn_blocking(move || chain.write().finish_restore(&lattice, restored))
            .await
            .map_err(|e| Attempt::Fatal(ChainError::Corrupt(e.to_string()).into()))??;
        let sets = self.chain.read().height_sets();
        self.gossip.set_validators(sets);
        Ok(())
    }

    /// Fetches every chunk, in parallel across the offer's peers, checking and writing each.
    async fn fetch_chunks(
        &mut self,
        offer: &Offer,
        manifest: &Arc<Manifest>,
    ) -> Result<(), Attempt> {
        let count = manifest.chunks.len() as u32;
        let mut pending: VecDeque<u32> = (0..count).collect();
        // Peers that lack the snapshot (pruned it, or never had it) are skipped, not charged.
        let mut lacking: HashSet<PeerId> = HashSet::new();
        let mut in_flight = JoinSet::new();
        let mut next_peer = 0usize;
        let mut done = 0u32;
        while done < count {
            while in_flight.len() < self.config.fetchers {
                let Some(index) = pending.pop_front() else {
                    break;
                };
                let peers: Vec<PeerId> = offer
                    .peers
                    .iter()
                    .copied()
                    .filter(|p| !self.liars.contains(p) && !lacking.contains(p))
                    .collect();
                if peers.is_empty() {
                    return Err(Attempt::Refused(format!(
                        "no honest peer left to serve chunk {index}"
                    )));
                }
                let peer = peers[next_peer % peers.len()];
                next_peer += 1;
                let gossip = self.gossip.clone();
                let manifest = manifest.clone();
                let height = offer.height;
                in_flight.spawn(async move {
                    let answer = gossip
                        .request_snapshot(peer, SnapshotRequest::Chunk { height, index })
                        .await;
                    let checked = match answer {
                        Ok(SnapshotResponse::Chunk(Some(bytes))) => {
                            // Hashing a chunk is CPU work: off the async threads.
                            let checked = tokio::task::spawn_blocking(move || {
                                manifest.check_chunk(index, &bytes)
                            })
                            .await;
                            Some(checked.map_err(|e| e.to_string()))
                        }
                        _ => None,
                    };
                    (index, peer, checked)
                });
            }
            let Some(joined) = in_flight.join_next().await else {
                continue;
            };
            let (index, peer, checked) =
                joined.map_err(|e| Attempt::Fatal(ChainError::Corrupt(e.to_string()).into()))?;
            match checked {
                None => {
                    lacking.insert(peer);
                    pending.push_back(index);
                }
                Some(Ok(Ok(pairs))) => {
                    let chain = self.chain.clone();
                    tokio::task::spawn_blocking(move || chain.write().restore_chunk(&pairs))
                        .await
                        .map_err(|e| Attempt::Fatal(ChainError::Corrupt(e.to_string()).into()))??;
                    done += 1;
                }
                Some(Ok(Err(error))) => {
                    self.charge(peer, "chunk", &error);
                    pending.push_back(index);
                }
                Some(Err(error)) => {
                    return Err(Attempt::Fatal(ChainError::Corrupt(error).into()));
                }
            }
        }
        Ok(())
    }

    /// The snapshot height's block, from block sync, checked against the verified header.
    async fn block(&mut self, offer: &Offer, header: &LightBlock) -> Result<SealedBlock, Attempt> {
        let height = header.height();
        let mut peers = offer.peers.clone();
        peers.extend(self.honest_peers());
        for peer in peers {
            if self.liars.contains(&peer) {
                continue;
            }
            let Ok(blocks) = self.gossip.request_blocks(peer, height, 1).await else {
                continue;
            };
            let Some(synced) = blocks.into_iter().next() else {
                continue;
            };
            match SealedBlock::decode(Arc::from(synced.block.as_slice())) {
                Ok(block) if block.hash == header.hash() => return Ok(block),
                Ok(_) => self.charge(peer, "block", &"not the verified header's block"),
                Err(error) => self.charge(peer, "block", &error),
            }
        }
        Err(Attempt::Refused(format!(
            "no peer served the block of height {height:?}"
        )))
    }
}
