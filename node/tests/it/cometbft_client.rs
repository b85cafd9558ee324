//! CometBFT v0.38 compatibility, judged by CometBFT's own ecosystem: tendermint-rs's RPC client
//! (`tendermint-rpc`, `CompatMode::V0_38`) against a real `weft` node under load.
//!
//! - `tendermint_rpc_decodes_every_method`: every `Client` method Weft serves, over HTTP, decodes
//!   and agrees with the others (a block's hash finds that block, a tx's height holds it, …);
//!   errors arrive as CometBFT's; over the WebSocket, `NewBlock` and `Tx` events arrive in
//!   order and unsubscribing and closing are clean.
//! - `uri_routes_and_subscription_limit`: what tendermint-rs does not send: CometBFT's URI GETs
//!   (`/status`, `/block?height=1`, …), the route list at `GET /`, their errors, and the
//!   WebSocket's 16-subscription limit.
//!
//! Checks that fail are gathered, not raised one by one, so one run names every call whose
//! answer does not decode or does not make sense.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tendermint::Hash;
use tendermint::block::{self, CommitSig, Height};
use tendermint_rpc::client::CompatMode;
use tendermint_rpc::endpoint::broadcast::tx_commit;
use tendermint_rpc::event::EventData;
use tendermint_rpc::query::{EventType, Query};
use tendermint_rpc::{Client, HttpClient, Order, Paging, SubscriptionClient, WebSocketClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use weft_execution::{Address, ChainId, Payload, Transaction};
use weft_genesis::SecretKey;

use crate::support::{DEADLINE, TestNode, account_keys};

const CHAIN: &str = "weft-cometbft";
/// The pause between two rounds of the background load.
const LOAD_PAUSE: Duration = Duration::from_millis(20);
/// How often a condition is polled while the test waits for it.
const POLL: Duration = Duration::from_millis(50);
/// Longest one RPC call (or one WebSocket message) may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How many `status` and `consensus_state` pairs are compared.
const CONSENSUS_SAMPLES: usize = 50;
/// Weft's subscriptions per WebSocket connection (`rpc::SUBSCRIPTIONS_PER_CONNECTION_MAX`).
const SUBSCRIPTIONS_MAX: usize = 16;

/// Failed checks, gathered so that one run reports them all.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    /// The value, or `None` with the call's error recorded.
    fn ok<T, E: std::fmt::Display>(&mut self, call: &str, result: Result<T, E>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.0.push(format!("{call}: {error}"));
                None
            }
        }
    }

    fn check(&mut self, holds: bool, what: impl FnOnce() -> String) {
        if !holds {
            self.0.push(what());
        }
    }

    fn assert_none(&self) {
        assert!(
            self.0.is_empty(),
            "{} failed checks:\n- {}",
            self.0.len(),
            self.0.join("\n- ")
        );
    }
}

fn sign(from: &SecretKey, nonce: u64, to: [u8; 32], amount: u64) -> Transaction {
    Transaction::sign(
        ChainId::new(CHAIN).unwrap(),
        &from.signing_key(),
        nonce,
        Payload::Transfer {
            to: Address(to),
            amount,
        },
    )
}

fn height(h: u64) -> Height {
    Height::try_from(h).unwrap()
}

fn http_client(node: &TestNode) -> HttpClient {
    let url = format!("http://127.0.0.1:{}", node.rpc_port);
    HttpClient::builder(url.parse().unwrap())
        .compat_mode(CompatMode::V0_38)
        .timeout(CALL_TIMEOUT)
        .build()
        .unwrap()
}

/// Polls `status` until the node's latest height is at least `target`.
async fn wait_height(client: &HttpClient, node: &TestNode, target: u64) -> u64 {
    let until = Instant::now() + DEADLINE;
    loop {
        if let Ok(status) = client.status().await {
            let latest = status.sync_info.latest_block_height.value();
            if latest >= target {
                return latest;
            }
        }
        assert!(
            Instant::now() < until,
            "no height {target} (or status does not decode); log:\n{}",
            node.log_tail()
        );
        tokio::time::sleep(POLL).await;
    }
}

/// The background load: signed transfers through tendermint-rs's `broadcast_tx_sync` (one
/// sender) and `broadcast_tx_async` (another, one tx in flight at a time, so its nonces never
/// arrive out of order). Admitted txs' hashes go into `submitted`.
struct Load {
    client: HttpClient,
    sync_from: SecretKey,
    async_from: SecretKey,
    to: [u8; 32],
    submitted: Arc<Mutex<HashSet<[u8; 32]>>>,
    stop: Arc<AtomicBool>,
}

/// What the load managed: txs admitted by each broadcast.
#[derive(Debug)]
struct LoadDone {
    sync_admitted: u64,
    async_admitted: u64,
}

