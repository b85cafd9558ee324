//! The swarm task: builds the libp2p stack and runs its event loop.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageAuthenticity, MessageId};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, Stream, Swarm, allow_block_list, connection_limits, identify, noise, tcp,
    yamux,
};
use parking_lot::Mutex;
use rand::RngExt;
use tokio::sync::{Notify, mpsc, oneshot};
use weft_consensus::{Height, Round};

use super::consensus::{CONSENSUS_PROTOCOL, read_loop, write_loop};
use super::isolation;
use super::network::{NetworkId, NetworkMismatch};
use super::snapshot::{SNAPSHOT_PROTOCOL, SnapshotCodec, SnapshotRequest, SnapshotResponse};
use super::sync::{SYNC_PROTOCOL, SYNC_RESPONSE_BYTES_MAX, SyncCodec, SyncRequest, SyncResponse};
use super::txs::{TX_BATCH_BYTES_MAX, TxVerdict, batch_cost, decode_batch, encode_batch};
use super::{
    Command, Endpoint, GossipConfig, GossipEvent, GossipHandle, Hooks, Limits, NetError, PeerEntry,
    Shared, State, SyncBlock, SyncError,
};
use crate::metrics::GossipMetrics;
use crate::score::{Offence, Scores};
use crate::semantic::Router;

/// Commands waiting for the swarm task.
const COMMANDS_MAX: usize = 1_024;
/// Peers banned at once (each ban is also in the bounded score table).
const BANNED_MAX: usize = 1_024;
/// How often the task looks at redials, bans and the tx batch.
const TICK: Duration = Duration::from_millis(10);
/// How long a connected peer has to say which network it belongs to before it is dropped.
const IDENTIFY_WITHIN: Duration = Duration::from_secs(10);
/// How long a peer of another network stays connected once refused (heard from in nothing),
/// so that our own statement reaches it and its operator's log says why too. Identify's "sent"
/// is no signal that the peer has read it: a connection closed right after can lose it.
const FOREIGN_PEER_GRACE: Duration = Duration::from_secs(2);
/// How long a peer of another network is refused (it is redialled after, if it is a static
/// peer, so a fixed genesis heals by itself and a wrong one is logged again).
const FOREIGN_PEER_BAN: Duration = Duration::from_secs(60);

#[derive(NetworkBehaviour)]
struct Behaviour {
    /// First, so that no other behaviour counts a connection it refuses.
    isolation: isolation::Behaviour,
    blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    limits: connection_limits::Behaviour,
    identify: identify::Behaviour,
    streams: libp2p_stream::Behaviour,
    txs: gossipsub::Behaviour,
    sync: request_response::Behaviour<SyncCodec>,
    snapshots: request_response::Behaviour<SnapshotCodec>,
}

/// A tx batch back from the node's validator: id, source, txs, verdicts.
type Validated = (MessageId, PeerId, Vec<Vec<u8>>, Vec<TxVerdict>);
/// An outbound sync request: what was asked, of whom, and who waits for the answer.
type PendingRequest = (
    SyncRequest,
    PeerId,
    oneshot::Sender<Result<Vec<SyncBlock>, SyncError>>,
);

/// An outbound snapshot request: what was asked, and who waits for the answer.
struct PendingSnapshot {
    request: SnapshotRequest,
    reply: oneshot::Sender<Result<SnapshotResponse, SyncError>>,
}

/// A snapshot answer back from the node's hook, on its way to the requester.
struct ServedSnapshot {
    channel: ResponseChannel<SnapshotResponse>,
    request: SnapshotRequest,
    response: SnapshotResponse,
}

/// A connected peer that has not yet said which network it belongs to.
struct Unconfirmed {
    since: Instant,
    /// Consensus streams it opened meanwhile (at most `streams_per_peer_max`), read once it is
    /// confirmed.
    streams: Vec<Stream>,
}

struct StaticPeer {
    addr: Multiaddr,
    backoff: Duration,
    /// When to dial next; `None` while connected or while a dial is under way.
    next_dial: Option<Instant>,
}

