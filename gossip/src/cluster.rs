//! A local cluster of gossip nodes over a generated overlay, in one process on loopback. The
//! loopback tests and `gossip-bench` use it; a testnet uses processes instead.

use std::time::{Duration, Instant};

use futures::{AsyncWriteExt, StreamExt};
use libp2p::swarm::NetworkBehaviour;
use libp2p::{Multiaddr, PeerId, Stream, identify, noise, tcp, yamux};

use ed25519_dalek::SigningKey;
use libp2p::identity::Keypair;
use tokio::sync::mpsc;
use weft_consensus::{
    Height, Proposal, Round, SignedProposal, SignedVote, Validator, ValidatorId, ValidatorSet,
    ValueId, Vote, VoteType,
};

use crate::net::{
    CONSENSUS_PROTOCOL, GossipConfig, GossipEvent, GossipHandle, Hooks, NetError, NetworkId, spawn,
};
use crate::overlay::Overlay;
use crate::semantic::GossipMode;
pub use crate::verify::{sign_proposal, sign_vote};

/// A validator's signing key, derived from the chain id and its index (test keys only).
pub fn validator_key(chain_id: &str, index: usize) -> SigningKey {
    let seed = blake3::hash(format!("weft/test-validator/{chain_id}/{index}").as_bytes());
    SigningKey::from_bytes(seed.as_bytes())
}

pub fn validator_id(key: &SigningKey) -> ValidatorId {
    ValidatorId(key.verifying_key().to_bytes())
}

pub struct Member {
    pub key: SigningKey,
    pub id: ValidatorId,
    pub handle: GossipHandle,
    pub events: mpsc::Receiver<GossipEvent>,
}

pub struct Cluster {
    pub chain_id: String,
    pub validators: ValidatorSet,
    pub overlay: Overlay,
    pub members: Vec<Member>,
}

impl Cluster {
    /// Starts one gossip node per overlay node, each a validator of power 1. Node `i` dials its
    /// neighbours above it; `tweak` adjusts each node's config.
    pub async fn start(
        overlay: Overlay,
        mode: GossipMode,
        chain_id: &str,
        tweak: impl Fn(usize, &mut GossipConfig),
    ) -> Result<Self, NetError> {
        Self::start_with_hooks(overlay, mode, chain_id, tweak, |_| Hooks::default()).await
    }

    /// [`Cluster::start`], with each node's hooks from `hooks`.
    pub async fn start_with_hooks(
        overlay: Overlay,
        mode: GossipMode,
        chain_id: &str,
        tweak: impl Fn(usize, &mut GossipConfig),
        hooks: impl Fn(usize) -> Hooks,
    ) -> Result<Self, NetError> {
        let n = overlay.len();
        let keys: Vec<SigningKey> = (0..n).map(|i| validator_key(chain_id, i)).collect();
        let validators = ValidatorSet::new(keys.iter().map(|key| Validator {
            id: validator_id(key),
            power: 1,
        }))
        .expect("distinct test keys");
        let mut started: Vec<Option<(GossipHandle, mpsc::Receiver<GossipEvent>)>> =
            (0..n).map(|_| None).collect();
        for i in (0..n).rev() {
            let keypair = Keypair::ed25519_from_bytes(keys[i].to_bytes())
                .expect("32 bytes are an Ed25519 secret key");
            let mut config = GossipConfig::new(keypair, chain_id, validators.clone());
            config.mode = mode;
            config.static_peers = overlay
                .neighbours(i)
                .iter()
                .filter(|&&j| j > i)
                .map(|&j| {
                    let (handle, _) = started[j].as_ref().expect("started above");
                    handle.listen_addrs()[0].clone()
                })
                .collect();
            tweak(i, &mut config);
            started[i] = Some(spawn(config, hooks(i)).await?);
        }
        let members = started
            .into_iter()
            .zip(keys)
            .map(|(node, key)| {
                let (handle, events) = node.expect("every node started");
                Member {
                    id: validator_id(&key),
                    key,
                    handle,
                    events,
                }
            })
            .collect();
        Ok(Cluster {
            chain_id: chain_id.to_owned(),
            validators,
            overlay,
            members,
        })
    }

