//! The libp2p transport: a swarm over TCP + Noise + Yamux with identify, connection limits and
//! static peers redialled with backoff, carrying
//! - consensus messages on Weft's own stream protocol ([`consensus`]), routed by the
//!   [`Router`](crate::Router) in `plain` or `semantic` mode;
//! - transactions in batches over gossipsub, validated by the node ([`txs`]);
//! - block sync over request-response ([`sync`]);
//! - state-sync snapshots over request-response ([`snapshot`]): lists, manifests, chunks and
//!   light blocks as the node's opaque bytes.
//!
//! [`spawn`] starts a node's gossip on the current tokio runtime and returns a
//! [`GossipHandle`] and the receiver of [`GossipEvent`]s. Misbehaving peers are charged in
//! [`Scores`](crate::score::Scores); a banned peer is disconnected and refused until its ban
//! ends. [`GossipHandle::set_isolated`] cuts the node off from every peer until it is healed
//! (a partition for chaos tests; [`isolation`]).

pub mod consensus;
pub mod isolation;
pub mod network;
pub mod snapshot;
mod swarm;
pub mod sync;
pub mod txs;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use parking_lot::Mutex;
use thiserror::Error;
use tokio::sync::{Notify, mpsc, oneshot};
use weft_consensus::{Height, HeightSets, Round, SignedProposal, SignedVote, ValidatorSet};
use weft_genesis::{KeyFileError, SecretKey, read_key_file};

use crate::metrics::GossipMetrics;
use crate::score::{Offence, Scores, Verdict};
use crate::semantic::{GossipMode, Routed, Router, RouterCounters};
use crate::wire::Message;
pub use consensus::CONSENSUS_PROTOCOL;
pub use network::{NetworkId, NetworkMismatch};
pub use snapshot::{SnapshotInfo, SnapshotRequest, SnapshotResponse};
pub use sync::{SyncBlock, SyncError, SyncRequest, SyncResponse};
pub use txs::TxVerdict;

/// Limits and timings of the transport. Every queue and table it keeps is bounded by one of
/// these or by a constant of the module that owns it.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Established connections, all peers together.
    pub connections_max: u32,
    /// Established connections to one peer (two lets a simultaneous dial settle).
    pub connections_per_peer_max: u32,
    /// Connections being set up at once.
    pub pending_max: u32,
    /// Inbound consensus streams one peer may hold open; more are reset and charged.
    pub streams_per_peer_max: u32,
    /// First and longest wait before redialling a static peer.
    pub redial_min: Duration,
    pub redial_max: Duration,
    /// A tx batch goes out when it reaches this many bytes, or after `tx_batch_delay`.
    pub tx_batch_bytes: usize,
    pub tx_batch_delay: Duration,
    /// Tx batches being validated at once; more are ignored.
    pub tx_validations_max: usize,
    /// Events waiting for the node. Consensus messages wait for room (the stream slows down);
    /// tx batches that find no room are dropped and counted.
    pub events_max: usize,
    /// Sync requests in flight, each way.
    pub sync_in_flight_max: usize,
    pub sync_timeout: Duration,
    /// Connections with no stream open are closed after this long.
    pub idle_timeout: Duration,
    /// Messages and bytes (blocks counted whole) waiting for one peer; past either, the
    /// oldest are dropped.
    pub peer_queue_max: usize,
    pub peer_queue_bytes_max: usize,
    /// A peer that accepts no byte of our consensus stream for this long, while we have
    /// something to send it, is charged as a slow reader and disconnected.
    pub write_stall_max: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connections_max: 64,
            connections_per_peer_max: 2,
            pending_max: 32,
            streams_per_peer_max: 2,
            redial_min: Duration::from_millis(250),
            redial_max: Duration::from_secs(30),
            tx_batch_bytes: 64 * 1024,
            tx_batch_delay: Duration::from_millis(20),
            tx_validations_max: 64,
            events_max: 16 * 1024,
            sync_in_flight_max: 16,
            sync_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            peer_queue_max: crate::semantic::PEER_QUEUE_MAX,
            peer_queue_bytes_max: crate::semantic::PEER_QUEUE_BYTES_MAX,
            write_stall_max: Duration::from_secs(10),
        }
    }
}

