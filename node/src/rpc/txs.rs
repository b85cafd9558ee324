//! The mempool over RPC: `unconfirmed_txs`, `num_unconfirmed_txs`, `broadcast_tx_*`.

use super::*;

pub(super) async fn unconfirmed_txs(state: Arc<RpcState>, params: Params<'static>) -> MethodResult {
    let LimitParams { limit } = parse_params(params.as_str())?;
    let limit = limit
        .unwrap_or(UNCONFIRMED_TXS_DEFAULT)
        .min(UNCONFIRMED_TXS_MAX) as usize;
    let (pending, total, total_bytes) = {
        let mempool = state.ctx.mempool.lock();
        (mempool.pending(limit), mempool.len(), mempool.bytes())
    };
    let txs: Vec<String> = pending.iter().map(|tx| hex::encode(tx.encode())).collect();
    Ok(json!({
        "n_txs": txs.len(),
        "total": total,
        "total_bytes": total_bytes,
        "txs": txs,
    }))
}

pub(super) async fn num_unconfirmed_txs(state: Arc<RpcState>, _: Params<'static>) -> MethodResult {
    let (total, total_bytes) = {
        let mempool = state.ctx.mempool.lock();
        (mempool.len(), mempool.bytes())
    };
    Ok(json!({ "n_txs": total, "total": total, "total_bytes": total_bytes }))
}

/// The mempool's verdict on one tx, as CometBFT's CheckTx result.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Check {
    pub(super) code: u32,
    pub(super) log: String,
    /// `None` when the bytes are not a transaction.
    pub(super) hash: Option<TxHash>,
}

impl Check {
    pub(super) fn malformed(reason: String) -> Check {
        Check {
            code: AdmitError::Malformed(String::new()).code(),
            log: AdmitError::Malformed(reason).to_string(),
            hash: None,
        }
    }

    pub(super) fn json(&self) -> Value {
        json!({
            "code": self.code,
            "log": self.log,
            "hash": self.hash.map(|h| hex::encode(h.0)),
        })
    }
}

/// Admits `bytes` to the mempool and, when admitted, gossips them (batched with other callers'
/// txs by the [`Admitter`]).
pub(super) async fn check_tx(state: &RpcState, bytes: Vec<u8>) -> Result<Check, ErrorObjectOwned> {
    let admission = state
        .admitter
        .admit(bytes)
        .await
        .map_err(|e| internal(format!("mempool check failed: {e}")))?;
    Ok(match admission.verdict {
        Ok(hash) => Check {
            code: 0,
            log: String::new(),
            hash: Some(hash),
        },
        Err(reason) => Check {
            code: reason.code(),
            log: reason.to_string(),
            hash: admission.hash,
        },
    })
}

/// Decodes the `tx` param into a transaction's bytes, or the malformed verdict.
pub(super) fn tx_param(
    params: &Params<'static>,
) -> Result<Result<Vec<u8>, Check>, ErrorObjectOwned> {
    let TxParams { tx } = parse_params(params.as_str())?;
    Ok(decode_tx_text(&tx).map_err(Check::malformed))
}

pub(super) async fn broadcast_tx_sync(
    state: Arc<RpcState>,
    params: Params<'static>,
) -> MethodResult {
    let check = match tx_param(&params)? {
        Ok(bytes) => check_tx(&state, bytes).await?,
        Err(malformed) => malformed,
    };
    Ok(check.json())
}

pub(super) async fn broadcast_tx_async(
    state: Arc<RpcState>,
    params: Params<'static>,
) -> MethodResult {
    let bytes = match tx_param(&params)? {
        Ok(bytes) => bytes,
        Err(malformed) => return Ok(malformed.json()),
    };
    let hash = match Transaction::decode(&bytes) {
        Ok(tx) => tx.hash(),
        Err(e) => return Ok(Check::malformed(e.to_string()).json()),
    };
    let Ok(permit) = Arc::clone(&state.async_checks).try_acquire_owned() else {
        return Ok(check_tx(&state, bytes).await?.json());
    };
    let background = Arc::clone(&state);
    tokio::spawn(async move {
        match check_tx(&background, bytes).await {
            Ok(check) if check.code != 0 => {
                tracing::debug!(code = check.code, log = %check.log, "async tx refused");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e.message(), "async tx check failed"),
        }
        drop(permit);
    });
    Ok(Check {
        code: 0,
        log: String::new(),
        hash: Some(hash),
    }
    .json())
}

pub(super) async fn broadcast_tx_commit(
    state: Arc<RpcState>,
    params: Params<'static>,
) -> MethodResult {
    // Subscribe before admitting, so a block that commits the tx at once is still seen.
    let mut events = state.ctx.events.subscribe();
    let check = match tx_param(&params)? {
        Ok(bytes) => check_tx(&state, bytes).await?,
        Err(malformed) => malformed,
    };
    let reply = |tx_result: Value, height: u64| {
        json!({
            "check_tx": { "code": check.code, "log": check.log },
            "tx_result": tx_result,
            "hash": check.hash.map(|h| hex::encode(h.0)),
            "height": height,
        })
    };
    let Some(hash) = check.hash.filter(|_| check.code == 0) else {
        return Ok(reply(Value::Null, 0));
    };
    let timeout_ms = state.ctx.config.rpc.commit_timeout_ms;
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    match wait_for_commit(&state, &mut events, hash, deadline).await? {
        Some((height, code)) => Ok(reply(tx_result_json(code), height.0)),
        None => Err(ErrorObjectOwned::owned(
            COMMIT_TIMEOUT_CODE,
            COMMIT_TIMEOUT_MESSAGE,
            Some(json!({ "hash": hex::encode(hash.0), "timeout_ms": timeout_ms })),
        )),
    }
}

/// Waits until `deadline` for a block holding `hash`; its height and the tx's code.
pub(super) async fn wait_for_commit(
    state: &RpcState,
    events: &mut broadcast::Receiver<NodeEvent>,
    hash: TxHash,
    deadline: Instant,
) -> Result<Option<(Height, u8)>, ErrorObjectOwned> {
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(NodeEvent::NewBlock { height, txs, .. })) => {
                if let Some((_, code)) = txs.iter().find(|(h, _)| *h == hash) {
                    return Ok(Some((height, *code)));
                }
            }
            // Missed events may have held the tx: ask the index.
            Ok(Err(RecvError::Lagged(_))) => {
                if let Some(found) = committed_tx(state, hash).await? {
                    return Ok(Some(found));
                }
            }
            Ok(Err(RecvError::Closed)) => {
                return Err(internal("the node is shutting down"));
            }
            // A last look: the commit may have raced the deadline.
            Err(_) => return committed_tx(state, hash).await,
        }
    }
}

pub(super) async fn committed_tx(
    state: &RpcState,
    hash: TxHash,
) -> Result<Option<(Height, u8)>, ErrorObjectOwned> {
    read_chain(state, move |chain| {
        let location = chain.tx(&hash).map_err(internal)?;
        Ok(location.map(|l| (l.height, l.code)))
    })
    .await
}