    /// Waits until every node is connected to all its overlay neighbours.
    pub async fn wait_connected(&self, deadline: Duration) -> Result<(), String> {
        let until = Instant::now() + deadline;
        loop {
            let short: Vec<usize> = (0..self.members.len())
                .filter(|&i| {
                    self.members[i].handle.peers().len() < self.overlay.neighbours(i).len()
                })
                .collect();
            if short.is_empty() {
                return Ok(());
            }
            if Instant::now() > until {
                return Err(format!(
                    "nodes {short:?} lack neighbours after {deadline:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn vote(
        &self,
        member: usize,
        vote_type: VoteType,
        height: Height,
        round: Round,
        value: Option<ValueId>,
    ) -> SignedVote {
        let key = &self.members[member].key;
        let vote = Vote {
            vote_type,
            height,
            round,
            value,
            validator: validator_id(key),
        };
        sign_vote(key, &self.chain_id, vote)
    }

    pub fn proposal(
        &self,
        member: usize,
        height: Height,
        round: Round,
        value: ValueId,
    ) -> SignedProposal {
        let key = &self.members[member].key;
        let proposal = Proposal {
            height,
            round,
            value,
            pol_round: None,
            proposer: validator_id(key),
        };
        sign_proposal(key, &self.chain_id, proposal)
    }

    /// Index of the member holding `id`.
    pub fn index_of(&self, id: &ValidatorId) -> Option<usize> {
        self.members.iter().position(|m| m.id == *id)
    }

    /// Takes every member's event receiver, leaving a closed one behind.
    pub fn take_events(&mut self) -> Vec<mpsc::Receiver<GossipEvent>> {
        self.members
            .iter_mut()
            .map(|m| std::mem::replace(&mut m.events, mpsc::channel(1).1))
            .collect()
    }

    pub async fn shutdown(&self) {
        for member in &self.members {
            member.handle.shutdown().await;
        }
    }
}

/// What a [`RawPeer`] does with the consensus streams the node opens to it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Inbound {
    /// Does not take the protocol inbound: the node's streams to it fail to open.
    Refuse,
    /// Accepts them and reads them to the end, discarding what arrives.
    Read,
    /// Accepts them and never reads a byte: a slow reader.
    Hold,
}

/// Inbound streams a holding [`RawPeer`] keeps open at once (test peers only).
const HELD_STREAMS_MAX: usize = 64;

/// A raw peer's behaviours: identify (to state a network, as a node must before it is heard)
/// and the consensus streams.
#[derive(NetworkBehaviour)]
struct RawBehaviour {
    identify: identify::Behaviour,
    streams: libp2p_stream::Behaviour,
}

/// A bare libp2p peer that speaks Weft's consensus protocol by hand. Its swarm runs until it
/// is dropped.
pub struct RawPeer {
    pub peer_id: PeerId,
    pub stream: Stream,
    target: PeerId,
    control: libp2p_stream::Control,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RawPeer {
    /// Dials `target` (an address ending in `/p2p/<peer id>`), states that it belongs to
    /// `network`, and opens a consensus stream; refuses the node's streams. The node reads the
    /// stream once the statement has arrived and matched its own network.
    pub async fn connect(target: &Multiaddr, network: &NetworkId) -> Result<RawPeer, NetError> {
        Self::connect_with(target, network, Inbound::Refuse).await
    }

    /// [`RawPeer::connect`], treating the node's streams to it as `inbound` says.
    pub async fn connect_with(
        target: &Multiaddr,
        network: &NetworkId,
        inbound: Inbound,
    ) -> Result<RawPeer, NetError> {
        Self::connect_as(Keypair::generate_ed25519(), target, network, inbound).await
    }

    /// [`RawPeer::connect_with`] under a given identity (to come back as the same peer).
    pub async fn connect_as(
        keypair: Keypair,
        target: &Multiaddr,
        network: &NetworkId,
        inbound: Inbound,
    ) -> Result<RawPeer, NetError> {
        let Some(libp2p::multiaddr::Protocol::P2p(target_id)) = target.iter().last() else {
            return Err(NetError::PeerWithoutId(target.clone()));
        };
        let setup = |e: &dyn std::fmt::Display| NetError::Setup(e.to_string());
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_tcp(
                tcp::Config::default(),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| setup(&e))?
            .with_behaviour(|key| RawBehaviour {
                identify: identify::Behaviour::new(identify::Config::new(
                    network.protocol_version(),
                    key.public(),
                )),
                streams: libp2p_stream::Behaviour::new(),
            })
            .map_err(|e| setup(&e))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build();
        let peer_id = *swarm.local_peer_id();
        let mut control = swarm.behaviour().streams.new_control();
        let mut tasks = Vec::new();
        if inbound != Inbound::Refuse {
            let incoming = control.accept(CONSENSUS_PROTOCOL).map_err(|e| setup(&e))?;
            tasks.push(tokio::spawn(take_inbound(incoming, inbound)));
        }
        swarm.dial(target.clone()).map_err(|e| setup(&e))?;
        tasks.push(tokio::spawn(async move {
            loop {
                swarm.select_next_some().await;
            }
        }));
        let stream = control
            .open_stream(target_id, CONSENSUS_PROTOCOL)
            .await
            .map_err(|e| setup(&e))?;
        Ok(RawPeer {
            peer_id,
            stream,
            target: target_id,
            control,
            tasks,
        })
    }

    /// Accepts the node's block-sync requests and never answers them: a peer gone silent with
    /// its connection open, or one that lies about its height to stall the node's sync.
    pub fn hold_sync_requests(&mut self) -> Result<(), NetError> {
        let incoming = self
            .control
            .accept(crate::net::sync::SYNC_PROTOCOL)
            .map_err(|e| NetError::Setup(e.to_string()))?;
        self.tasks
            .push(tokio::spawn(take_inbound(incoming, Inbound::Hold)));
        Ok(())
    }

    /// Opens one more consensus stream to the node.
    pub async fn open_stream(&mut self) -> Result<Stream, NetError> {
        self.control
            .open_stream(self.target, CONSENSUS_PROTOCOL)
            .await
            .map_err(|e| NetError::Setup(e.to_string()))
    }

    /// Writes raw bytes to the stream.
    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }
}

impl Drop for RawPeer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Takes the node's streams to a raw peer: reads each to its end, or holds each unread.
async fn take_inbound(mut incoming: libp2p_stream::IncomingStreams, inbound: Inbound) {
    let mut held = Vec::new();
    while let Some((_, stream)) = incoming.next().await {
        match inbound {
            Inbound::Read => {
                tokio::spawn(async move {
                    let _ = futures::io::copy(stream, &mut futures::io::sink()).await;
                });
            }
            Inbound::Hold if held.len() < HELD_STREAMS_MAX => held.push(stream),
            Inbound::Hold | Inbound::Refuse => {}
        }
    }
}
