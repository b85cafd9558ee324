//! Group admission: txs that arrive over RPC reach the mempool in batches.
//!
//! Every `broadcast_tx_*` call hands its bytes to one [`Admitter`] task. The task takes what
//! has queued up since its last batch (at most [`ADMIT_BATCH_MAX`]), runs one
//! [`Mempool::check_batch`] over it (one batched signature check, one pass of the locks),
//! answers each caller, and gossips the admitted txs as one batch. A lone tx is checked at
//! once; under load, batches grow by themselves while the previous one is checked, as in a
//! database's group commit. A batch of one signature costs about twice what each signature
//! of a batch of 64 does, so under load this halves the node's admission cost.
//!
//! Callers' txs are checked in arrival order, so one client's nonce sequence is admitted in
//! order, and the gossiped batches keep that order too.

use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use tokio::sync::{mpsc, oneshot};
use weft_execution::{Transaction, TxHash};
use weft_gossip::GossipHandle;

use crate::chain::Chain;
use crate::mempool::{AdmitError, Mempool};
use crate::metrics::NodeMetrics;

/// Most txs checked in one batch.
pub const ADMIT_BATCH_MAX: usize = 512;
/// Txs waiting for the admitter; callers past this wait for room.
pub const ADMIT_QUEUE_MAX: usize = 8_192;

/// The mempool's answer for one tx.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    pub verdict: Result<TxHash, AdmitError>,
    /// The tx's hash when its bytes decode, admitted or not.
    pub hash: Option<TxHash>,
    /// How many txs were checked in its batch, itself included.
    pub batch: usize,
}

struct Request {
    bytes: Vec<u8>,
    reply: oneshot::Sender<Admission>,
}

/// The admitter stopped (the node is shutting down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the admission task has stopped")]
pub struct AdmitterClosed;

/// A handle on the admission task; cheap to clone.
#[derive(Clone)]
pub struct Admitter {
    queue: mpsc::Sender<Request>,
}

impl Admitter {
    /// Starts the task on the current runtime. It ends when every handle is dropped.
    pub fn spawn(
        chain: Arc<RwLock<Chain>>,
        mempool: Arc<Mutex<Mempool>>,
        gossip: GossipHandle,
        metrics: Arc<NodeMetrics>,
    ) -> Admitter {
        let (queue, requests) = mpsc::channel(ADMIT_QUEUE_MAX);
        tokio::spawn(run(requests, chain, mempool, gossip, metrics));
        Admitter { queue }
    }

    /// Checks `bytes` against the mempool (in a batch with whatever else is waiting) and, when
    /// admitted, gossips them.
    pub async fn admit(&self, bytes: Vec<u8>) -> Result<Admission, AdmitterClosed> {
        let answer = self.submit(bytes).await?;
        answer.await.map_err(|_| AdmitterClosed)
    }

    /// Queues `bytes` (waiting for room) and returns where the answer will come. Txs are
    /// checked in the order they are queued.
    pub async fn submit(
        &self,
        bytes: Vec<u8>,
    ) -> Result<oneshot::Receiver<Admission>, AdmitterClosed> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Request { bytes, reply })
            .await
            .map_err(|_| AdmitterClosed)?;
        Ok(answer)
    }
}

async fn run(
    mut requests: mpsc::Receiver<Request>,
    chain: Arc<RwLock<Chain>>,
    mempool: Arc<Mutex<Mempool>>,
    gossip: GossipHandle,
    metrics: Arc<NodeMetrics>,
) {
    let mut batch = Vec::with_capacity(ADMIT_BATCH_MAX);
    while requests.recv_many(&mut batch, ADMIT_BATCH_MAX).await > 0 {
        let taken = std::mem::replace(&mut batch, Vec::with_capacity(ADMIT_BATCH_MAX));
        let (chain, mempool, metrics) = (
            Arc::clone(&chain),
            Arc::clone(&mempool),
            Arc::clone(&metrics),
        );
        let checked = tokio::task::spawn_blocking(move || check(taken, &chain, &mempool, &metrics));
        let Ok((answers, admitted)) = checked.await else {
            // The check panicked: its callers' reply channels are dropped, so each gets
            // `AdmitterClosed`. The mempool asserts its invariants, so carrying on is unsafe.
            tracing::error!("mempool admission panicked; RPC admission stops");
            return;
        };
        for (reply, admission) in answers {
            // A caller that gave up (timed out) no longer listens; its tx stands.
            let _ = reply.send(admission);
        }
        if !admitted.is_empty()
            && let Err(e) = gossip.publish_txs(admitted).await
        {
            tracing::warn!(error = %e, "admitted txs were not gossiped");
        }
    }
}

type Answers = Vec<(oneshot::Sender<Admission>, Admission)>;

/// One batch under the chain's read lock and the mempool's lock, in the driver's order.
fn check(
    requests: Vec<Request>,
    chain: &RwLock<Chain>,
    mempool: &Mutex<Mempool>,
    metrics: &NodeMetrics,
) -> (Answers, Vec<Vec<u8>>) {
    let raws: Vec<&[u8]> = requests.iter().map(|r| r.bytes.as_slice()).collect();
    let verdicts = {
        let chain = chain.read();
        let mut mempool = mempool.lock();
        let verdicts = mempool.check_batch(&raws, chain.state());
        metrics.mempool_size.set(mempool.len() as i64);
        verdicts
    };
    assert_eq!(verdicts.len(), requests.len(), "one verdict per tx");
    let batch = requests.len();
    let mut answers = Vec::with_capacity(batch);
    let mut admitted = Vec::new();
    for (request, verdict) in requests.into_iter().zip(verdicts) {
        let hash = match &verdict {
            Ok(hash) => Some(*hash),
            Err(_) => Transaction::decode(&request.bytes).ok().map(|tx| tx.hash()),
        };
        if verdict.is_ok() {
            admitted.push(request.bytes);
        }
        answers.push((
            request.reply,
            Admission {
                verdict,
                hash,
                batch,
            },
        ));
    }
    (answers, admitted)
}
