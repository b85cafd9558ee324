//! Sending: every node's RPC client, which node takes which account's txs, and batches of
//! `broadcast_tx_sync` in their own tasks.
//!
//! Account `a`'s txs go to node `a % n`. A node is skipped while it is marked down (after a
//! batch to it failed at the transport level, for [`NODE_DOWN`]) or while it has
//! [`NODE_BATCHES_IN_FLIGHT_MAX`] batches unanswered (a paused or overloaded node); its
//! accounts go to the next usable node. Rebroadcasts start one node further per try.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use jsonrpsee::core::client::ClientT;
use jsonrpsee::core::params::{BatchRequestBuilder, ObjectParams};
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use parking_lot::Mutex;
use tokio::sync::Semaphore;
use weft_node::config::{Config, Home};
use weft_node::rpc::api::TxText;
use weft_node::rpc::api::types::BroadcastResult;

use super::LoadError;
use super::ledger::{Answer, Attempt, Ledger};
use super::sign::SignedTx;
use crate::manifest::Manifest;

/// A batch without an answer in this time failed.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(2);
/// Connecting to a node's RPC port, at most.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a node whose batch failed is skipped before it is tried again.
pub const NODE_DOWN: Duration = Duration::from_secs(3);
/// Unanswered batches to one node before its accounts go elsewhere (under the node's
/// `rpc.max_connections`, 256 by default).
pub const NODE_BATCHES_IN_FLIGHT_MAX: usize = 64;
/// Unanswered batches in all; past this, txs are dropped rather than queued.
pub const BATCHES_IN_FLIGHT_MAX: usize = 1_024;
/// Most txs per batch; less when a node's `rpc.max_batch` is lower.
pub const BATCH_TXS_MAX: usize = 500;
/// Largest request and response bodies.
const BODY_BYTES_MAX: u32 = 16 << 20;

struct Node {
    name: String,
    client: HttpClient,
    down_until: Mutex<Option<Instant>>,
    in_flight: AtomicUsize,
}

/// Every node's client and health.
pub struct Nodes {
    nodes: Vec<Node>,
    /// Txs per batch.
    pub batch_max: usize,
    permits: Arc<Semaphore>,
}

/// Decrements a node's in-flight count when a send ends, however it ends.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