struct Task {
    swarm: Swarm<Behaviour>,
    shared: Arc<Shared>,
    hooks: Hooks,
    control: libp2p_stream::Control,
    limits: Limits,
    topic: IdentTopic,
    static_peers: HashMap<PeerId, StaticPeer>,
    banned: HashMap<PeerId, Instant>,
    pending_txs: Vec<Vec<u8>>,
    pending_bytes: usize,
    flush_at: Option<Instant>,
    validations: usize,
    validated: mpsc::Sender<Validated>,
    serving: usize,
    served: mpsc::Sender<(ResponseChannel<SyncResponse>, SyncResponse)>,
    requests: HashMap<OutboundRequestId, PendingRequest>,
    /// Snapshot requests being served (at most `sync_in_flight_max`), their answers, and the
    /// snapshot requests of ours in flight (as many again).
    snapshot_serving: usize,
    snapshot_served: mpsc::Sender<ServedSnapshot>,
    snapshot_requests: HashMap<OutboundRequestId, PendingSnapshot>,
    /// The isolation this task has applied; it follows `Shared::isolated` at each tick.
    isolated: bool,
    /// The peers connected when the node was cut off, dialled once when it heals (at most
    /// `connections_max`; addresses come from identify's cache).
    reconnect: Vec<PeerId>,
    network: NetworkId,
    /// Connected peers that showed they belong to this network.
    confirmed: HashSet<PeerId>,
    /// Where each connected peer is and who dialled, for `PeerInfo`.
    endpoints: HashMap<PeerId, Endpoint>,
    /// Connected peers that have not yet (bounded by the connection limit).
    unconfirmed: HashMap<PeerId, Unconfirmed>,
    /// Peers of another network, refused, to be disconnected and banned at the deadline
    /// (bounded by the connection limit).
    foreign: HashMap<PeerId, Instant>,
}

fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) => Some(peer),
        _ => None,
    }
}

fn setup(error: impl std::fmt::Display) -> NetError {
    NetError::Setup(error.to_string())
}

pub(super) async fn spawn(
    config: GossipConfig,
    hooks: Hooks,
) -> Result<(GossipHandle, mpsc::Receiver<GossipEvent>), NetError> {
    let mut static_peers = HashMap::new();
    for addr in &config.static_peers {
        let peer = peer_of(addr).ok_or_else(|| NetError::PeerWithoutId(addr.clone()))?;
        static_peers.insert(
            peer,
            StaticPeer {
                addr: addr.clone(),
                backoff: config.limits.redial_min,
                next_dial: Some(Instant::now()),
            },
        );
    }
    let limits = config.limits.clone();
    let network = config.network();
    let topic = IdentTopic::new(network.tx_topic());
    let isolated = Arc::new(AtomicBool::new(false));
    let mut swarm = build_swarm(&config, &topic, isolated.clone())?;
    swarm
        .listen_on(config.listen.clone())
        .map_err(|e| NetError::Listen {
            addr: config.listen.clone(),
            reason: e.to_string(),
        })?;
    let peer_id = *swarm.local_peer_id();
    // Wait for the listener, so the caller can hand its address to others.
    let listen_addr = loop {
        match swarm.select_next_some().await {
            SwarmEvent::NewListenAddr { address, .. } => break address,
            SwarmEvent::ListenerError { error, .. } => {
                return Err(NetError::Listen {
                    addr: config.listen.clone(),
                    reason: error.to_string(),
                });
            }
            SwarmEvent::ListenerClosed { reason, .. } => {
                return Err(NetError::Listen {
                    addr: config.listen.clone(),
                    reason: format!("{reason:?}"),
                });
            }
            _ => {}
        }
    };
    let mut control = swarm.behaviour().streams.new_control();
    let mut incoming = control.accept(CONSENSUS_PROTOCOL).map_err(setup)?;
    let (events_tx, events_rx) = mpsc::channel(limits.events_max);
    let (commands_tx, mut commands_rx) = mpsc::channel(COMMANDS_MAX);
    let metrics = GossipMetrics::new().map_err(setup)?;
    let mut router = Router::new(config.mode, config.validators.latest().clone(), 0);
    router.set_validators(config.validators.clone());
    router.set_queue_max(limits.peer_queue_max, limits.peer_queue_bytes_max);
    let shared = Arc::new(Shared {
        chain_id: config.chain_id.clone(),
        network: network.clone(),
        block_check: hooks.block_check.clone(),
        state: Mutex::new(State {
            router,
            peers: HashMap::new(),
            position: (Height(0), Round(0)),
            validators: Arc::new(config.validators.clone()),
        }),
        scores: Mutex::new(Scores::new()),
        metrics,
        events: events_tx,
        commands: commands_tx,
        started: Instant::now(),
        isolated,
    });
    // Inbound streams go through the swarm task, which knows whether the peer is connected.
    let (inbound_tx, mut inbound_rx) = mpsc::channel::<(PeerId, Stream)>(COMMANDS_MAX);
    tokio::spawn(async move {
        while let Some(stream) = incoming.next().await {
            if inbound_tx.send(stream).await.is_err() {
                break;
            }
        }
    });
    let (validated_tx, mut validated_rx) = mpsc::channel(limits.tx_validations_max.max(1));
    let (served_tx, mut served_rx) = mpsc::channel(limits.sync_in_flight_max.max(1));
    let (snapshot_served_tx, mut snapshot_served_rx) =
        mpsc::channel(limits.sync_in_flight_max.max(1));
    let mut task = Task {
        swarm,
        shared: shared.clone(),
        hooks,
        control,
        limits,
        topic,
        static_peers,
        banned: HashMap::new(),
        pending_txs: Vec::new(),
        pending_bytes: 0,
        flush_at: None,
        validations: 0,
        validated: validated_tx,
        serving: 0,
        served: served_tx,
        requests: HashMap::new(),
        snapshot_serving: 0,
        snapshot_served: snapshot_served_tx,
        snapshot_requests: HashMap::new(),
        isolated: false,
        reconnect: Vec::new(),
        network,
        confirmed: HashSet::new(),
        unconfirmed: HashMap::new(),
        endpoints: HashMap::new(),
        foreign: HashMap::new(),
    };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = task.swarm.select_next_some() => task.on_swarm_event(event),
                Some(command) = commands_rx.recv() => {
                    if let Command::Shutdown(done) = command {
                        task.stop();
                        let _ = done.send(());
                        break;
                    }
                    task.on_command(command);
                }
                Some((peer, stream)) = inbound_rx.recv() => task.on_inbound_stream(peer, stream),
                Some((id, source, txs, verdicts)) = validated_rx.recv() => {
                    task.on_validated(id, source, txs, verdicts);
                }
                Some((channel, response)) = served_rx.recv() => {
                    task.serving -= 1;
                    let _ = task.swarm.behaviour_mut().sync.send_response(channel, response);
                }
                Some(served) = snapshot_served_rx.recv() => task.on_snapshot_served(served),
                _ = tick.tick() => task.on_tick(),
            }
        }
    });
    let handle = GossipHandle {
        shared,
        peer_id,
        listen_addrs: vec![listen_addr.with(Protocol::P2p(peer_id))],
    };
    Ok((handle, events_rx))
}

