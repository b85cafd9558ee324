//! Commit tracking: one task follows `NewBlock` events over one node's WebSocket and hands
//! each block's txs to the ledger, which times the ones we sent.
//!
//! Heights are processed exactly once and in order. The tracker remembers the last height it
//! processed; an event that skips heights (a lagged subscription) has the gap read with
//! `block` and `block_results` first, and so does a switch to another node. It switches when
//! the subscription ends, when the node's `health` goes unanswered for [`HEALTH_TIMEOUT`] (a
//! killed or paused node), or when it has heard no block for
//! [`QUIET_BEFORE_LAG_CHECK`] while another node is [`LAG_HEIGHTS`] ahead (a partitioned
//! node).
//!
//! A block from a notification is committed when the notification arrives. A block read back
//! is committed at its header's `time` (the proposer's wall clock when it built the block,
//! mapped onto the run's clock; every node runs on this machine, so on this machine's clock):
//! earlier than the real commit by the block's voting, tens of ms on loopback, where the time
//! it was read back would add the seconds the switch took.

use std::time::{Duration, Instant};

use futures::future::join_all;
use std::sync::Arc;
use tokio::sync::{oneshot, watch};
use weft_node::rpc::api::encoding::Base64;
use weft_node::rpc::api::types::NewBlockEvent;
use weft_node::rpc::{EventStream, EventStreamError};

use super::ledger::Ledger;
use crate::client::{NodeClient, tx_hash};
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
/// The events followed.
const NEW_BLOCK_QUERY: &str = "tm.event='NewBlock'";

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
    /// Each node's RPC address, `host:port`.
    rpc_addresses: Vec<String>,
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
            rpc_addresses: manifest.nodes.iter().map(|n| n.rpc_address()).collect(),
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
        let n = self.rpc_addresses.len();
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
        let subscribe = EventStream::subscribe(&self.rpc_addresses[node], NEW_BLOCK_QUERY);
        let mut blocks = tokio::time::timeout(CONNECT_TIMEOUT, subscribe)
            .await
            .map_err(|_| Switch::next(format!("subscribing: no answer in {CONNECT_TIMEOUT:?}")))?
            .map_err(|e| Switch::next(format!("subscribing: {e}")))?;
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
                event = blocks.next_block() => match event {
                    Ok(event) => {
                        if self.on_event(node, &event).await? {
                            last_block = Instant::now();
                        }
                    }
                    // An event that does not decode: skip it; a gap is read back later.
                    Err(EventStreamError::Malformed(_)) => {}
                    Err(e) => return Err(Switch::next(format!("the subscription ended: {e}"))),
                },
                _ = health.tick() => self.check(node, last_block).await?,
            }
        }
    }

    /// The node answers `health`; when no block came for a while, no other node is ahead.
    async fn check(&self, node: usize, last_block: Instant) -> Result<(), Switch> {
        tokio::time::timeout(HEALTH_TIMEOUT, self.clients[node].health())
            .await
            .map_err(|_| Switch::next(format!("health: no answer in {HEALTH_TIMEOUT:?}")))?
            .map_err(|e| Switch::next(e.to_string()))?;
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

    /// One `NewBlock` event; true when it was a new height.
    async fn on_event(&mut self, node: usize, event: &NewBlockEvent) -> Result<bool, Switch> {
        let now_us = self.ledger.now_us();
        let height = event.block.header.height.0;
        let last = self.last_height.unwrap_or(height.saturating_sub(1));
        if height <= last {
            return Ok(false);
        }
        if height > last + 1 {
            self.backfill(node, last + 1, height - 1).await?;
        }
        let codes = event
            .result_finalize_block
            .tx_results
            .iter()
            .map(|r| r.code);
        let txs = block_txs(&event.block.data.txs, codes);
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

/// A committed block's header time (unix ms) and its txs' (hash, result code), from `block`
/// and `block_results`.
async fn read_block(
    client: &NodeClient,
    height: u64,
) -> Result<(u64, Vec<([u8; 32], u32)>), String> {
    let (_, block) = client.full_block(height).await.map_err(|e| e.to_string())?;
    let results = client
        .block_results(height)
        .await
        .map_err(|e| e.to_string())?;
    let codes = results.txs_results.iter().map(|r| r.code);
    Ok((
        block.header.time.unix_ms(),
        block_txs(&block.data.txs, codes),
    ))
}

/// Each of a block's txs with its result code, in block order; a tx without a result counts
/// as code 0.
fn block_txs(txs: &[Base64], codes: impl Iterator<Item = u32>) -> Vec<([u8; 32], u32)> {
    let codes = codes.chain(std::iter::repeat(0));
    txs.iter()
        .zip(codes)
        .map(|(tx, code)| (tx_hash(&tx.0), code))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_txs_pair_hashes_with_codes_and_default_a_missing_code_to_0() {
        let txs = [Base64(b"one".to_vec()), Base64(b"two".to_vec())];
        assert_eq!(
            block_txs(&txs, [5].into_iter()),
            vec![(tx_hash(b"one"), 5), (tx_hash(b"two"), 0)]
        );
        assert_eq!(block_txs(&[], [1, 2].into_iter()), Vec::new());
    }
}
