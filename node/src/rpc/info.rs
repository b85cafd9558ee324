//! The node and its consensus: `status`, `net_info`, `validators`, `genesis`, the consensus
//! state and params, `abci_info`, and the unsafe partition control.

use super::api::encoding::{self, Base64, Hash, HexBytes, Int, PubKey, Time};
use super::api::types::*;
use super::*;

/// This node's CometBFT-shaped identity.
pub(super) fn node_info(state: &RpcState) -> NodeInfo {
    let info = &state.ctx.info;
    let listen = info
        .p2p_addrs
        .first()
        .cloned()
        .unwrap_or_else(|| state.ctx.config.p2p.listen.clone());
    let id = info
        .peer_id
        .parse::<libp2p::PeerId>()
        .ok()
        .and_then(|peer| convert::peer_key(&peer))
        .map(|key| encoding::node_id_of(&key))
        .unwrap_or_default();
    NodeInfo {
        protocol_version: ProtocolVersion {
            p2p: Int(convert::P2P_PROTOCOL),
            block: Int(convert::BLOCK_PROTOCOL),
            app: Int(convert::APP_VERSION),
        },
        id,
        listen_addr: convert::tcp_address(&listen),
        network: info.chain_id.clone(),
        version: info.version.clone(),
        channels: String::new(),
        moniker: info.moniker.clone(),
        other: NodeInfoOther {
            tx_index: "on".into(),
            rpc_address: format!("tcp://{}", state.rpc_addr),
        },
        peer_id: info.peer_id.clone(),
        listen_multiaddr: listen,
    }
}

/// The key `status` reports: the validator key, or the node key where there is none.
fn own_key(state: &RpcState) -> Option<[u8; 32]> {
    let info = &state.ctx.info;
    info.validator
        .as_deref()
        .and_then(|key| encoding::parse_hash(key).ok())
        .or_else(|| {
            info.peer_id
                .parse::<libp2p::PeerId>()
                .ok()
                .and_then(|peer| convert::peer_key(&peer))
        })
}

/// What `status` reads from the chain.
struct Tip {
    height: Height,
    hash: Option<[u8; 32]>,
    app_hash: Vec<u8>,
    time_ms: u64,
    earliest: Height,
    earliest_hash: Option<[u8; 32]>,
    earliest_app_hash: Vec<u8>,
    earliest_time_ms: u64,
    power: u64,
}

pub(super) async fn status(state: &RpcState) -> RpcResult<StatusResult> {
    let key = own_key(state);
    let tip = read_chain(state, move |chain| {
        let committed = chain.height().0 >= chain.genesis().initial_height;
        let earliest = chain.earliest_height();
        let first = if committed {
            chain.block(earliest).map_err(internal)?
        } else {
            None
        };
        Ok(Tip {
            height: chain.height(),
            hash: committed.then(|| chain.last_hash().0),
            app_hash: chain.state_root().to_vec(),
            time_ms: chain.last_time_ms(),
            earliest,
            earliest_hash: first.as_ref().map(|b| b.hash.0),
            earliest_app_hash: first
                .as_ref()
                .map(|b| b.block.header.state_root.0.to_vec())
                .unwrap_or_default(),
            earliest_time_ms: first.as_ref().map(|b| b.block.header.time_ms).unwrap_or(0),
            power: key
                .and_then(|key| chain.current_validators().power(&ValidatorId(key)))
                .unwrap_or(0),
        })
    })
    .await?;
    let catching_up = state.ctx.consensus.lock().catching_up;
    let key = key.unwrap_or([0; 32]);
    Ok(StatusResult {
        node_info: node_info(state),
        sync_info: SyncInfo {
            latest_block_hash: Hash(tip.hash),
            latest_app_hash: HexBytes(tip.app_hash),
            latest_block_height: Int(tip.height.0),
            latest_block_time: Time::from_unix_ms(tip.time_ms),
            earliest_block_hash: Hash(tip.earliest_hash),
            earliest_app_hash: HexBytes(tip.earliest_app_hash),
            earliest_block_height: Int(tip.earliest.0),
            earliest_block_time: Time::from_unix_ms(tip.earliest_time_ms),
            catching_up,
        },
        validator_info: ValidatorInfo {
            address: encoding::address_of(&key),
            pub_key: PubKey::ed25519(key),
            voting_power: Int(tip.power),
            proposer_priority: Default::default(),
        },
    })
}