fn build_swarm(
    config: &GossipConfig,
    topic: &IdentTopic,
    isolated: Arc<AtomicBool>,
) -> Result<Swarm<Behaviour>, NetError> {
    let limits = &config.limits;
    let idle = limits.idle_timeout;
    let builder = libp2p::SwarmBuilder::with_existing_identity(config.keypair.clone())
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(setup)?;
    let behaviour = |key: &libp2p::identity::Keypair| behaviour(config, key, isolated);
    // The resolver reads the system's configuration (resolv.conf, hosts), which a node whose
    // peers are all addresses does not need and may not have.
    let mut swarm = if config.static_peers.iter().any(names_by_dns) {
        builder
            .with_dns()
            .map_err(|e| NetError::Dns(e.to_string()))?
            .with_behaviour(behaviour)
            .map_err(setup)?
            .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
            .build()
    } else {
        builder
            .with_behaviour(behaviour)
            .map_err(setup)?
            .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
            .build()
    };
    swarm.behaviour_mut().txs.subscribe(topic).map_err(setup)?;
    Ok(swarm)
}

/// Whether an address names its host by DNS (`/dns/…`, `/dns4/…`, `/dns6/…`, `/dnsaddr/…`).
fn names_by_dns(addr: &Multiaddr) -> bool {
    addr.iter().any(|protocol| {
        matches!(
            protocol,
            Protocol::Dns(_) | Protocol::Dns4(_) | Protocol::Dns6(_) | Protocol::Dnsaddr(_)
        )
    })
}

