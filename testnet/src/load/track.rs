//! Commit tracking: one task follows `NewBlock` events over one node's WebSocket and hands
//! each block's txs to the ledger, which times the ones we sent.
//!
//! Heights are processed exactly once and in order. The tracker remembers the last height it
//! processed; an event that skips heights (a lagged subscription) has the gap read with
//! `block` and `block_results` first, and so does a switch to another node. It switches when
//! the subscription ends, when `health` over the socket goes unanswered for
//! [`HEALTH_TIMEOUT`] (a killed or paused node), or when it has heard no block for
//! [`QUIET_BEFORE_LAG_CHECK`] while another node is [`LAG_HEIGHTS`] ahead (a partitioned
//! node).
//!
//! A block from a notification is committed when the notification arrives. A block read back
//! is committed at its header's `time_ms` (the proposer's wall clock when it built the block,
//! mapped onto the run's clock; every node runs on this machine, so on this machine's clock):
//! earlier than the real commit by the block's voting, tens of ms on loopback, where the time
//! it was read back would add the seconds the switch took.

use std::time::{Duration, Instant};

use futures::future::join_all;
use jsonrpsee::core::client::{ClientT, SubscriptionClientT};
use jsonrpsee::core::params::{ArrayParams, ObjectParams};
use jsonrpsee::ws_client::{WsClient, WsClientBuilder};
use serde_json::Value;
use std::sync::Arc;
use tokio::sync::{oneshot, watch};

use super::ledger::Ledger;
use crate::client::NodeClient;
use crate::manifest::Manifest;

/// Connecting and subscribing to a node's WebSocket, at most.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the followed node is asked for `health`.
pub const HEALTH_EVERY: Duration = Duration::from_secs(1);
/// A `health` (or any request) without an answer in this time means the node is gone.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
/// Without a block for this long, the other nodes' heights are checked.
pub const QUIET_BEFORE_LAG_CHECK: Duration = Duration::from_secs(3);
/// Another node this many heights ahead makes the tracker switch to it.
pub const LAG_HEIGHTS: u64 = 2;
/// Most heights read back in one catch-up; older ones are counted as missed.
pub const BACKFILL_HEIGHTS_MAX: u64 = 10_000;
/// Largest notification or response.
const MESSAGE_BYTES_MAX: u32 = 64 << 20;

/// Why the tracker leaves a node, and where it goes next.
struct Switch {
    to: Option<usize>,
    problem: String,
}

impl Switch {
    fn next(problem: impl Into<String>) -> Switch {
        Switch {
            to: None,
            problem: problem.into(),
        }
    }
}

pub struct Tracker {
    urls: Vec<String>,
    clients: Vec<NodeClient>,
    ledger: Arc<Ledger>,
    last_height: Option<u64>,
    /// Heights older than a catch-up could reach.
    pub missed_heights: u64,
    /// The last reason for a switch, for the report on a failed start.
    pub last_problem: Option<String>,
}

impl Tracker {
    pub fn new(manifest: &Manifest, clients: Vec<NodeClient>, ledger: Arc<Ledger>) -> Tracker {
        Tracker {
            urls: manifest.nodes.iter().map(|n| n.ws_url()).collect(),
            clients,
            ledger,
            last_height: None,
            missed_heights: 0,
            last_problem: None,
        }
    }

    /// Follows nodes until `done` turns true (or its sender goes). `ready` fires once the
    /// first subscription is live and the starting height known.
    pub async fn run(
        mut self,
        ready: oneshot::Sender<()>,
        mut done: watch::Receiver<bool>,
    ) -> Tracker {
        let n = self.urls.len();
        let mut ready = Some(ready);
        let mut node = 0;
        let mut failures = 0;
        while !*done.borrow() {
            match self.follow(node, &mut ready, &mut done).await {
                Ok(()) => break,
                Err(switch) => {
                    self.last_problem =
                        Some(format!("{}: {}", self.clients[node].name, switch.problem));
                    node = switch.to.unwrap_or((node + 1) % n);
                    failures += 1;
                    // A full round of failures: wait a little before the next round.
                    if failures % n == 0 {
                        let pause = tokio::time::sleep(Duration::from_millis(500));
                        tokio::select! {
                            _ = pause => {}
                            _ = done.changed() => {}
                        }
                    }
                }
            }
        }
        self
    }

    async fn follow(
        &mut self,
        node: usize,
        ready: &mut Option<oneshot::Sender<()>>,
        done: &mut watch::Receiver<bool>,
    ) -> Result<(), Switch> {
        let ws = WsClientBuilder::default()
            .request_timeout(HEALTH_TIMEOUT)
            .connection_timeout(CONNECT_TIMEOUT)
            .max_request_size(MESSAGE_BYTES_MAX)
            .max_response_size(MESSAGE_BYTES_MAX)
            .build(&self.urls[node])
            .await
            .map_err(|e| Switch::next(format!("WebSocket: {e}")))?;
        let mut params = ObjectParams::new();
        params
            .insert("query", "tm.event='NewBlock'")
            .map_err(|e| Switch::next(e.to_string()))?;
        let mut blocks = ws
            .subscribe::<Value, _>("subscribe", params, "unsubscribe")
            .await
            .map_err(|e| Switch::next(format!("subscribe: {e}")))?;
        let height = self.clients[node]
            .height()
            .await
            .map_err(|e| Switch::next(e.to_string()))?;
        match self.last_height {
            None => {
                self.last_height = Some(height);
                if let Some(ready) = ready.take() {
                    let _ = ready.send(());
                }
            }
            Some(last) if height > last => self.backfill(node, last + 1, height).await?,
            Some(_) => {}
        }
        let mut health = tokio::time::interval(HEALTH_EVERY);
        let mut last_block = Instant::now();
        loop {
            tokio::select! {
                changed = done.changed() => {
                    if changed.is_err() || *done.borrow() {
                        return Ok(());
                    }
                }
                event = blocks.next() => match event {
                    Some(Ok(event)) => {
                        if self.on_event(node, &event).await? {
                            last_block = Instant::now();
                        }
                    }
                    // A notification that is not JSON: skip it; a gap is read back later.
                    Some(Err(_)) => {}
                    None => return Err(Switch::next("the subscription ended")),
                },
                _ = health.tick() => self.check(node, &ws, last_block).await?,
            }
        }
    }

