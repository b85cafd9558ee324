//! The mempool over RPC: `unconfirmed_txs`, `num_unconfirmed_txs`, `check_tx`,
//! `broadcast_tx_*`.

use super::api::TxText;
use super::api::encoding::{Base64, Hash, HexBytes, Int};
use super::api::types::*;
use super::*;

pub(super) async fn unconfirmed_txs(
    state: &RpcState,
    limit: Option<Int>,
) -> RpcResult<UnconfirmedTxsResult> {
    let limit = limit
        .map(|l| l.0)
        .filter(|l| *l > 0)
        .unwrap_or(UNCONFIRMED_TXS_DEFAULT)
        .min(UNCONFIRMED_TXS_MAX) as usize;
    let (pending, total, total_bytes) = {
        let mempool = state.ctx.mempool.lock();
        (mempool.pending(limit), mempool.len(), mempool.bytes())
    };
    let txs: Vec<Base64> = pending.iter().map(|tx| Base64(tx.encode())).collect();
    Ok(UnconfirmedTxsResult {
        n_txs: Int(txs.len() as u64),
        total: Int(total as u64),
        total_bytes: Int(total_bytes as u64),
        txs: Some(txs),
    })
}

pub(super) async fn num_unconfirmed_txs(state: &RpcState) -> RpcResult<UnconfirmedTxsResult> {
    let (total, total_bytes) = {
        let mempool = state.ctx.mempool.lock();
        (mempool.len(), mempool.bytes())
    };
    Ok(UnconfirmedTxsResult {
        n_txs: Int(total as u64),
        total: Int(total as u64),
        total_bytes: Int(total_bytes as u64),
        txs: None,
    })
}

/// The mempool's verdict on one tx, as CometBFT's CheckTx result. `hash` is blake3 of the
/// bytes (Weft's tx hash, for bytes that are a tx).
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Check {
    pub(super) code: u32,
    pub(super) log: String,
    pub(super) hash: [u8; 32],
}

impl Check {
    fn malformed(reason: String, bytes: &[u8]) -> Check {
        Check {
            code: AdmitError::Malformed(String::new()).code(),
            log: AdmitError::Malformed(reason).to_string(),
            hash: *blake3::hash(bytes).as_bytes(),
        }
    }

    fn verdict(verdict: Result<TxHash, AdmitError>, bytes: &[u8]) -> Check {
        match verdict {
            Ok(hash) => Check {
                code: 0,
                log: String::new(),
                hash: hash.0,
            },
            Err(reason) => Check {
                code: reason.code(),
                log: reason.to_string(),
                hash: *blake3::hash(bytes).as_bytes(),
            },
        }
    }

    pub(super) fn broadcast(&self) -> BroadcastResult {
        BroadcastResult {
            code: self.code,
            data: HexBytes::default(),
            log: self.log.clone(),
            codespace: String::new(),
            hash: Hash::some(self.hash),
        }
    }

    pub(super) fn check_tx(&self) -> CheckTxResult {
        CheckTxResult {
            code: self.code,
            log: self.log.clone(),
            ..CheckTxResult::default()
        }
    }
}

/// The tx's bytes, or the malformed verdict on its text.
fn tx_bytes(tx: TxText) -> Result<Vec<u8>, Check> {
    tx.0.map_err(|reason| Check::malformed(reason, &[]))
}

/// Admits `bytes` to the mempool and, when admitted, gossips them (batched with other callers'
/// txs by the [`Admitter`]).
pub(super) async fn admit(state: &RpcState, bytes: Vec<u8>) -> Result<Check, ErrorObjectOwned> {
    let admission = state
        .admitter
        .admit(bytes.clone())
        .await
        .map_err(|e| internal(format!("mempool check failed: {e}")))?;
    Ok(Check::verdict(admission.verdict, &bytes))
}

pub(super) async fn check_tx(state: &RpcState, tx: TxText) -> RpcResult<CheckTxResult> {
    let bytes = match tx_bytes(tx) {
        Ok(bytes) => bytes,
        Err(malformed) => return Ok(malformed.check_tx()),
    };
    let chain = Arc::clone(&state.ctx.chain);
    let mempool = Arc::clone(&state.ctx.mempool);
    let check = tokio::task::spawn_blocking(move || {
        // The driver's lock order: the chain before the mempool.
        let chain = chain.read();
        let verdict = mempool.lock().check_only(&bytes, chain.state());
        Check::verdict(verdict, &bytes)
    })
    .await
    .map_err(|e| internal(format!("check_tx failed: {e}")))?;
    Ok(check.check_tx())
}

pub(super) async fn broadcast_tx_sync(state: &RpcState, tx: TxText) -> RpcResult<BroadcastResult> {
    let check = match tx_bytes(tx) {
        Ok(bytes) => admit(state, bytes).await?,
        Err(malformed) => malformed,
    };
    Ok(check.broadcast())
}

pub(super) async fn broadcast_tx_async(
    state: &Arc<RpcState>,
    tx: TxText,
) -> RpcResult<BroadcastResult> {
    let bytes = match tx_bytes(tx) {
        Ok(bytes) => bytes,
        Err(malformed) => return Ok(malformed.broadcast()),
    };
    let hash = match Transaction::decode(&bytes) {
        Ok(tx) => tx.hash(),
        Err(e) => return Ok(Check::malformed(e.to_string(), &bytes).broadcast()),
    };
    let Ok(permit) = Arc::clone(&state.async_checks).try_acquire_owned() else {
        return Ok(admit(state, bytes).await?.broadcast());
    };
    let background = Arc::clone(state);
    tokio::spawn(async move {
        match admit(&background, bytes).await {
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
        hash: hash.0,
    }
    .broadcast())
}

pub(super) async fn broadcast_tx_commit(
    state: &RpcState,
    tx: TxText,
) -> RpcResult<BroadcastCommitResult> {
    // Subscribe before admitting, so a block that commits the tx at once is still seen.
    let mut events = state.ctx.events.subscribe();
    let check = match tx_bytes(tx) {
        Ok(bytes) => admit(state, bytes).await?,
        Err(malformed) => malformed,
    };
    let reply = |tx_result: ExecTxResult, height: u64| BroadcastCommitResult {
        check_tx: check.check_tx(),
        tx_result,
        hash: Hash::some(check.hash),
        height: Int(height),
    };
    if check.code != 0 {
        return Ok(reply(ExecTxResult::default(), 0));
    }
    let hash = TxHash(check.hash);
    let timeout_ms = state.ctx.config.rpc.commit_timeout_ms;
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    match wait_for_commit(state, &mut events, hash, deadline).await? {
        Some((height, code)) => Ok(reply(convert::exec_result(code), height.0)),
        None => Err(ErrorObjectOwned::owned(
            INTERNAL_ERROR_CODE,
            COMMIT_TIMEOUT_MESSAGE,
            Some(format!(
                "timed out waiting for tx {} to be included in a block ({timeout_ms} ms)",
                hex::encode_upper(hash.0)
            )),
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
            Ok(Ok(_)) => {}
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