/// One node's gossip configuration.
#[derive(Clone, Debug)]
pub struct GossipConfig {
    /// The node's network identity (its node key).
    pub keypair: Keypair,
    /// Where to listen; loopback with port 0 picks a free port.
    pub listen: Multiaddr,
    /// Peers to keep connected, each ending in `/p2p/<peer id>`.
    pub static_peers: Vec<Multiaddr>,
    pub mode: GossipMode,
    pub chain_id: String,
    /// The hash of the node's genesis: with the chain id, the network a peer must belong to.
    pub genesis_hash: [u8; 32],
    /// The validator set of each height, for signature checks and quorum counts.
    pub validators: HeightSets,
    pub limits: Limits,
}

impl GossipConfig {
    /// Defaults: listen on 127.0.0.1 at a free port, semantic mode, no static peers, and a
    /// genesis hash of zeros (tests and benchmarks; a node sets its genesis's hash).
    pub fn new(keypair: Keypair, chain_id: &str, validators: ValidatorSet) -> Self {
        GossipConfig {
            keypair,
            listen: "/ip4/127.0.0.1/tcp/0".parse().expect("valid multiaddr"),
            static_peers: Vec::new(),
            mode: GossipMode::Semantic,
            chain_id: chain_id.to_owned(),
            genesis_hash: [0; 32],
            validators: HeightSets::single(validators),
            limits: Limits::default(),
        }
    }

    /// The network this node belongs to, which its peers must share.
    pub fn network(&self) -> NetworkId {
        NetworkId::new(&self.chain_id, self.genesis_hash)
    }
}

/// The libp2p identity of an Ed25519 secret key.
pub fn keypair_from_secret(secret: &SecretKey) -> Keypair {
    Keypair::ed25519_from_bytes(secret.0).expect("32 bytes are an Ed25519 secret key")
}

/// The libp2p identity held in a node key file.
pub fn keypair_from_key_file(path: &Path) -> Result<Keypair, KeyFileError> {
    read_key_file(path).map(|secret| keypair_from_secret(&secret))
}

/// The node's check of gossiped txs: one verdict per tx, in order.
pub trait TxValidator: Send + Sync + 'static {
    fn check(&self, txs: &[Vec<u8>]) -> Vec<TxVerdict>;
}

impl<F: Fn(&[Vec<u8>]) -> Vec<TxVerdict> + Send + Sync + 'static> TxValidator for F {
    fn check(&self, txs: &[Vec<u8>]) -> Vec<TxVerdict> {
        self(txs)
    }
}

/// The node's block store, as block sync serves it: the decided blocks from `from` on, at most
/// `count` of them and about `max_bytes` in all. The transport trims what does not fit.
pub trait BlockSource: Send + Sync + 'static {
    fn blocks(&self, from: Height, count: u32, max_bytes: usize) -> Vec<SyncBlock>;
}

impl<F: Fn(Height, u32, usize) -> Vec<SyncBlock> + Send + Sync + 'static> BlockSource for F {
    fn blocks(&self, from: Height, count: u32, max_bytes: usize) -> Vec<SyncBlock> {
        self(from, count, max_bytes)
    }
}

/// The node's snapshot store, as state sync serves it: the snapshots it keeps, their manifests
/// and chunks, and the light blocks of their heights. Answer with the request's kind (see
/// [`SnapshotResponse::answers`]); `None` or an empty list for what the node lacks. The
/// transport trims nothing: an answer that does not [`fit`](SnapshotResponse::fits) the caps
/// goes out in its empty form.
pub trait SnapshotSource: Send + Sync + 'static {
    fn serve(&self, request: &SnapshotRequest) -> SnapshotResponse;
}