/// A connected peer as CometBFT lists one. Weft knows a peer's key (from its peer id), its
/// address and direction, and the height and round it advertised; not its moniker or version.
fn peer_info(state: &RpcState, peer: &weft_gossip::PeerInfo, now_ms: u64) -> PeerInfo {
    let key = convert::peer_key(&peer.peer);
    let connected_ns = now_ms.saturating_sub(peer.endpoint.since_ms) * 1_000_000;
    PeerInfo {
        node_info: NodeInfo {
            protocol_version: ProtocolVersion {
                p2p: Int(convert::P2P_PROTOCOL),
                block: Int(convert::BLOCK_PROTOCOL),
                app: Int(convert::APP_VERSION),
            },
            id: key
                .map(|key| encoding::node_id_of(&key))
                .unwrap_or_default(),
            listen_addr: String::new(),
            network: state.ctx.info.chain_id.clone(),
            version: String::new(),
            channels: String::new(),
            moniker: String::new(),
            other: NodeInfoOther {
                tx_index: "on".into(),
                rpc_address: String::new(),
            },
            peer_id: peer.peer.to_string(),
            listen_multiaddr: String::new(),
        },
        is_outbound: peer.endpoint.outbound,
        connection_status: ConnectionStatus {
            duration: Int(connected_ns),
            ..ConnectionStatus::default()
        },
        remote_ip: peer
            .endpoint
            .remote_ip
            .map(|ip| ip.to_string())
            .unwrap_or_else(|| "0.0.0.0".into()),
        height: Int(peer.height.0),
        round: peer.round.0,
    }
}

pub(super) async fn net_info(state: &RpcState) -> RpcResult<NetInfoResult> {
    let gossip = &state.ctx.gossip;
    let now_ms = gossip.now_ms();
    let peers: Vec<PeerInfo> = gossip
        .peers()
        .iter()
        .map(|peer| peer_info(state, peer, now_ms))
        .collect();
    let listeners = state
        .ctx
        .info
        .p2p_addrs
        .iter()
        .map(|addr| format!("Listener(@{})", convert::tcp_address(addr)))
        .collect();
    Ok(NetInfoResult {
        listening: !gossip.is_isolated(),
        listeners,
        n_peers: Int(peers.len() as u64),
        peers,
        isolated: gossip.is_isolated(),
    })
}

pub(super) async fn unsafe_set_isolated(
    state: &RpcState,
    isolated: bool,
) -> RpcResult<IsolatedResult> {
    tracing::warn!(isolated, "unsafe_set_isolated called");
    let gossip = &state.ctx.gossip;
    gossip.set_isolated(isolated);
    if isolated {
        // Answer once the cut shows, so the caller may go on to look at the other nodes; the
        // wait stays well inside the method's own timeout.
        let settle =
            Duration::from_millis(ISOLATION_SETTLE_MS).min(state.ctx.config.rpc_timeout() / 2);
        let deadline = Instant::now() + settle;
        while gossip.is_isolated() && !gossip.peers().is_empty() && Instant::now() < deadline {
            tokio::time::sleep(ISOLATION_POLL).await;
        }
    }
    Ok(IsolatedResult {
        isolated,
        peers: Int(gossip.peers().len() as u64),
    })
}

/// The validator set of `height` (default: the height consensus works on, the latest committed
/// one + 1, as CometBFT answers), with each validator's proposer priority at the start of that
/// height, a page at a time. Heights up to the latest + 2 are known (block H fixes the set of
/// H + 2).
pub(super) async fn validators(
    state: &RpcState,
    height: Option<Int>,
    page: Option<Int>,
    per_page: Option<Int>,
) -> RpcResult<ValidatorsResult> {
    read_chain(state, move |chain| {
        let (height, set) = validator_set(chain, height.map(|h| h.0))?;
        let range = reads::page_range(set.len() as u64, page, per_page)?;
        let validators: Vec<ValidatorInfo> = set
            .validators()
            .iter()
            .zip(set.priorities())
            .skip(range.start as usize)
            .take((range.end - range.start) as usize)
            .map(|(v, priority)| convert::validator_info(&v.id, v.power, *priority))
            .collect();
        Ok(ValidatorsResult {
            block_height: Int(height),
            count: Int(validators.len() as u64),
            validators,
            total: Int(set.len() as u64),
        })
    })
    .await
}