    /// The node answers `health`; when no block came for a while, no other node is ahead.
    async fn check(&self, node: usize, ws: &WsClient, last_block: Instant) -> Result<(), Switch> {
        ws.request::<Value, _>("health", ArrayParams::new())
            .await
            .map_err(|e| Switch::next(format!("health: {e}")))?;
        if last_block.elapsed() < QUIET_BEFORE_LAG_CHECK {
            return Ok(());
        }
        let last = self.last_height.unwrap_or(0);
        let others = (0..self.clients.len()).filter(|&i| i != node);
        let heights = join_all(others.map(|i| async move {
            let height = tokio::time::timeout(HEALTH_TIMEOUT, self.clients[i].height()).await;
            (i, height.ok().and_then(Result::ok).unwrap_or(0))
        }))
        .await;
        match heights.into_iter().max_by_key(|&(_, height)| height) {
            Some((ahead, height)) if height >= last + LAG_HEIGHTS => Err(Switch {
                to: Some(ahead),
                problem: format!(
                    "no block for {:?} at height {last}, {} is at {height}",
                    last_block.elapsed(),
                    self.clients[ahead].name
                ),
            }),
            _ => Ok(()),
        }
    }

    /// One `NewBlock` notification; true when it was a new height.
    async fn on_event(&mut self, node: usize, event: &Value) -> Result<bool, Switch> {
        let now_us = self.ledger.now_us();
        let Some(height) = event["height"].as_u64() else {
            return Ok(false);
        };
        let last = self.last_height.unwrap_or(height.saturating_sub(1));
        if height <= last {
            return Ok(false);
        }
        if height > last + 1 {
            self.backfill(node, last + 1, height - 1).await?;
        }
        let txs: Vec<([u8; 32], u64)> = event["txs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|tx| {
                let hash = parse_hash(tx["hash"].as_str()?)?;
                Some((hash, tx["code"].as_u64().unwrap_or(0)))
            })
            .collect();
        self.ledger.committed(height, &txs, now_us);
        self.last_height = Some(height);
        Ok(true)
    }

    /// Reads heights `from..=to` from `node` and records their txs as committed at their
    /// block's header time.
    async fn backfill(&mut self, node: usize, from: u64, to: u64) -> Result<(), Switch> {
        let mut from = from;
        if to + 1 - from > BACKFILL_HEIGHTS_MAX {
            let skipped = to + 1 - BACKFILL_HEIGHTS_MAX - from;
            self.missed_heights += skipped;
            from += skipped;
        }
        for height in from..=to {
            let (time_ms, txs) = read_block(&self.clients[node], height)
                .await
                .map_err(|e| Switch::next(format!("reading back height {height}: {e}")))?;
            let at_us = self.ledger.us_at_wall_ms(time_ms);
            self.ledger.committed(height, &txs, at_us);
            self.last_height = Some(height);
        }
        Ok(())
    }
}

/// A committed block's header time and its txs' (hash, result code), from `block` and
/// `block_results`.
async fn read_block(
    client: &NodeClient,
    height: u64,
) -> Result<(u64, Vec<([u8; 32], u64)>), String> {
    let params = || {
        let mut params = ObjectParams::new();
        params
            .insert("height", height)
            .map(|()| params)
            .map_err(|e| e.to_string())
    };
    let block = client
        .call("block", params()?)
        .await
        .map_err(|e| e.to_string())?;
    let results = client
        .call("block_results", params()?)
        .await
        .map_err(|e| e.to_string())?;
    let time_ms = block["block"]["header"]["time_ms"]
        .as_u64()
        .ok_or("the block has no header.time_ms")?;
    let txs = block["block"]["data"]["txs"]
        .as_array()
        .ok_or("the block has no data.txs")?;
    let codes = results["txs_results"].as_array();
    let txs = txs
        .iter()
        .enumerate()
        .map(|(i, tx)| {
            let bytes = tx
                .as_str()
                .and_then(|tx| hex::decode(tx).ok())
                .ok_or_else(|| format!("tx {i} is not hex"))?;
            let code = codes
                .and_then(|codes| codes.get(i))
                .and_then(|result| result["code"].as_u64())
                .unwrap_or(0);
            Ok((*blake3::hash(&bytes).as_bytes(), code))
        })
        .collect::<Result<_, String>>()?;
    Ok((time_ms, txs))
}

fn parse_hash(text: &str) -> Option<[u8; 32]> {
    let mut hash = [0u8; 32];
    hex::decode_to_slice(text, &mut hash).ok()?;
    Some(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_parse_only_as_64_hex_digits() {
        assert_eq!(parse_hash(&"ab".repeat(32)), Some([0xab; 32]));
        assert_eq!(parse_hash(&"AB".repeat(32)), Some([0xab; 32]));
        assert_eq!(parse_hash("abcd"), None);
        assert_eq!(parse_hash(&"zz".repeat(32)), None);
    }
}