impl<F: Fn(&SnapshotRequest) -> SnapshotResponse + Send + Sync + 'static> SnapshotSource for F {
    fn serve(&self, request: &SnapshotRequest) -> SnapshotResponse {
        self(request)
    }
}

/// The node's check that a proposal's block is the one its signed value names (for example:
/// the block's header hashes to the value). Runs before the router sees the proposal, so a
/// relayer cannot pair a genuine signature with another block.
pub trait BlockCheck: Send + Sync + 'static {
    fn check(&self, proposal: &SignedProposal, block: &[u8]) -> bool;
}

impl<F: Fn(&SignedProposal, &[u8]) -> bool + Send + Sync + 'static> BlockCheck for F {
    fn check(&self, proposal: &SignedProposal, block: &[u8]) -> bool {
        self(proposal, block)
    }
}

/// What the node plugs into its gossip.
#[derive(Clone)]
pub struct Hooks {
    pub txs: Arc<dyn TxValidator>,
    pub blocks: Arc<dyn BlockSource>,
    pub block_check: Arc<dyn BlockCheck>,
    pub snapshots: Arc<dyn SnapshotSource>,
}

impl Default for Hooks {
    /// Ignores gossiped txs, serves no blocks and no snapshots, and takes any block bytes with
    /// a proposal (tests and benchmarks, whose proposals carry no real block).
    fn default() -> Self {
        Hooks {
            txs: Arc::new(|txs: &[Vec<u8>]| vec![TxVerdict::Ignore; txs.len()]),
            blocks: Arc::new(|_: Height, _: u32, _: usize| Vec::new()),
            block_check: Arc::new(|_: &SignedProposal, _: &[u8]| true),
            snapshots: Arc::new(SnapshotResponse::empty),
        }
    }
}

/// What gossip hands the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GossipEvent {
    /// A verified vote or proposal this node had not seen (bundles and certificates arrive as
    /// their votes).
    Consensus { from: PeerId, message: Message },
    /// Txs from a gossiped batch that the node's validator accepted.
    Txs { from: PeerId, txs: Vec<Vec<u8>> },
}

#[derive(Debug, Error)]
pub enum NetError {
    #[error("static peer {0} does not end in /p2p/<peer id>")]
    PeerWithoutId(Multiaddr),
    #[error("static peers named by DNS need the system's resolver configuration: {0}")]
    Dns(String),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: Multiaddr, reason: String },
    #[error("transport setup failed: {0}")]
    Setup(String),
    #[error("gossip has shut down")]
    Closed,
}

/// A connected peer and the position it advertised.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PeerInfo {
    pub peer: PeerId,
    pub height: Height,
    pub round: Round,
    /// Where the connection goes, who dialled, and since when.
    pub endpoint: Endpoint,
}

/// A peer's connection: its IP address (when the address has one), whether this node dialled
/// it, and when it connected (milliseconds since the gossip task started).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Endpoint {
    pub remote_ip: Option<std::net::IpAddr>,
    pub outbound: bool,
    pub since_ms: u64,
}

enum Command {
    PublishTxs(Vec<Vec<u8>>),
    RequestBlocks {
        peer: PeerId,
        request: SyncRequest,
        reply: oneshot::Sender<Result<Vec<SyncBlock>, SyncError>>,
    },
    RequestSnapshot {
        peer: PeerId,
        request: SnapshotRequest,
        reply: oneshot::Sender<Result<SnapshotResponse, SyncError>>,
    },
    Ban(PeerId, Duration),
    Shutdown(oneshot::Sender<()>),
}

struct PeerEntry {
    slot: usize,
    wake: Arc<Notify>,
    writer: tokio::task::JoinHandle<()>,
    readers: u32,
    /// When the writer began the write (or stream opening) it is blocked in, as
    /// `Shared::now_ms() + 1`; 0 while it is not writing. The swarm task reads it to find
    /// slow readers.
    writing_since: Arc<AtomicU64>,
    endpoint: Endpoint,
}