/// The set of `height` (default: the next height), and the height.
fn validator_set(
    chain: &Chain,
    height: Option<u64>,
) -> Result<(u64, weft_consensus::ValidatorSet), ErrorObjectOwned> {
    let initial = chain.genesis().initial_height;
    let latest = chain.height().0;
    let known = latest.max(initial.saturating_sub(1)) + 2;
    let height = height
        .filter(|h| *h != 0)
        .unwrap_or(latest.max(initial.saturating_sub(1)) + 1);
    if height > known {
        return Err(not_found(format!(
            "height {height} must be less than or equal to the current blockchain height {latest}"
        )));
    }
    let earliest = chain.earliest_height().0.max(initial);
    if height < earliest {
        return Err(not_found(format!(
            "height {height} is not available, lowest height is {earliest}"
        )));
    }
    let set = chain
        .validators_at(Height(height))
        .map_err(internal)?
        .ok_or_else(|| not_found(format!("validators of height {height} are not stored")))?;
    Ok((height, set))
}

pub(super) async fn consensus_params(
    state: &RpcState,
    height: Option<Int>,
) -> RpcResult<ConsensusParamsResult> {
    read_chain(state, move |chain| {
        // The params never change: any height up to the next one is answered alike.
        let (height, _) = validator_set(chain, height.map(|h| h.0))?;
        Ok(ConsensusParamsResult {
            block_height: Int(height),
            consensus_params: convert::consensus_params(chain.genesis()),
        })
    })
    .await
}

/// The proposer of `round` in `set`.
fn proposer(set: &weft_consensus::ValidatorSet, round: Round) -> RoundProposer {
    let id = set.proposer(round);
    RoundProposer {
        address: convert::address(&id),
        index: set.index_of(&id).map(|i| i as i32).unwrap_or(-1),
    }
}

/// Where consensus is: the driver's last status, but never below the height after the latest
/// committed one (the chain can commit a height before the driver reports the next, and
/// CometBFT's round state is at latest + 1 while it waits out `timeout_commit`).
async fn round_state(
    state: &RpcState,
) -> Result<
    (
        crate::context::ConsensusStatus,
        weft_consensus::ValidatorSet,
    ),
    ErrorObjectOwned,
> {
    let mut status = state.ctx.consensus.lock().clone();
    let reported = status.height;
    let (next, set) = read_chain(state, move |chain| {
        let next = Height(
            chain
                .height()
                .0
                .max(chain.genesis().initial_height.saturating_sub(1))
                + 1,
        );
        let height = reported.max(next);
        let set = chain
            .validators_at(height)
            .map_err(internal)?
            .unwrap_or_else(|| chain.next_validators().clone());
        Ok((next, set))
    })
    .await?;
    if status.height < next {
        status.height = next;
        status.round = Round(0);
    }
    Ok((status, set))
}

pub(super) async fn consensus_state(state: &RpcState) -> RpcResult<ConsensusStateResult> {
    let (status, set) = round_state(state).await?;
    let step = if status.catching_up { 1 } else { 3 };
    Ok(ConsensusStateResult {
        round_state: RoundStateSummary {
            height_round_step: format!("{}/{}/{step}", status.height.0, status.round.0),
            start_time: Time::from_unix_ms(status.last_block_time_ms),
            proposal_block_hash: Hash(None),
            locked_block_hash: Hash(None),
            valid_block_hash: Hash(None),
            height_vote_set: Vec::new(),
            proposer: proposer(&set, status.round),
            height: Int(status.height.0),
            round: status.round.0,
            catching_up: status.catching_up,
        },
    })
}