fn behaviour(
    config: &GossipConfig,
    key: &libp2p::identity::Keypair,
    isolated: Arc<AtomicBool>,
) -> Result<Behaviour, Box<dyn std::error::Error + Send + Sync>> {
    let limits = &config.limits;
    let connection_limits = connection_limits::ConnectionLimits::default()
        .with_max_established(Some(limits.connections_max))
        .with_max_established_per_peer(Some(limits.connections_per_peer_max))
        .with_max_pending_incoming(Some(limits.pending_max))
        .with_max_pending_outgoing(Some(limits.pending_max));
    let gossipsub_config = gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        .max_transmit_size(TX_BATCH_BYTES_MAX + 16 * 1024)
        // Content addressing: the same batch from two origins is one message.
        .message_id_fn(|message| MessageId::from(blake3::hash(&message.data).as_bytes().to_vec()))
        .build()?;
    let sync_config = request_response::Config::default()
        .with_request_timeout(limits.sync_timeout)
        .with_max_concurrent_streams(limits.sync_in_flight_max);
    let snapshot_config = request_response::Config::default()
        .with_request_timeout(limits.sync_timeout)
        .with_max_concurrent_streams(limits.sync_in_flight_max);
    let identify_cache = limits.connections_max.max(1) as usize;
    let txs =
        gossipsub::Behaviour::new(MessageAuthenticity::Signed(key.clone()), gossipsub_config)?;
    Ok(Behaviour {
        isolation: isolation::Behaviour::new(isolated),
        blocked: allow_block_list::Behaviour::default(),
        limits: connection_limits::Behaviour::new(connection_limits),
        // The protocol version states this node's network, which each side checks
        // (`network.rs`). The cache holds the listen addresses peers report, so that a peer
        // that dialled in can be dialled back by its id when an isolation heals.
        identify: identify::Behaviour::new(
            identify::Config::new(config.network().protocol_version(), key.public())
                .with_agent_version(format!("weft/{}", env!("CARGO_PKG_VERSION")))
                .with_cache_size(identify_cache),
        ),
        streams: libp2p_stream::Behaviour::new(),
        txs,
        sync: request_response::Behaviour::with_codec(
            SyncCodec,
            [(SYNC_PROTOCOL, ProtocolSupport::Full)],
            sync_config,
        ),
        snapshots: request_response::Behaviour::with_codec(
            SnapshotCodec,
            [(SNAPSHOT_PROTOCOL, ProtocolSupport::Full)],
            snapshot_config,
        ),
    })
}