struct State {
    router: Router,
    peers: HashMap<PeerId, PeerEntry>,
    position: (Height, Round),
    validators: Arc<HeightSets>,
}

/// What the swarm task, the stream tasks and the handle share.
struct Shared {
    chain_id: String,
    network: NetworkId,
    block_check: Arc<dyn BlockCheck>,
    state: Mutex<State>,
    scores: Mutex<Scores<PeerId>>,
    metrics: GossipMetrics,
    events: mpsc::Sender<GossipEvent>,
    commands: mpsc::Sender<Command>,
    started: Instant,
    /// Raised while the node is isolated; the swarm task and the isolation behaviour follow it.
    isolated: Arc<AtomicBool>,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn validators(&self) -> Arc<HeightSets> {
        self.state.lock().validators.clone()
    }

    fn is_banned(&self, peer: &PeerId) -> bool {
        self.scores.lock().is_banned(peer, self.now_ms())
    }

    /// Charges `peer`; past the threshold, asks the swarm to disconnect it for the ban.
    fn penalise(&self, peer: &PeerId, offence: Offence) {
        let now = self.now_ms();
        let verdict = self.scores.lock().penalise(peer, offence, now);
        self.metrics
            .semantic
            .with_label_values(&["penalties"])
            .inc();
        if let Verdict::Banned { until_ms } = verdict {
            tracing::info!(%peer, ?offence, "peer banned");
            let ban = Duration::from_millis(until_ms.saturating_sub(now));
            let _ = self.commands.try_send(Command::Ban(*peer, ban));
        }
    }

    fn with_router<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut state = self.state.lock();
        let before = state.router.counters;
        let out = f(&mut state);
        let now = state.router.counters;
        drop(state);
        self.metrics.add_router_counters(before, now);
        out
    }

    fn holds(&self, vote: &SignedVote) -> bool {
        self.state.lock().router.holds(vote)
    }

    /// A verified message from `peer`: the router records it, queues relays, and returns what
    /// is new for the node.
    fn on_verified(&self, peer: PeerId, message: Message) -> Vec<Message> {
        let routed = self.with_router(|state| match state.peers.get(&peer) {
            Some(entry) => state.router.on_verified_checked(entry.slot, message),
            None => Routed::default(),
        });
        // One charge per message, however many of its votes are to blame.
        if routed.far_future > 0 {
            self.penalise(&peer, Offence::FarFuture);
        }
        if routed.flooded > 0 {
            self.penalise(&peer, Offence::VoteFlood);
        }
        notify_queued(self);
        routed.fresh
    }

    fn publish(&self, message: Message) {
        self.with_router(|state| state.router.publish(message));
        notify_queued(self);
    }

    fn drain(&self, slot: usize) -> Vec<Message> {
        self.with_router(|state| state.router.drain(slot))
    }

    /// Queues this node's position for one peer (a new stream starts with it).
    fn advertise_to(&self, slot: usize) {
        let mut state = self.state.lock();
        let (height, round) = state.position;
        state.router.advertise_one(slot, height, round);
    }

    /// Hands fresh messages to the node, waiting for room. False once the node has gone.
    async fn deliver(&self, from: Option<PeerId>, fresh: Vec<Message>) -> bool {
        let Some(from) = from else { return true };
        for message in fresh {
            if self
                .events
                .send(GossipEvent::Consensus { from, message })
                .await
                .is_err()
            {
                return false;
            }
        }
        true
    }

    fn reader_done(&self, peer: &PeerId) {
        if let Some(entry) = self.state.lock().peers.get_mut(peer) {
            entry.readers = entry.readers.saturating_sub(1);
        }
    }
}