impl Load {
    async fn run(self) -> Result<LoadDone, String> {
        let (mut sync_nonce, mut async_nonce) = (0, 0);
        let mut done = LoadDone {
            sync_admitted: 0,
            async_admitted: 0,
        };
        let mut async_pending: Option<Hash> = None;
        while !self.stop.load(Ordering::Relaxed) {
            let tx = sign(&self.sync_from, sync_nonce, self.to, 1);
            let answer = self
                .client
                .broadcast_tx_sync(tx.encode())
                .await
                .map_err(|e| format!("broadcast_tx_sync: {e}"))?;
            if answer.hash.as_bytes() != tx.hash().0 {
                return Err(format!(
                    "broadcast_tx_sync hash {} is not the tx's",
                    answer.hash
                ));
            }
            // A refusal (a full mempool) keeps the nonce for the next round.
            if answer.code.is_ok() {
                self.submitted.lock().unwrap().insert(tx.hash().0);
                sync_nonce += 1;
                done.sync_admitted += 1;
            }
            let previous_committed = match async_pending {
                None => true,
                Some(hash) => self.client.tx(hash, false).await.is_ok(),
            };
            if previous_committed {
                let tx = sign(&self.async_from, async_nonce, self.to, 1);
                let answer = self
                    .client
                    .broadcast_tx_async(tx.encode())
                    .await
                    .map_err(|e| format!("broadcast_tx_async: {e}"))?;
                if answer.code.is_ok() {
                    self.submitted.lock().unwrap().insert(tx.hash().0);
                    async_pending = Some(answer.hash);
                    async_nonce += 1;
                    done.async_admitted += 1;
                }
            }
            tokio::time::sleep(LOAD_PAUSE).await;
        }
        Ok(done)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tendermint_rpc_decodes_every_method() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::init(&dir.path().join("home"), CHAIN, "tm");
    node.configure(|config| config.consensus.timeout_commit_ms = Some(50));
    node.start();
    let client = http_client(&node);
    wait_height(&client, &node, 1).await;

    let keys = account_keys(&node.home);
    assert!(keys.len() >= 4, "init funds four accounts");
    let submitted = Arc::new(Mutex::new(HashSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(
        Load {
            client: client.clone(),
            sync_from: keys[0].clone(),
            async_from: keys[2].clone(),
            to: keys[3].public(),
            submitted: submitted.clone(),
            stop: stop.clone(),
        }
        .run(),
    );

    let mut problems = Problems::default();
    // bob's one tx, committed: the anchor of the reads below.
    let committed = sign(&keys[1], 0, keys[3].public(), 7);
    let answer = client
        .broadcast_tx_commit(committed.encode())
        .await
        .expect("broadcast_tx_commit decodes");
    commit_answer_makes_sense(&mut problems, &answer, &committed);
    submitted.lock().unwrap().insert(committed.hash().0);
    let tx_height = answer.height.value();
    assert!(tx_height > 0, "the tx committed: {answer:?}");
    wait_height(&client, &node, (tx_height + 2).max(6)).await;

    node_reads(&mut problems, &client, &keys[1], CHAIN).await;
    block_reads(&mut problems, &client, tx_height, &committed).await;
    tx_reads(&mut problems, &client, tx_height, &committed).await;
    error_answers(&mut problems, &client).await;
    websocket(&mut problems, &node, &submitted).await;

    stop.store(true, Ordering::Relaxed);
    let done = load.await.unwrap();
    if let Some(done) = problems.ok("the load", done) {
        problems.check(done.sync_admitted > 0 && done.async_admitted > 0, || {
            format!("the load admitted too little: {done:?}")
        });
    }
    assert!(node.stop(), "unclean stop; log:\n{}", node.log_tail());
    problems.assert_none();
}

fn commit_answer_makes_sense(
    problems: &mut Problems,
    answer: &tx_commit::Response,
    tx: &Transaction,
) {
    problems.check(answer.check_tx.code.is_ok(), || {
        format!("broadcast_tx_commit check_tx: {:?}", answer.check_tx)
    });
    problems.check(answer.tx_result.code.is_ok(), || {
        format!("broadcast_tx_commit tx_result: {:?}", answer.tx_result)
    });
    problems.check(answer.hash.as_bytes() == tx.hash().0, || {
        format!("broadcast_tx_commit hash {} is not the tx's", answer.hash)
    });
}

/// The methods about the node rather than one block: health, status, abci_*, consensus,
/// validators, genesis, net_info.
async fn node_reads(problems: &mut Problems, client: &HttpClient, bob: &SecretKey, chain: &str) {
    problems.ok("health", client.health().await);
    let status = problems.ok("status", client.status().await);
    if let Some(status) = &status {
        problems.check(status.node_info.network.as_str() == chain, || {
            format!("status network {}", status.node_info.network)
        });
        problems.check(!status.sync_info.catching_up, || {
            "status: catching up".into()
        });
        problems.check(status.validator_info.power.value() > 0, || {
            format!("status validator_info {:?}", status.validator_info)
        });
    }
    if let Some(info) = problems.ok("abci_info", client.abci_info().await) {
        problems.check(info.last_block_height.value() > 0, || {
            format!("abci_info {info:?}")
        });
    }
    abci_queries(problems, client, bob).await;

    let latest = status
        .as_ref()
        .map_or(1, |s| s.sync_info.latest_block_height.value());
    consensus_state_reads(problems, client).await;
    for (name, params) in [
        (
            "consensus_params",
            client.consensus_params(height(latest)).await,
        ),
        (
            "latest_consensus_params",
            client.latest_consensus_params().await,
        ),
    ] {
        if let Some(params) = problems.ok(name, params) {
            let types = &params.consensus_params.validator.pub_key_types;
            problems.check(
                params.block_height.value() >= latest
                    && types.contains(&tendermint::public_key::Algorithm::Ed25519),
                || format!("{name} {params:?}"),
            );
        }
    }
    validator_reads(problems, client, latest, status.as_ref()).await;
    genesis_reads(problems, client, chain).await;
    if let Some(net) = problems.ok("net_info", client.net_info().await) {
        problems.check(
            net.listening && net.n_peers == net.peers.len() as u64,
            || format!("net_info {net:?}"),
        );
    }
}

/// `consensus_state`, read right after `status` again and again while blocks commit: its
/// height is the one being decided, never below the latest committed (CometBFT: one above).
async fn consensus_state_reads(problems: &mut Problems, client: &HttpClient) {
    for _ in 0..CONSENSUS_SAMPLES {
        let (Some(status), Some(state)) = (
            problems.ok("status", client.status().await),
            problems.ok("consensus_state", client.consensus_state().await),
        ) else {
            return;
        };
        let latest = status.sync_info.latest_block_height.value();
        let deciding = state.round_state.height_round_step.height.value();
        if deciding < latest {
            problems.0.push(format!(
                "consensus_state at {deciding}, after status's latest block {latest}: {:?}",
                state.round_state
            ));
            return;
        }
    }
}

async fn abci_queries(problems: &mut Problems, client: &HttpClient, bob: &SecretKey) {
    let account = client
        .abci_query(Some("/account".into()), bob.public().to_vec(), None, false)
        .await;
    if let Some(account) = problems.ok("abci_query /account", account) {
        let value: Value = serde_json::from_slice(&account.value).unwrap_or(Value::Null);
        // bob sent one tx (broadcast_tx_commit) and received none.
        problems.check(
            account.code.is_ok()
                && number(&value["nonce"]) == Some(1)
                && number(&value["balance"]).is_some(),
            || format!("abci_query /account: {account:?}, value {value}"),
        );
    }
    let unknown = client
        .abci_query(Some("/nosuch".into()), b"x".to_vec(), None, false)
        .await;
    if let Some(unknown) = problems.ok("abci_query /nosuch", unknown) {
        problems.check(unknown.code.is_err(), || {
            format!("abci_query of an unknown path answered code 0: {unknown:?}")
        });
    }
}

async fn validator_reads(
    problems: &mut Problems,
    client: &HttpClient,
    latest: u64,
    status: Option<&tendermint_rpc::endpoint::status::Response>,
) {
    for (name, paging) in [("Default", Paging::Default), ("All", Paging::All)] {
        // `Paging::All` pages until it has `total` validators: a wrong total would loop forever.
        let call = tokio::time::timeout(CALL_TIMEOUT, client.validators(height(latest), paging));
        let answer = match call.await {
            Ok(answer) => answer,
            Err(_) => {
                problems
                    .0
                    .push(format!("validators Paging::{name} never ended"));
                continue;
            }
        };
        let Some(answer) = problems.ok(&format!("validators Paging::{name}"), answer) else {
            continue;
        };
        let ours = status.map(|s| s.validator_info.address);
        problems.check(
            answer.total == 1
                && answer.validators.len() == 1
                && answer.block_height.value() == latest
                && ours.is_none_or(|a| answer.validators[0].address == a),
            || format!("validators Paging::{name}: {answer:?} (status's validator {ours:?})"),
        );
    }
}

async fn genesis_reads(problems: &mut Problems, client: &HttpClient, chain: &str) {
    if let Some(genesis) = problems.ok("genesis", client.genesis::<Value>().await) {
        problems.check(
            genesis.chain_id.as_str() == chain && genesis.validators.len() == 1,
            || format!("genesis {genesis:?}"),
        );
    }
    if let Some(chunk) = problems.ok("genesis_chunked", client.genesis_chunked(0).await) {
        problems.check(
            chunk.chunk == 0 && chunk.total >= 1 && !chunk.data.is_empty(),
            || {
                format!(
                    "genesis_chunked 0: chunk {} of {}",
                    chunk.chunk, chunk.total
                )
            },
        );
        if chunk.total == 1 {
            let text: Value = serde_json::from_slice(&chunk.data).unwrap_or(Value::Null);
            problems.check(text["chain_id"] == chain, || {
                format!("genesis_chunked's one chunk is not the genesis: {text}")
            });
        }
    }
}

/// block, block_by_hash, header, header_by_hash, block_results, block_search, blockchain,
/// commit: each of the tx's block `tx_height`, and agreeing with each other.
async fn block_reads(
    problems: &mut Problems,
    client: &HttpClient,
    tx_height: u64,
    tx: &Transaction,
) {
    let Some(block) = problems.ok("block", client.block(height(tx_height)).await) else {
        return;
    };
    let id = block.block_id;
    problems.check(
        block.block.header.height.value() == tx_height
            && block.block.header.chain_id.as_str() == CHAIN
            && block.block.data.contains(&tx.encode()),
        || {
            format!(
                "block {tx_height} is not the tx's block: {:?}",
                block.block.header
            )
        },
    );
    if let Some(latest) = problems.ok("latest_block", client.latest_block().await) {
        let status = problems.ok("status", client.status().await);
        let latest_height = latest.block.header.height.value();
        problems.check(
            latest_height > tx_height
                && status.is_some_and(|s| s.sync_info.latest_block_height.value() >= latest_height),
            || format!("latest_block {latest_height} against the tx's {tx_height} and status"),
        );
    }
    if let Some(by_hash) = problems.ok("block_by_hash", client.block_by_hash(id.hash).await) {
        problems.check(
            by_hash.block_id == id && by_hash.block.as_ref() == Some(&block.block),
            || format!("block_by_hash {} is not block {tx_height}", id.hash),
        );
    }
    if let Some(header) = problems.ok("header", client.header(height(tx_height)).await) {
        problems.check(header.header == block.block.header, || {
            format!(
                "header {tx_height} is not block {tx_height}'s: {:?}",
                header.header
            )
        });
    }
    if let Some(header) = problems.ok("header_by_hash", client.header_by_hash(id.hash).await) {
        problems.check(header.header.as_ref() == Some(&block.block.header), || {
            format!("header_by_hash {}: {:?}", id.hash, header.header)
        });
    }
    if let Some(next) = problems.ok("block (next)", client.block(height(tx_height + 1)).await) {
        let last = next.block.last_commit.as_ref().map(|c| c.block_id);
        problems.check(last == Some(id), || {
            format!(
                "block {}'s last_commit is for {last:?}, not {id:?}",
                tx_height + 1
            )
        });
    }
    results_reads(problems, client, tx_height, block.block.data.len()).await;
    search_reads(problems, client, tx_height, id).await;
    commit_reads(problems, client, tx_height, id).await;
}

async fn results_reads(problems: &mut Problems, client: &HttpClient, tx_height: u64, txs: usize) {
    let results = client.block_results(height(tx_height)).await;
    if let Some(results) = problems.ok("block_results", results) {
        let codes: Vec<_> = results
            .txs_results
            .iter()
            .flatten()
            .map(|r| r.code)
            .collect();
        problems.check(
            results.height.value() == tx_height
                && codes.len() == txs
                && codes.iter().all(|c| c.is_ok()),
            || format!("block_results {tx_height} (block has {txs} txs): {results:?}"),
        );
    }
    if let Some(results) = problems.ok("latest_block_results", client.latest_block_results().await)
    {
        problems.check(results.height.value() > tx_height, || {
            format!("latest_block_results at {}", results.height)
        });
    }
}

async fn search_reads(problems: &mut Problems, client: &HttpClient, tx_height: u64, id: block::Id) {
    let query: Query = "block.height >= 2 AND block.height <= 4".parse().unwrap();
    let found = client.block_search(query, 1, 30, Order::Ascending).await;
    if let Some(found) = problems.ok("block_search", found) {
        let heights: Vec<u64> = found
            .blocks
            .iter()
            .map(|b| b.block.header.height.value())
            .collect();
        problems.check(heights == [2, 3, 4] && found.total_count == 3, || {
            format!(
                "block_search 2..=4: heights {heights:?}, total {}",
                found.total_count
            )
        });
    }
    if let Some(chain) = problems.ok("blockchain", client.blockchain(height(1), height(5)).await) {
        let heights: Vec<u64> = chain
            .block_metas
            .iter()
            .map(|m| m.header.height.value())
            .collect();
        problems.check(
            heights == [5, 4, 3, 2, 1] && chain.last_height.value() > tx_height,
            || {
                format!(
                    "blockchain 1..=5: heights {heights:?}, last {}",
                    chain.last_height
                )
            },
        );
    }
    let one = client
        .blockchain(height(tx_height), height(tx_height))
        .await;
    if let Some(one) = problems.ok("blockchain (one)", one) {
        let ids: Vec<block::Id> = one.block_metas.iter().map(|m| m.block_id).collect();
        problems.check(ids == [id], || {
            format!("blockchain {tx_height}..={tx_height}: ids {ids:?}, not {id:?}")
        });
    }
}

async fn commit_reads(problems: &mut Problems, client: &HttpClient, tx_height: u64, id: block::Id) {
    if let Some(commit) = problems.ok("commit", client.commit(height(tx_height)).await) {
        let signed = &commit.signed_header;
        let signatures = &signed.commit.signatures;
        problems.check(
            signed.header.height.value() == tx_height
                && signed.commit.block_id == id
                && commit.canonical
                && !signatures.is_empty()
                && signatures
                    .iter()
                    .all(|s| matches!(s, CommitSig::BlockIdFlagCommit { .. })),
            || format!("commit {tx_height} (block id {id:?}): {commit:?}"),
        );
    }
    if let Some(commit) = problems.ok("latest_commit", client.latest_commit().await) {
        problems.check(
            commit.signed_header.header.height.value() > tx_height,
            || format!("latest_commit at {}", commit.signed_header.header.height),
        );
    }
}

/// tx and tx_search for the committed tx.
async fn tx_reads(problems: &mut Problems, client: &HttpClient, tx_height: u64, tx: &Transaction) {
    let hash = Hash::Sha256(tx.hash().0);
    let bytes = tx.encode();
    let block = client.block(height(tx_height)).await.ok();
    let index = block.and_then(|b| b.block.data.iter().position(|t| *t == bytes));
    if let Some(found) = problems.ok("tx", client.tx(hash, false).await) {
        problems.check(
            found.hash == hash
                && found.height.value() == tx_height
                && Some(found.index as usize) == index
                && found.tx == bytes
                && found.tx_result.code.is_ok(),
            || format!("tx {hash} (at {tx_height}, index {index:?}): {found:?}"),
        );
    }
    let at_height: Query = format!("tx.height = {tx_height}").parse().unwrap();
    let found = client
        .tx_search(at_height, false, 1, 30, Order::Ascending)
        .await;
    if let Some(found) = problems.ok("tx_search tx.height", found) {
        problems.check(
            found.txs.iter().all(|t| t.height.value() == tx_height)
                && found.txs.iter().any(|t| t.hash == hash)
                && found.total_count as usize == found.txs.len(),
            || format!("tx_search tx.height = {tx_height}: {found:?}"),
        );
    }
    let by_hash: Query = format!("tx.hash = '{}'", hex::encode_upper(tx.hash().0))
        .parse()
        .unwrap();
    let found = client
        .tx_search(by_hash, false, 1, 30, Order::Ascending)
        .await;
    if let Some(found) = problems.ok("tx_search tx.hash", found) {
        problems.check(
            found.total_count == 1 && found.txs.len() == 1 && found.txs[0].hash == hash,
            || format!("tx_search tx.hash = {hash}: {found:?}"),
        );
    }
}

/// CometBFT's errors, as tendermint-rs reports them.
async fn error_answers(problems: &mut Problems, client: &HttpClient) {
    const ABOVE_TIP: &str = "must be less than or equal to the current blockchain height";
    match client.block(height(1_000_000)).await {
        Ok(answer) => problems
            .0
            .push(format!("block above the tip answered {answer:?}")),
        Err(error) => problems.check(error.to_string().contains(ABOVE_TIP), || {
            format!("block above the tip: {error}")
        }),
    }
    if let Ok(answer) = client.tx(Hash::Sha256([0xab; 32]), false).await {
        problems
            .0
            .push(format!("tx of an unknown hash answered {answer:?}"));
    }
}

/// NewBlock and Tx events through tendermint-rs's WebSocket client, then a clean goodbye.
async fn websocket(problems: &mut Problems, node: &TestNode, submitted: &Mutex<HashSet<[u8; 32]>>) {
    let url = format!("ws://127.0.0.1:{}/websocket", node.rpc_port);
    let built = WebSocketClient::builder(url.parse().unwrap())
        .compat_mode(CompatMode::V0_38)
        .build()
        .await;
    let Some((client, driver)) = problems.ok("websocket connect", built) else {
        return;
    };
    let driver = tokio::spawn(driver.run());
    // An ordinary method over the socket too.
    problems.ok("status over websocket", client.status().await);

    let blocks_query = Query::from(EventType::NewBlock);
    let txs_query = Query::from(EventType::Tx);
    let blocks = client.subscribe(blocks_query.clone()).await;
    let txs = client.subscribe(txs_query.clone()).await;
    if let (Some(blocks), Some(txs)) = (
        problems.ok("subscribe NewBlock", blocks),
        problems.ok("subscribe Tx", txs),
    ) {
        new_block_events(problems, blocks).await;
        tx_events(problems, txs, submitted).await;
    }
    problems.ok(
        "unsubscribe NewBlock",
        client.unsubscribe(blocks_query).await,
    );
    problems.ok("unsubscribe Tx", client.unsubscribe(txs_query).await);
    problems.ok("websocket close", client.close());
    match tokio::time::timeout(CALL_TIMEOUT, driver).await {
        Ok(ended) => {
            problems.ok("websocket driver", ended.unwrap());
        }
        Err(_) => problems
            .0
            .push("the websocket driver did not end after close".into()),
    }
}

async fn new_block_events(problems: &mut Problems, mut events: tendermint_rpc::Subscription) {
    let mut heights = Vec::new();
    while heights.len() < 2 {
        let Some(event) = next_event(problems, "NewBlock", &mut events).await else {
            return;
        };
        let EventData::NewBlock {
            block: Some(block),
            block_id,
            ..
        } = &event.data
        else {
            problems
                .0
                .push(format!("a NewBlock event without its block: {event:?}"));
            return;
        };
        problems.check(
            event.query == "tm.event = 'NewBlock'" && block_id.hash != Hash::None,
            || {
                format!(
                    "NewBlock event's query {:?}, block id {block_id:?}",
                    event.query
                )
            },
        );
        heights.push(block.header.height.value());
    }
    problems.check(heights[0] < heights[1], || {
        format!("NewBlock heights not increasing: {heights:?}")
    });
}

async fn tx_events(
    problems: &mut Problems,
    mut events: tendermint_rpc::Subscription,
    submitted: &Mutex<HashSet<[u8; 32]>>,
) {
    loop {
        let Some(event) = next_event(problems, "Tx", &mut events).await else {
            return;
        };
        let EventData::Tx { tx_result } = &event.data else {
            problems
                .0
                .push(format!("a Tx event of another kind: {event:?}"));
            return;
        };
        let Ok(tx) = Transaction::decode(&tx_result.tx) else {
            problems
                .0
                .push(format!("a Tx event's tx does not decode: {tx_result:?}"));
            return;
        };
        if submitted.lock().unwrap().contains(&tx.hash().0) {
            problems.check(
                event.query == "tm.event = 'Tx'" && tx_result.height > 0,
                || format!("Tx event: query {:?}, {tx_result:?}", event.query),
            );
            return;
        }
    }
}

async fn next_event(
    problems: &mut Problems,
    kind: &str,
    events: &mut tendermint_rpc::Subscription,
) -> Option<tendermint_rpc::event::Event> {
    match tokio::time::timeout(CALL_TIMEOUT, events.next()).await {
        Ok(Some(Ok(event))) => Some(event),
        Ok(Some(Err(error))) => {
            problems.0.push(format!("{kind} event: {error}"));
            None
        }
        Ok(None) => {
            problems.0.push(format!("{kind} subscription ended"));
            None
        }
        Err(_) => {
            problems
                .0
                .push(format!("no {kind} event within {CALL_TIMEOUT:?}"));
            None
        }
    }
}

/// A JSON value that is a number, or a decimal string (CometBFT's habit).
fn number(value: &Value) -> Option<u64> {
    value
        .as_u64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
}

// ---------------------------------------------------------------------------------------------
// CometBFT's URI GETs and the WebSocket's subscription limit, over plain sockets.

/// `GET target` on a fresh connection: the status code and the body.
async fn get(port: u16, target: &str) -> (u16, String) {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let request =
            format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        response
    };
    let response = tokio::time::timeout(CALL_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| panic!("GET {target} did not end"));
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let chunked = head.lines().any(|line| {
        line.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, body)
}

/// A chunked body's content.
fn dechunk(mut body: &str) -> String {
    let mut content = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").expect("a chunk size line");
        let size = usize::from_str_radix(size.trim(), 16).expect("a hex chunk size");
        if size == 0 {
            return content;
        }
        content.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
}

/// `GET target`, answered 200 with a JSON body.
async fn get_json(port: u16, target: &str) -> Value {
    let (status, body) = get(port, target).await;
    let value: Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {target}: {e}; body {body:?}"));
    assert_eq!(status, 200, "GET {target}: {value}");
    assert_eq!(value["jsonrpc"], "2.0", "GET {target}: {value}");
    assert_eq!(
        value["id"], -1,
        "GET {target}: CometBFT's URI id is -1: {value}"
    );
    value
}

/// Polls `GET /status` until the node is at `target` or above.
async fn get_height(node: &TestNode, target: u64) -> u64 {
    let until = Instant::now() + DEADLINE;
    loop {
        if let (200, body) = get(node.rpc_port, "/status").await {
            let status: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            let latest = number(&status["result"]["sync_info"]["latest_block_height"]);
            if let Some(latest) = latest.filter(|h| *h >= target) {
                return latest;
            }
        }
        assert!(
            Instant::now() < until,
            "no height {target}; log:\n{}",
            node.log_tail()
        );
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uri_routes_and_subscription_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::init(&dir.path().join("home"), CHAIN, "uri");
    node.configure(|config| config.consensus.timeout_commit_ms = Some(50));
    node.start();
    node.wait_rpc().await;
    get_height(&node, 2).await;
    let port = node.rpc_port;

    let (status, routes) = get(port, "/").await;
    assert_eq!(status, 200, "GET /: {routes}");
    assert!(
        routes.contains("<html>")
            && routes.contains("/status")
            && routes.contains("block?height=_"),
        "GET / lists the routes: {routes}"
    );
    let status = get_json(port, "/status").await;
    assert!(status["result"]["node_info"].is_object(), "{status}");
    let block = get_json(port, "/block?height=1").await;
    assert_eq!(block["result"]["block"]["header"]["height"], "1", "{block}");

    let keys = account_keys(&node.home);
    let tx = sign(&keys[0], 0, keys[1].public(), 5);
    let target = format!("/broadcast_tx_sync?tx=0x{}", hex::encode(tx.encode()));
    let admitted = get_json(port, &target).await;
    assert_eq!(admitted["result"]["code"], 0, "{admitted}");
    let hash = hex::encode(tx.hash().0);
    let found = committed_tx(&node, &hash).await;
    assert_eq!(found["result"]["hash"], hash.to_uppercase(), "{found}");
    let tx_height = number(&found["result"]["height"]).unwrap();

    every_route(&node, tx_height, &hash).await;
    uri_errors(&node, tx_height).await;
    subscription_limit(port).await;
    assert!(node.stop(), "unclean stop; log:\n{}", node.log_tail());
}

/// Polls `GET /tx?hash=0x…` (lower-case hex) until the tx is committed.
async fn committed_tx(node: &TestNode, hash: &str) -> Value {
    let until = Instant::now() + DEADLINE;
    loop {
        let found = get_json(node.rpc_port, &format!("/tx?hash=0x{hash}")).await;
        if found["result"].is_object() {
            return found;
        }
        assert!(
            Instant::now() < until,
            "tx {hash} never committed: {found}; log:\n{}",
            node.log_tail()
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Every route the node lists answers a GET in CometBFT's URI form with a result. `hash` is a
/// committed tx's (lower-case hex) at `tx_height`.
async fn every_route(node: &TestNode, tx_height: u64, hash: &str) {
    let port = node.rpc_port;
    let keys = account_keys(&node.home);
    let account = hex::encode(keys[2].public());
    let block = get_json(port, &format!("/block?height={tx_height}")).await;
    let block_hash = block["result"]["block_id"]["hash"]
        .as_str()
        .unwrap()
        .to_owned();
    // The mempool's methods in the order visited: nonces 0, 1, 2, … of one account.
    let height_text = tx_height.to_string();
    let mut nonce = 0;
    let mut next_tx = || {
        let tx = sign(&keys[2], nonce, keys[3].public(), 1);
        nonce += 1;
        hex::encode(tx.encode())
    };
    for (method, _) in weft_node::rpc::api::ROUTES {
        let target = match *method {
            "abci_info"
            | "consensus_state"
            | "dump_consensus_state"
            | "genesis"
            | "health"
            | "net_info"
            | "num_unconfirmed_txs"
            | "status" => format!("/{method}"),
            "abci_query" => format!("/abci_query?path=%22/account%22&data=0x{account}"),
            "account" => format!("/account?address=0x{account}"),
            "block" | "block_results" | "commit" | "header" | "consensus_params" => {
                format!("/{method}?height={tx_height}")
            }
            "block_by_hash" | "header_by_hash" => format!("/{method}?hash=0x{block_hash}"),
            "block_search" => {
                "/block_search?query=%22block.height%3C%3D2%22&per_page=5&order_by=%22desc%22"
                    .to_owned()
            }
            "blockchain" => "/blockchain?minHeight=1&maxHeight=3".to_owned(),
            "broadcast_tx_async" | "broadcast_tx_sync" | "broadcast_tx_commit" | "check_tx" => {
                format!("/{method}?tx=0x{}", next_tx())
            }
            "genesis_chunked" => "/genesis_chunked?chunk=0".to_owned(),
            "tx" => format!("/tx?hash=0x{hash}"),
            "tx_search" => format!("/tx_search?query=%22tx.height%3D{tx_height}%22"),
            "unconfirmed_txs" => "/unconfirmed_txs?limit=5".to_owned(),
            "validators" => "/validators?height=1&page=1&per_page=10".to_owned(),
            other => panic!("route {other} is new: give it a GET here"),
        };
        let answer = get_json(port, &target).await;
        let result = &answer["result"];
        assert!(result.is_object(), "GET {target}: {answer}");
        let holds = match *method {
            "abci_query" => result["response"]["code"] == 0,
            "account" => result["balance"].is_string(),
            "block" | "block_by_hash" => {
                result["block"]["header"]["height"] == height_text.as_str()
            }
            "header" | "header_by_hash" => result["header"]["height"] == height_text.as_str(),
            "block_search" => result["blocks"].as_array().is_some_and(|b| b.len() == 2),
            "blockchain" => result["block_metas"]
                .as_array()
                .is_some_and(|m| m.len() == 3),
            "broadcast_tx_async" | "broadcast_tx_sync" | "check_tx" => result["code"] == 0,
            "broadcast_tx_commit" => {
                result["check_tx"]["code"] == 0 && result["tx_result"]["code"] == 0
            }
            "tx" => result["hash"] == hash.to_uppercase(),
            "tx_search" => result["total_count"] != "0",
            "validators" => result["total"] == "1",
            _ => true,
        };
        assert!(holds, "GET {target}: {answer}");
    }
}

async fn uri_errors(node: &TestNode, tx_height: u64) {
    let port = node.rpc_port;
    let error = |value: &Value| {
        (
            value["error"]["code"].as_i64(),
            value["error"]["data"].clone(),
        )
    };
    let (_, body) = get(port, "/block?height=999999").await;
    let above: Value = serde_json::from_str(&body).unwrap();
    let (code, data) = error(&above);
    assert_eq!(code, Some(-32603), "{above}");
    let prefix = "height 999999 must be less than or equal to the current blockchain height ";
    let latest = data.as_str().and_then(|d| d.strip_prefix(prefix));
    assert!(
        latest
            .and_then(|h| h.parse::<u64>().ok())
            .is_some_and(|h| h >= tx_height),
        "{above}"
    );
    let (_, body) = get(port, "/tx?hash=0xZZ").await;
    let bad_hash: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error(&bad_hash).0, Some(-32602), "{bad_hash}");
    // `"tx.height>>5"`, quoted and percent-encoded.
    let (_, body) = get(port, "/tx_search?query=%22tx.height%3E%3E5%22").await;
    let bad_query: Value = serde_json::from_str(&body).unwrap();
    assert!(bad_query["error"].is_object(), "{bad_query}");
    let (_, body) = get(port, "/nosuch").await;
    let unknown: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error(&unknown).0, Some(-32601), "{unknown}");
}

/// 16 distinct subscriptions on one connection are taken; the 17th is refused.
async fn subscription_limit(port: u16) {
    let url = format!("ws://127.0.0.1:{port}/websocket");
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    for id in 0..=SUBSCRIPTIONS_MAX {
        // Heights no test reaches: these subscriptions never see an event.
        let query = format!("tm.event = 'Tx' AND tx.height = {}", 1_000_000_000 + id);
        let request =
            json!({"jsonrpc": "2.0", "id": id, "method": "subscribe", "params": {"query": query}});
        socket
            .send(Message::Text(request.to_string().into()))
            .await
            .unwrap();
    }
    let mut answers = Vec::new();
    while answers.len() <= SUBSCRIPTIONS_MAX {
        let message = tokio::time::timeout(CALL_TIMEOUT, socket.next())
            .await
            .expect("an answer to each subscribe")
            .expect("the socket stays open")
            .unwrap();
        if let Message::Text(text) = message {
            answers.push(serde_json::from_str::<Value>(&text).unwrap());
        }
    }
    for answer in &answers[..SUBSCRIPTIONS_MAX] {
        assert_eq!(answer["result"], json!({}), "{answer}");
    }
    let refused = &answers[SUBSCRIPTIONS_MAX];
    assert_eq!(refused["id"], SUBSCRIPTIONS_MAX, "{refused}");
    assert!(
        refused["error"]["data"]
            .as_str()
            .is_some_and(|d| d.contains("max_subscriptions_per_client 16")),
        "{refused}"
    );
    let all = json!({"jsonrpc": "2.0", "id": "all", "method": "unsubscribe_all", "params": {}});
    socket
        .send(Message::Text(all.to_string().into()))
        .await
        .unwrap();
    let answer = tokio::time::timeout(CALL_TIMEOUT, socket.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let answer: Value = serde_json::from_str(answer.to_text().unwrap()).unwrap();
    assert_eq!(answer, json!({"jsonrpc": "2.0", "id": "all", "result": {}}));
    socket.close(None).await.unwrap();
}