impl Task {
    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::ConnectionEstablished { peer_id, .. } if self.isolated => {
                // Let through before the flag was raised, reported after it.
                let _ = self.swarm.disconnect_peer_id(peer_id);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => {
                let remote_ip = endpoint
                    .get_remote_address()
                    .iter()
                    .find_map(|part| match part {
                        Protocol::Ip4(ip) => Some(std::net::IpAddr::V4(ip)),
                        Protocol::Ip6(ip) => Some(std::net::IpAddr::V6(ip)),
                        _ => None,
                    });
                self.endpoints.insert(
                    peer_id,
                    Endpoint {
                        remote_ip,
                        outbound: endpoint.is_dialer(),
                        since_ms: self.shared.now_ms(),
                    },
                );
                if let Some(entry) = self.static_peers.get_mut(&peer_id) {
                    entry.backoff = self.limits.redial_min;
                    entry.next_dial = None;
                }
                if self.confirmed.contains(&peer_id) {
                    self.ensure_peer(peer_id);
                } else {
                    // Nothing flows until it says which network it belongs to.
                    self.unconfirmed.entry(peer_id).or_insert(Unconfirmed {
                        since: Instant::now(),
                        streams: Vec::new(),
                    });
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.confirmed.remove(&peer_id);
                self.unconfirmed.remove(&peer_id);
                self.foreign.remove(&peer_id);
                self.endpoints.remove(&peer_id);
                self.remove_peer(&peer_id);
                self.schedule_redial(&peer_id);
            }
            SwarmEvent::ConnectionClosed { peer_id, .. } => {
                // Another connection to it remains (it came back before the old one closed).
                // The writer's stream may be on the closed one, where a blocked write is never
                // woken: it starts over on a fresh stream.
                self.restart_writer(peer_id);
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer_id),
                error,
                ..
            } => {
                tracing::debug!(%peer_id, %error, "dial failed");
                if !self.swarm.is_connected(&peer_id) {
                    self.schedule_redial(&peer_id);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Txs(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => self.on_tx_batch(propagation_source, message_id, message.data),
            SwarmEvent::Behaviour(BehaviourEvent::Sync(event)) => self.on_sync_event(event),
            SwarmEvent::Behaviour(BehaviourEvent::Snapshots(event)) => {
                self.on_snapshot_event(event);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                tracing::debug!(%peer_id, agent = %info.agent_version, "identified");
                match self.network.check(&info.protocol_version) {
                    Ok(()) => self.confirm(peer_id),
                    Err(mismatch) => self.refuse_foreign(peer_id, &mismatch),
                }
            }
            _ => {}
        }
    }

    fn ensure_peer(&mut self, peer: PeerId) {
        let mut state = self.shared.state.lock();
        if state.peers.contains_key(&peer) {
            return;
        }
        let slot = state.router.add_peer();
        let wake = Arc::new(Notify::new());
        let writing_since = Arc::new(AtomicU64::new(0));
        let writer = tokio::spawn(write_loop(
            self.shared.clone(),
            self.control.clone(),
            peer,
            slot,
            wake.clone(),
            writing_since.clone(),
        ));
        state.peers.insert(
            peer,
            PeerEntry {
                slot,
                wake,
                writer,
                readers: 0,
                writing_since,
                endpoint: self.endpoints.get(&peer).copied().unwrap_or_default(),
            },
        );
        self.shared.metrics.peers.set(state.peers.len() as i64);
    }

    /// Replaces `peer`'s writer with a fresh one on a new stream; its queue is kept.
    fn restart_writer(&mut self, peer: PeerId) {
        let mut state = self.shared.state.lock();
        let Some(entry) = state.peers.get_mut(&peer) else {
            return;
        };
        entry.writer.abort();
        let writing_since = Arc::new(AtomicU64::new(0));
        entry.writer = tokio::spawn(write_loop(
            self.shared.clone(),
            self.control.clone(),
            peer,
            entry.slot,
            entry.wake.clone(),
            writing_since.clone(),
        ));
        entry.writing_since = writing_since;
    }

    fn remove_peer(&mut self, peer: &PeerId) {
        let mut state = self.shared.state.lock();
        if let Some(entry) = state.peers.remove(peer) {
            entry.writer.abort();
            state.router.remove_peer(entry.slot);
        }
        self.shared.metrics.peers.set(state.peers.len() as i64);
    }

    fn schedule_redial(&mut self, peer: &PeerId) {
        if let Some(entry) = self.static_peers.get_mut(peer) {
            let jitter = rand::rng().random_range(0..=entry.backoff.as_millis() as u64 / 4);
            entry.next_dial = Some(Instant::now() + entry.backoff + Duration::from_millis(jitter));
            entry.backoff = (entry.backoff * 2).min(self.limits.redial_max);
        }
    }

    /// A connected peer showed it belongs to this network: consensus may flow both ways, and
    /// the streams it opened meanwhile are read.
    fn confirm(&mut self, peer: PeerId) {
        if !self.swarm.is_connected(&peer) || !self.confirmed.insert(peer) {
            return;
        }
        let held = self.unconfirmed.remove(&peer).map(|u| u.streams);
        self.ensure_peer(peer);
        for stream in held.into_iter().flatten() {
            self.on_inbound_stream(peer, stream);
        }
    }

    /// A peer of another network, or of none: nothing of it is heard, and after a short grace
    /// (for our own statement to reach it) it is disconnected and refused for a while.
    fn refuse_foreign(&mut self, peer: PeerId, mismatch: &NetworkMismatch) {
        tracing::warn!(
            %peer,
            ours = %self.network,
            "refusing a peer of another network: {mismatch}"
        );
        self.shared
            .metrics
            .semantic
            .with_label_values(&["foreign_peers_refused"])
            .inc();
        self.confirmed.remove(&peer);
        self.unconfirmed.remove(&peer);
        self.remove_peer(&peer);
        self.foreign
            .entry(peer)
            .or_insert_with(|| Instant::now() + FOREIGN_PEER_GRACE);
    }

    fn drop_foreign(&mut self, peer: PeerId) {
        self.foreign.remove(&peer);
        self.on_command(Command::Ban(peer, FOREIGN_PEER_BAN));
        let _ = self.swarm.disconnect_peer_id(peer);
    }

    fn on_inbound_stream(&mut self, peer: PeerId, stream: Stream) {
        if !self.swarm.is_connected(&peer) {
            return;
        }
        if !self.confirmed.contains(&peer) {
            // Held (a bounded few) until the peer says which network it belongs to.
            if let Some(pending) = self.unconfirmed.get_mut(&peer)
                && pending.streams.len() < self.limits.streams_per_peer_max as usize
            {
                pending.streams.push(stream);
            }
            return;
        }
        self.ensure_peer(peer);
        let admitted = {
            let mut state = self.shared.state.lock();
            let entry = state.peers.get_mut(&peer).expect("ensured above");
            if entry.readers >= self.limits.streams_per_peer_max {
                false
            } else {
                entry.readers += 1;
                true
            }
        };
        if admitted {
            tokio::spawn(read_loop(self.shared.clone(), peer, stream));
        } else {
            // Dropping the stream resets it.
            self.shared.penalise(&peer, Offence::ExcessStreams);
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::PublishTxs(txs) => {
                for tx in txs {
                    if self.pending_bytes + batch_cost(&tx) + 5 > self.limits.tx_batch_bytes {
                        self.flush_txs();
                    }
                    self.pending_bytes += batch_cost(&tx);
                    self.pending_txs.push(tx);
                }
                if self.flush_at.is_none() && !self.pending_txs.is_empty() {
                    self.flush_at = Some(Instant::now() + self.limits.tx_batch_delay);
                }
            }
            Command::RequestBlocks {
                peer,
                request,
                reply,
            } => {
                if self.requests.len() >= self.limits.sync_in_flight_max {
                    let _ = reply.send(Err(SyncError::Busy));
                    return;
                }
                let id = self.swarm.behaviour_mut().sync.send_request(&peer, request);
                self.requests.insert(id, (request, peer, reply));
            }
            Command::RequestSnapshot {
                peer,
                request,
                reply,
            } => {
                if self.snapshot_requests.len() >= self.limits.sync_in_flight_max {
                    let _ = reply.send(Err(SyncError::Busy));
                    return;
                }
                let id = self
                    .swarm
                    .behaviour_mut()
                    .snapshots
                    .send_request(&peer, request);
                self.snapshot_requests
                    .insert(id, PendingSnapshot { request, reply });
            }
            Command::Ban(peer, duration) => {
                if self.banned.len() >= BANNED_MAX {
                    // The oldest ban ends first.
                    if let Some(oldest) = self.banned.iter().min_by_key(|(_, until)| **until) {
                        let oldest = *oldest.0;
                        self.banned.remove(&oldest);
                        self.swarm.behaviour_mut().blocked.unblock_peer(oldest);
                    }
                }
                self.banned.insert(peer, Instant::now() + duration);
                self.swarm.behaviour_mut().blocked.block_peer(peer);
            }
            Command::Shutdown(_) => unreachable!("handled by the loop"),
        }
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        if self.flush_at.is_some_and(|at| at <= now) {
            self.flush_txs();
        }
        self.drop_silent_peers(now);
        let expired: Vec<PeerId> = self
            .banned
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(peer, _)| *peer)
            .collect();
        for peer in expired {
            self.banned.remove(&peer);
            self.swarm.behaviour_mut().blocked.unblock_peer(peer);
            self.schedule_redial(&peer);
        }
        self.drop_slow_readers();
        if self.follow_isolation(now) {
            return;
        }
        let due: Vec<(PeerId, Multiaddr)> = self
            .static_peers
            .iter()
            .filter(|(peer, entry)| {
                entry.next_dial.is_some_and(|at| at <= now) && !self.banned.contains_key(peer)
            })
            .map(|(peer, entry)| (*peer, entry.addr.clone()))
            .collect();
        for (peer, addr) in due {
            let entry = self.static_peers.get_mut(&peer).expect("listed above");
            entry.next_dial = None;
            if self.swarm.is_connected(&peer) {
                continue;
            }
            if let Err(error) = self.swarm.dial(addr) {
                tracing::debug!(%peer, %error, "dial refused");
                self.schedule_redial(&peer);
            }
        }
    }

    /// Disconnects peers that have not said which network they belong to within
    /// [`IDENTIFY_WITHIN`] (not Weft nodes, or stuck).
    fn drop_silent_peers(&mut self, now: Instant) {
        let silent: Vec<PeerId> = self
            .unconfirmed
            .iter()
            .filter(|(_, pending)| now.duration_since(pending.since) > IDENTIFY_WITHIN)
            .map(|(peer, _)| *peer)
            .collect();
        for peer in silent {
            tracing::info!(%peer, "peer did not identify its network in time: disconnecting");
            self.unconfirmed.remove(&peer);
            let _ = self.swarm.disconnect_peer_id(peer);
        }
        let due: Vec<PeerId> = self
            .foreign
            .iter()
            .filter(|(_, deadline)| **deadline <= now)
            .map(|(peer, _)| *peer)
            .collect();
        for peer in due {
            self.drop_foreign(peer);
        }
    }

    /// Charges and disconnects every peer whose writer has been blocked in one write for
    /// longer than `write_stall_max`: the peer accepts our stream but does not read it. Its
    /// queue stays bounded meanwhile (the router drops the oldest); this frees its slot.
    fn drop_slow_readers(&mut self) {
        let now_ms = self.shared.now_ms();
        let stall_ms = self.limits.write_stall_max.as_millis() as u64;
        let slow: Vec<PeerId> = self
            .shared
            .state
            .lock()
            .peers
            .iter()
            .filter(|(_, entry)| {
                let since = entry.writing_since.load(Ordering::Acquire);
                // Claimed once: the writer stays blocked until the connection closes.
                since != 0
                    && now_ms.saturating_sub(since - 1) > stall_ms
                    && entry
                        .writing_since
                        .compare_exchange(since, 0, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
            })
            .map(|(peer, _)| *peer)
            .collect();
        for peer in slow {
            tracing::info!(%peer, "slow reader: disconnecting");
            self.shared.penalise(&peer, Offence::SlowReader);
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    /// Applies the handle's isolation flag; returns whether the node is isolated. Entering
    /// isolation remembers the connected peers and closes every connection (the isolation
    /// behaviour refuses new ones); leaving it makes every static peer due now, with its
    /// backoff reset, and dials the remembered peers once.
    fn follow_isolation(&mut self, now: Instant) -> bool {
        let wanted = self.shared.isolated.load(Ordering::Acquire);
        match (self.isolated, wanted) {
            (false, true) => {
                let connected: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
                tracing::info!(
                    peers = connected.len(),
                    "isolated: closing every connection"
                );
                for peer in &connected {
                    let _ = self.swarm.disconnect_peer_id(*peer);
                }
                self.reconnect = connected;
                self.reconnect
                    .truncate(self.limits.connections_max as usize);
            }
            (true, false) => {
                tracing::info!("isolation healed: dialling peers");
                for entry in self.static_peers.values_mut() {
                    entry.backoff = self.limits.redial_min;
                    entry.next_dial = Some(now);
                }
                for peer in std::mem::take(&mut self.reconnect) {
                    if self.static_peers.contains_key(&peer) || self.banned.contains_key(&peer) {
                        continue;
                    }
                    let dial = DialOpts::peer_id(peer)
                        .condition(PeerCondition::DisconnectedAndNotDialing)
                        .build();
                    if let Err(error) = self.swarm.dial(dial) {
                        tracing::debug!(%peer, %error, "redial after healing refused");
                    }
                }
            }
            _ => {}
        }
        self.isolated = wanted;
        wanted
    }

    fn flush_txs(&mut self) {
        self.flush_at = None;
        if self.pending_txs.is_empty() {
            return;
        }
        let batch = encode_batch(&self.pending_txs);
        self.pending_txs.clear();
        self.pending_bytes = 0;
        let topic = self.topic.clone();
        if let Err(error) = self.swarm.behaviour_mut().txs.publish(topic, batch) {
            // The node still holds these txs in its mempool; nothing is lost but the relay.
            tracing::debug!(%error, "tx batch not published");
            self.shared
                .metrics
                .semantic
                .with_label_values(&["tx_batches_unpublished"])
                .inc();
        }
    }

    fn report(&mut self, id: &MessageId, source: &PeerId, acceptance: MessageAcceptance) {
        self.swarm
            .behaviour_mut()
            .txs
            .report_message_validation_result(id, source, acceptance);
    }

    fn on_tx_batch(&mut self, source: PeerId, id: MessageId, data: Vec<u8>) {
        if !self.confirmed.contains(&source) {
            self.report(&id, &source, MessageAcceptance::Ignore);
            return;
        }
        let txs = match decode_batch(&data) {
            Ok(txs) => txs,
            Err(error) => {
                tracing::debug!(%source, %error, "malformed tx batch");
                self.shared.penalise(&source, Offence::Malformed);
                self.report(&id, &source, MessageAcceptance::Reject);
                return;
            }
        };
        if self.validations >= self.limits.tx_validations_max {
            self.report(&id, &source, MessageAcceptance::Ignore);
            return;
        }
        self.validations += 1;
        let validator = self.hooks.txs.clone();
        let back = self.validated.clone();
        tokio::task::spawn_blocking(move || {
            let verdicts = validator.check(&txs);
            let _ = back.blocking_send((id, source, txs, verdicts));
        });
    }

    fn on_validated(
        &mut self,
        id: MessageId,
        source: PeerId,
        txs: Vec<Vec<u8>>,
        verdicts: Vec<TxVerdict>,
    ) {
        self.validations -= 1;
        let rejected = verdicts.len() != txs.len() || verdicts.contains(&TxVerdict::Reject);
        let accepted: Vec<Vec<u8>> = txs
            .into_iter()
            .zip(&verdicts)
            .filter(|(_, verdict)| **verdict == TxVerdict::Accept)
            .map(|(tx, _)| tx)
            .collect();
        let acceptance = if rejected {
            self.shared.penalise(&source, Offence::Malformed);
            MessageAcceptance::Reject
        } else if accepted.is_empty() {
            MessageAcceptance::Ignore
        } else {
            MessageAcceptance::Accept
        };
        self.report(&id, &source, acceptance);
        if !rejected && !accepted.is_empty() {
            let event = GossipEvent::Txs {
                from: source,
                txs: accepted,
            };
            if self.shared.events.try_send(event).is_err() {
                self.shared
                    .metrics
                    .semantic
                    .with_label_values(&["tx_batches_dropped"])
                    .inc();
            }
        }
    }

    fn on_sync_event(&mut self, event: request_response::Event<SyncRequest, SyncResponse>) {
        match event {
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                if !self.confirmed.contains(&peer) {
                    tracing::debug!(%peer, "sync request from an unconfirmed peer dropped");
                    return;
                }
                if self.serving >= self.limits.sync_in_flight_max {
                    tracing::debug!(%peer, "sync request dropped: busy");
                    return;
                }
                self.serving += 1;
                let source = self.hooks.blocks.clone();
                let back = self.served.clone();
                tokio::task::spawn_blocking(move || {
                    let blocks =
                        source.blocks(request.from, request.count, SYNC_RESPONSE_BYTES_MAX);
                    let response = SyncResponse { blocks }.trimmed(request);
                    let _ = back.blocking_send((channel, response));
                });
            }
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some((request, _, reply)) = self.requests.remove(&request_id) {
                    let answer = response.check(request).map(|()| response.blocks);
                    if answer.is_err() {
                        self.shared.penalise(&peer, Offence::Malformed);
                    }
                    let _ = reply.send(answer);
                }
            }
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some((_, _, reply)) = self.requests.remove(&request_id) {
                    let _ = reply.send(Err(SyncError::Failed(error.to_string())));
                }
            }
            _ => {}
        }
    }

    fn on_snapshot_event(
        &mut self,
        event: request_response::Event<SnapshotRequest, SnapshotResponse>,
    ) {
        match event {
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            } => self.serve_snapshot(peer, request, channel),
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some(pending) = self.snapshot_requests.remove(&request_id) {
                    let answer = if response.answers(&pending.request) {
                        Ok(response)
                    } else {
                        self.shared.penalise(&peer, Offence::Malformed);
                        Err(SyncError::BadResponse("a snapshot answer of another kind"))
                    };
                    let _ = pending.reply.send(answer);
                }
            }
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some(pending) = self.snapshot_requests.remove(&request_id) {
                    let _ = pending
                        .reply
                        .send(Err(SyncError::Failed(error.to_string())));
                }
            }
            _ => {}
        }
    }

    /// Serves a confirmed peer's snapshot request through the node's hook, off the swarm task;
    /// drops it while `sync_in_flight_max` are being served.
    fn serve_snapshot(
        &mut self,
        peer: PeerId,
        request: SnapshotRequest,
        channel: ResponseChannel<SnapshotResponse>,
    ) {
        if !self.confirmed.contains(&peer) {
            tracing::debug!(%peer, "snapshot request from an unconfirmed peer dropped");
            return;
        }
        if self.snapshot_serving >= self.limits.sync_in_flight_max {
            tracing::debug!(%peer, "snapshot request dropped: busy");
            return;
        }
        self.snapshot_serving += 1;
        let source = self.hooks.snapshots.clone();
        let back = self.snapshot_served.clone();
        tokio::task::spawn_blocking(move || {
            let mut response = source.serve(&request);
            if !response.fits() {
                tracing::warn!(
                    %peer,
                    ?request,
                    bytes = response.encoded_len(),
                    "the node's snapshot answer is over the caps: answering the empty form"
                );
                response = SnapshotResponse::empty(&request);
            }
            let _ = back.blocking_send(ServedSnapshot {
                channel,
                request,
                response,
            });
        });
    }

    fn on_snapshot_served(&mut self, served: ServedSnapshot) {
        self.snapshot_serving -= 1;
        self.shared
            .metrics
            .snapshots_served
            .with_label_values(&[served.request.kind()])
            .inc();
        let _ = self
            .swarm
            .behaviour_mut()
            .snapshots
            .send_response(served.channel, served.response);
    }

    fn stop(&mut self) {
        let peers: Vec<PeerId> = self.shared.state.lock().peers.keys().copied().collect();
        for peer in peers {
            self.remove_peer(&peer);
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }
}