/// Wakes the writer of every peer with something queued.
fn notify_queued(shared: &Shared) {
    let state = shared.state.lock();
    for entry in state.peers.values() {
        if state.router.queued(entry.slot) > 0 {
            entry.wake.notify_one();
        }
    }
}

/// The node's side of its gossip. Cloning it is cheap; every clone drives the same swarm.
#[derive(Clone)]
pub struct GossipHandle {
    shared: Arc<Shared>,
    peer_id: PeerId,
    listen_addrs: Vec<Multiaddr>,
}

impl GossipHandle {
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The network this node belongs to (its chain id and genesis hash).
    pub fn network(&self) -> &NetworkId {
        &self.shared.network
    }

    /// The addresses the swarm listens on, each ending in `/p2p/<peer id>`.
    pub fn listen_addrs(&self) -> &[Multiaddr] {
        &self.listen_addrs
    }

    /// Sends a message this node created (its own vote or proposal, or a certificate) to every
    /// peer.
    pub fn publish(&self, message: Message) {
        self.shared.publish(message);
    }

    /// Advertises this node's consensus position to every peer.
    pub fn advertise(&self, height: Height, round: Round) {
        {
            let mut state = self.shared.state.lock();
            state.position = (height, round);
            state.router.advertise(height, round);
        }
        notify_queued(&self.shared);
    }

    /// The verified proposals and votes gossip holds for heights ≥ `from` (see
    /// [`Router::held`]).
    pub fn held(&self, from: Height) -> Vec<Message> {
        self.shared.state.lock().router.held(from)
    }

    /// The validator sets used to verify consensus messages.
    pub fn validators(&self) -> HeightSets {
        self.shared.validators().as_ref().clone()
    }

    /// Replaces the validator sets used to verify consensus messages (after each commit: a
    /// message is checked against the set of its own height).
    pub fn set_validators(&self, validators: HeightSets) {
        let mut state = self.shared.state.lock();
        state.validators = Arc::new(validators.clone());
        state.router.set_validators(validators);
    }

    /// Gossips txs the node admitted; they go out in batches.
    pub async fn publish_txs(&self, txs: Vec<Vec<u8>>) -> Result<(), NetError> {
        self.shared
            .commands
            .send(Command::PublishTxs(txs))
            .await
            .map_err(|_| NetError::Closed)
    }

    /// Asks `peer` for the blocks from `from` on, at most `count`. The answer's shape is checked
    /// (contiguous heights, certificates for them); its contents are the node's to verify.
    pub async fn request_blocks(
        &self,
        peer: PeerId,
        from: Height,
        count: u32,
    ) -> Result<Vec<SyncBlock>, SyncError> {
        let request = SyncRequest { from, count };
        request.check()?;
        let (reply, answer) = oneshot::channel();
        self.shared
            .commands
            .send(Command::RequestBlocks {
                peer,
                request,
                reply,
            })
            .await
            .map_err(|_| SyncError::Closed)?;
        answer.await.map_err(|_| SyncError::Closed)?
    }

    /// Asks `peer` for a snapshot list, manifest, chunk or light block. The answer is checked
    /// to be of the request's kind (a peer answering another kind is charged as malformed and
    /// this returns [`SyncError::BadResponse`]) and within the caps; its bytes are the node's
    /// to verify, and [`charge`](Self::charge) is how it reports a lie. At most
    /// `Limits::sync_in_flight_max` snapshot requests are in flight (beside as many block
    /// requests); past that this returns [`SyncError::Busy`]. A request that fails on the way
    /// (timeout, closed connection, a response over the caps) is [`SyncError::Failed`].
    pub async fn request_snapshot(
        &self,
        peer: PeerId,
        request: SnapshotRequest,
    ) -> Result<SnapshotResponse, SyncError> {
        let (reply, answer) = oneshot::channel();
        self.shared
            .commands
            .send(Command::RequestSnapshot {
                peer,
                request,
                reply,
            })
            .await
            .map_err(|_| SyncError::Closed)?;
        answer.await.map_err(|_| SyncError::Closed)?
    }