impl Nodes {
    pub fn new(manifest: &Manifest) -> Result<Nodes, LoadError> {
        if manifest.nodes.is_empty() {
            return Err(LoadError::Invalid("the manifest lists no nodes".into()));
        }
        let mut nodes = Vec::with_capacity(manifest.nodes.len());
        let mut batch_max = BATCH_TXS_MAX;
        for entry in &manifest.nodes {
            let client = HttpClientBuilder::default()
                .request_timeout(SEND_TIMEOUT)
                .connect_timeout(CONNECT_TIMEOUT)
                .max_request_size(BODY_BYTES_MAX)
                .max_response_size(BODY_BYTES_MAX)
                .build(entry.rpc_url())
                .map_err(|e| LoadError::Setup(format!("{} RPC client: {e}", entry.name)))?;
            // The node's own batch limit, when its config is readable here.
            if let Ok(config) = Config::load(&Home::new(&entry.home).config()) {
                if config.rpc.max_batch == 0 {
                    return Err(LoadError::Setup(format!(
                        "{} has JSON-RPC batches disabled (rpc.max_batch = 0)",
                        entry.name
                    )));
                }
                batch_max = batch_max.min(config.rpc.max_batch as usize);
            }
            nodes.push(Node {
                name: entry.name.clone(),
                client,
                down_until: Mutex::new(None),
                in_flight: AtomicUsize::new(0),
            });
        }
        Ok(Nodes {
            nodes,
            batch_max,
            permits: Arc::new(Semaphore::new(BATCHES_IN_FLIGHT_MAX)),
        })
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn name(&self, node: usize) -> &str {
        &self.nodes[node].name
    }

    pub fn client(&self, node: usize) -> &HttpClient {
        &self.nodes[node].client
    }

    fn usable(&self, node: usize, now: Instant) -> bool {
        let slot = &self.nodes[node];
        let up = slot.down_until.lock().is_none_or(|until| now >= until);
        up && slot.in_flight.load(Relaxed) < NODE_BATCHES_IN_FLIGHT_MAX
    }

    /// The first usable node from `home` on, cyclically.
    pub fn route(&self, home: usize, now: Instant) -> Option<usize> {
        let n = self.nodes.len();
        (0..n)
            .map(|k| (home + k) % n)
            .find(|&i| self.usable(i, now))
    }

    /// The next node after `failed` that is not marked down (a retry ignores the in-flight cap:
    /// it already holds its permit).
    fn next_up(&self, failed: usize) -> Option<usize> {
        let n = self.nodes.len();
        let now = Instant::now();
        (1..n).map(|k| (failed + k) % n).find(|&i| {
            self.nodes[i]
                .down_until
                .lock()
                .is_none_or(|until| now >= until)
        })
    }

    fn mark_down(&self, node: usize) {
        *self.nodes[node].down_until.lock() = Some(Instant::now() + NODE_DOWN);
    }

    /// One JSON-RPC batch of `broadcast_tx_sync` (a batch, not typed calls: one request per
    /// batch is what lets the load reach its rate); `Err` when the node gave no usable answer.
    pub async fn send(&self, node: usize, txs: &[SignedTx]) -> Result<Vec<Answer>, String> {
        let slot = &self.nodes[node];
        slot.in_flight.fetch_add(1, Relaxed);
        let _in_flight = InFlight(&slot.in_flight);
        let mut batch = BatchRequestBuilder::new();
        for tx in txs {
            let mut params = ObjectParams::new();
            params
                .insert("tx", TxText::from(tx.bytes.to_vec()))
                .map_err(|e| e.to_string())?;
            batch
                .insert("broadcast_tx_sync", params)
                .map_err(|e| e.to_string())?;
        }
        let responses = slot
            .client
            .batch_request::<BroadcastResult>(batch)
            .await
            .map_err(|e| e.to_string())?;
        let mut answers: Vec<Answer> = responses
            .into_iter()
            .map(|entry| match entry {
                Ok(result) => Answer::Code(result.code),
                Err(_) => Answer::Error,
            })
            .collect();
        answers.resize(txs.len(), Answer::Error);
        Ok(answers)
    }

    /// Sends `txs` to `node` in their own task, holding one of the global permits. A first
    /// send is registered in the ledger here; without a permit (or room in the ledger) the txs
    /// are dropped (see [`Ledger::drop_txs`]). A first send that fails at the transport level
    /// marks the node down and is retried once on the next node that is up.
    pub fn spawn_batch(
        self: &Arc<Self>,
        ledger: &Arc<Ledger>,
        node: usize,
        txs: Vec<SignedTx>,
        attempt: Attempt,
    ) {
        let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
            if attempt == Attempt::First {
                ledger.drop_txs(&txs);
            }
            return;
        };
        match attempt {
            Attempt::First if !ledger.register(&txs) => return,
            Attempt::First => {}
            Attempt::Rebroadcast => ledger.resending(&txs),
        }
        let (nodes, ledger) = (Arc::clone(self), Arc::clone(ledger));
        tokio::spawn(async move {
            let _permit = permit;
            let mut target = node;
            let mut tries_left = match attempt {
                Attempt::First => 2,
                Attempt::Rebroadcast => 1,
            };
            loop {
                tries_left -= 1;
                match nodes.send(target, &txs).await {
                    Ok(answers) => {
                        ledger.answered(&txs, &answers, attempt);
                        return;
                    }
                    Err(_) => {
                        nodes.mark_down(target);
                        if attempt == Attempt::First {
                            ledger.send_failed(txs.len());
                        }
                        match nodes.next_up(target) {
                            Some(next) if tries_left > 0 => target = next,
                            _ => return,
                        }
                    }
                }
            }
        });
    }

    /// Waits until no batch is in flight, or `within` passes.
    pub async fn settle(&self, within: Duration) {
        let all = BATCHES_IN_FLIGHT_MAX as u32;
        let _ = tokio::time::timeout(within, self.permits.acquire_many(all)).await;
    }

    /// Spreads `txs` over their routes and sends them in batches. A first send goes to the
    /// account's home node `account % n`; a rebroadcast's `tries` moves it on by that many.
    pub fn dispatch(
        self: &Arc<Self>,
        ledger: &Arc<Ledger>,
        txs: Vec<(SignedTx, u8)>,
        attempt: Attempt,
    ) {
        let n = self.nodes.len();
        let now = Instant::now();
        let routes: Vec<Option<usize>> = (0..n).map(|home| self.route(home, now)).collect();
        let mut groups: Vec<Vec<SignedTx>> = vec![Vec::new(); n];
        let mut unroutable = Vec::new();
        for (tx, tries) in txs {
            let home = (tx.account as usize + usize::from(tries)) % n;
            match routes[home] {
                Some(node) => groups[node].push(tx),
                None => unroutable.push(tx),
            }
        }
        if attempt == Attempt::First && !unroutable.is_empty() {
            ledger.drop_txs(&unroutable);
        }
        for (node, group) in groups.into_iter().enumerate() {
            let mut group = group;
            while !group.is_empty() {
                let rest = group.split_off(group.len().min(self.batch_max));
                self.spawn_batch(ledger, node, group, attempt);
                group = rest;
            }
        }
    }
}
