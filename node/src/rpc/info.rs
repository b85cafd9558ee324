//! Info methods (`status`, `net_info`, `validators`, `consensus_state`) and the unsafe
//! partition control.

use super::*;

/// What `status` reads from the chain.
pub(super) struct Tip {
    height: Height,
    hash: [u8; 32],
    app_hash: [u8; 32],
    time_ms: u64,
    voting_power: u64,
    earliest: Height,
    earliest_hash: Option<[u8; 32]>,
}

pub(super) async fn status(state: Arc<RpcState>, _: Params<'static>) -> MethodResult {
    let info = &state.ctx.info;
    let validator = info
        .validator
        .as_deref()
        .and_then(|key| parse_hash32("validator key", key).ok())
        .map(ValidatorId);
    let tip = read_chain(&state, move |chain| {
        Ok(Tip {
            height: chain.height(),
            hash: chain.last_hash().0,
            app_hash: chain.state_root(),
            time_ms: chain.last_time_ms(),
            earliest: chain.earliest_height(),
            earliest_hash: chain
                .block(chain.earliest_height())
                .ok()
                .flatten()
                .map(|block| block.hash.0),
            voting_power: validator
                .and_then(|id| chain.current_validators().power(&id))
                .unwrap_or(0),
        })
    })
    .await?;
    let catching_up = state.ctx.consensus.lock().catching_up;
    let listen_addr = info
        .p2p_addrs
        .first()
        .cloned()
        .unwrap_or_else(|| state.ctx.config.p2p.listen.clone());
    Ok(json!({
        "node_info": {
            "id": info.peer_id,
            "moniker": info.moniker,
            "network": info.chain_id,
            "version": info.version,
            "listen_addr": listen_addr,
            "rpc_addr": state.rpc_addr.to_string(),
        },
        "sync_info": {
            "latest_block_hash": hex::encode(tip.hash),
            "latest_app_hash": hex::encode(tip.app_hash),
            "latest_block_height": tip.height.0.to_string(),
            "latest_block_time_ms": tip.time_ms,
            "earliest_block_height": tip.earliest.0.to_string(),
            "earliest_block_hash": tip.earliest_hash.map(hex::encode).unwrap_or_default(),
            "catching_up": catching_up,
        },
        "validator_info": {
            "pub_key": info.validator,
            "voting_power": tip.voting_power,
        },
    }))
}

pub(super) async fn net_info(state: Arc<RpcState>, _: Params<'static>) -> MethodResult {
    let peers: Vec<Value> = state
        .ctx
        .gossip
        .peers()
        .iter()
        .map(|p| json!({ "id": p.peer.to_string(), "height": p.height.0, "round": p.round.0 }))
        .collect();
    let isolated = state.ctx.gossip.is_isolated();
    Ok(json!({ "n_peers": peers.len(), "peers": peers, "isolated": isolated }))
}

// --- Unsafe methods (registered only with `rpc.unsafe`) ---

pub(super) async fn unsafe_set_isolated(
    state: Arc<RpcState>,
    params: Params<'static>,
) -> MethodResult {
    let IsolatedParams { isolated } = parse_params(params.as_str())?;
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
    Ok(json!({ "isolated": isolated, "peers": gossip.peers().len() }))
}

/// The validator set of `height` (default: the height consensus works on, the latest committed
/// one + 1, as CometBFT answers), with each validator's proposer priority at the start of that
/// height. Heights up to the latest + 2 are known (block H fixes the set of H + 2).
pub(super) async fn validators(state: Arc<RpcState>, params: Params<'static>) -> MethodResult {
    let HeightParams { height } = parse_params(params.as_str())?;
    read_chain(&state, move |chain| {
        let initial = chain.genesis().initial_height;
        let latest = chain.height().0;
        let known = latest.max(initial.saturating_sub(1)) + 2;
        let height = height.unwrap_or(latest.max(initial.saturating_sub(1)) + 1);
        if height < initial || height > known {
            return Err(not_found(format!(
                "the validator set of height {height} is not known: heights {initial} to \
                 {known} are"
            )));
        }
        let set = chain
            .validators_at(Height(height))
            .map_err(internal)?
            .ok_or_else(|| not_found(format!("validators of height {height} are not stored")))?;
        let validators: Vec<Value> = set
            .validators()
            .iter()
            .zip(set.priorities())
            .map(|(v, priority)| {
                json!({
                    "pub_key": hex::encode(v.id.0),
                    "voting_power": v.power,
                    "proposer_priority": priority,
                })
            })
            .collect();
        Ok(json!({
            "block_height": height,
            "validators": validators,
            "count": set.len(),
            "total": set.len(),
            "total_voting_power": set.total_power(),
        }))
    })
    .await
}

pub(super) async fn consensus_state(state: Arc<RpcState>, _: Params<'static>) -> MethodResult {
    let status = state.ctx.consensus.lock().clone();
    let evidence: Vec<Value> = state
        .ctx
        .evidence
        .lock()
        .iter()
        .map(evidence_json)
        .collect();
    Ok(json!({
        "height": status.height.0,
        "round": status.round.0,
        "catching_up": status.catching_up,
        "evidence": evidence,
    }))
}