    /// Charges `peer` for an offence only the node can judge: a snapshot chunk that does not
    /// match its manifest, a manifest or light block that lies ([`Offence::BadSnapshot`]).
    /// Past the ban threshold the peer is disconnected and refused, as for gossip's own
    /// charges.
    pub fn charge(&self, peer: &PeerId, offence: Offence) {
        self.shared.penalise(peer, offence);
    }

    /// Connected peers and their advertised positions.
    pub fn peers(&self) -> Vec<PeerInfo> {
        let state = self.shared.state.lock();
        let mut peers: Vec<PeerInfo> = state
            .peers
            .iter()
            .map(|(peer, entry)| {
                let (height, round) = state.router.position(entry.slot);
                PeerInfo {
                    peer: *peer,
                    height,
                    round,
                    endpoint: entry.endpoint,
                }
            })
            .collect();
        peers.sort_by_key(|info| info.peer);
        peers
    }

    pub fn metrics(&self) -> &GossipMetrics {
        &self.shared.metrics
    }

    pub fn counters(&self) -> RouterCounters {
        self.shared.state.lock().router.counters
    }

    /// Messages waiting for a connected peer; `None` if it is not connected.
    pub fn queued(&self, peer: &PeerId) -> Option<usize> {
        let state = self.shared.state.lock();
        let entry = state.peers.get(peer)?;
        Some(state.router.queued(entry.slot))
    }

    /// Inbound consensus streams a connected peer holds open; `None` if it is not connected.
    pub fn inbound_streams(&self, peer: &PeerId) -> Option<u32> {
        self.shared
            .state
            .lock()
            .peers
            .get(peer)
            .map(|entry| entry.readers)
    }

    /// Penalty points a peer holds now.
    pub fn score(&self, peer: &PeerId) -> u32 {
        self.shared.scores.lock().points(peer)
    }

    pub fn is_banned(&self, peer: &PeerId) -> bool {
        self.shared.is_banned(peer)
    }

    /// Disconnects `peer` and refuses it for `duration` (an operator's partition, or a test's).
    pub fn ban_for(&self, peer: PeerId, duration: Duration) {
        let _ = self.shared.commands.try_send(Command::Ban(peer, duration));
    }

    /// Cuts this node off from every peer (`true`), or heals it (`false`): a partition for
    /// chaos tests. While isolated, new connections are refused both ways before their
    /// handshake, and within one tick of the swarm task (10 ms) every open connection is
    /// closed and static peers are no longer redialled. Healing dials the static peers, and
    /// the peers that were connected when the node was cut off, at once. Consensus state is
    /// untouched: what gossip holds is replayed to each peer as it reconnects.
    pub fn set_isolated(&self, isolated: bool) {
        let was = self.shared.isolated.swap(isolated, Ordering::AcqRel);
        if was != isolated {
            tracing::info!(isolated, "gossip isolation changed");
        }
    }

    /// Whether [`set_isolated`](Self::set_isolated) last cut the node off.
    pub fn is_isolated(&self) -> bool {
        self.shared.isolated.load(Ordering::Acquire)
    }

    /// Milliseconds since the gossip task started: the clock of [`Endpoint::since_ms`].
    pub fn now_ms(&self) -> u64 {
        self.shared.now_ms()
    }

    /// Stops the swarm and every stream task.
    pub async fn shutdown(&self) {
        let (done, wait) = oneshot::channel();
        if self
            .shared
            .commands
            .send(Command::Shutdown(done))
            .await
            .is_ok()
        {
            let _ = wait.await;
        }
    }
}

/// Starts gossip on the current tokio runtime. Returns once the swarm listens.
pub async fn spawn(
    config: GossipConfig,
    hooks: Hooks,
) -> Result<(GossipHandle, mpsc::Receiver<GossipEvent>), NetError> {
    swarm::spawn(config, hooks).await
}