pub(super) async fn dump_consensus_state(state: &RpcState) -> RpcResult<DumpConsensusStateResult> {
    let (status, set) = round_state(state).await?;
    let evidence: Vec<WeftEvidence> = state
        .ctx
        .evidence
        .lock()
        .iter()
        .map(convert::evidence)
        .collect();
    let peers = state
        .ctx
        .gossip
        .peers()
        .iter()
        .map(|peer| PeerRoundState {
            node_address: convert::peer_key(&peer.peer)
                .map(|key| encoding::node_id_of(&key))
                .unwrap_or_else(|| peer.peer.to_string()),
            peer_state: PeerState {
                round_state: PeerRound {
                    height: Int(peer.height.0),
                    round: peer.round.0,
                },
            },
        })
        .collect();
    let validators: Vec<ValidatorInfo> = set
        .validators()
        .iter()
        .zip(set.priorities())
        .map(|(v, priority)| convert::validator_info(&v.id, v.power, *priority))
        .collect();
    Ok(DumpConsensusStateResult {
        round_state: DumpRoundState {
            height: Int(status.height.0),
            round: status.round.0,
            step: if status.catching_up { 1 } else { 3 },
            catching_up: status.catching_up,
            start_time: Time::from_unix_ms(status.last_block_time_ms),
            commit_time: Time::from_unix_ms(status.last_block_time_ms),
            validators: ValidatorsResult {
                block_height: Int(status.height.0),
                count: Int(validators.len() as u64),
                total: Int(validators.len() as u64),
                validators,
            },
            proposer: proposer(&set, status.round),
            evidence,
        },
        peers,
    })
}

/// The genesis in CometBFT's shape.
pub(super) fn genesis_doc(genesis: &weft_genesis::Genesis) -> Result<GenesisDoc, ErrorObjectOwned> {
    let validators = genesis
        .validators
        .iter()
        .map(|v| {
            let key = v
                .public_key()
                .map_err(|e| internal(format!("genesis validator {}: {e}", v.name)))?;
            Ok(GenesisValidator {
                address: encoding::address_of(&key),
                pub_key: PubKey::ed25519(key),
                power: Int(v.power),
                name: v.name.clone(),
            })
        })
        .collect::<Result<Vec<_>, ErrorObjectOwned>>()?;
    let mut app_state = json!({
        "accounts": genesis.accounts,
        "consensus": genesis.consensus,
    });
    if let Some(authority) = &genesis.validator_authority {
        app_state["validator_authority"] = json!(authority);
    }
    Ok(GenesisDoc {
        genesis_time: Time::parse(&genesis.genesis_time).map_err(internal)?,
        chain_id: genesis.chain_id.clone(),
        initial_height: Int(genesis.initial_height),
        consensus_params: convert::consensus_params(genesis),
        validators,
        app_hash: HexBytes::default(),
        app_state,
    })
}

pub(super) async fn genesis(state: &RpcState) -> RpcResult<GenesisResult> {
    read_chain(state, |chain| {
        Ok(GenesisResult {
            genesis: genesis_doc(chain.genesis())?,
        })
    })
    .await
}

pub(super) async fn genesis_chunked(
    state: &RpcState,
    chunk: Option<Int>,
) -> RpcResult<GenesisChunkedResult> {
    let chunk = chunk.map(|c| c.0).unwrap_or(0);
    read_chain(state, move |chain| {
        let doc = genesis_doc(chain.genesis())?;
        let bytes = serde_json::to_vec(&doc).map_err(internal)?;
        let chunks: Vec<&[u8]> = bytes.chunks(super::api::GENESIS_CHUNK_BYTES).collect();
        let total = chunks.len().max(1) as u64;
        let data = chunks
            .get(chunk as usize)
            .ok_or_else(|| not_found(format!("there are {total} chunks, {chunk} is invalid")))?;
        Ok(GenesisChunkedResult {
            chunk: Int(chunk),
            total: Int(total),
            data: Base64(data.to_vec()),
        })
    })
    .await
}

pub(super) async fn abci_info(state: &RpcState) -> RpcResult<AbciInfoResult> {
    let version = state.ctx.info.version.clone();
    read_chain(state, move |chain| {
        Ok(AbciInfoResult {
            response: AbciInfo {
                data: "weft".into(),
                version,
                app_version: Int(convert::APP_VERSION),
                last_block_height: Int(chain.height().0),
                last_block_app_hash: Base64(chain.state_root().to_vec()),
            },
        })
    })
    .await
}
