//! A new node joins a long chain by state sync, as an operator does it: four validators on a
//! chain of 20,000 heights (built offline by their own keys) take snapshots; a fifth node,
//! trusting one height's hash read from a validator's RPC, restores the latest snapshot,
//! block-syncs the rest and follows the chain. Its first try is stopped in the middle of the
//! restore (a crash point after the first chunk written); started again, it restores anew.

use std::time::{Duration, Instant};

use weft_consensus::Height;
use weft_execution::{Address, ChainId, Payload, Transaction};
use weft_node::rpc::RpcClient;
use weft_node::rpc::api::HashParam;
use weft_node::rpc::api::encoding::Int;
use weft_node::rpc::api::types::AccountResult;

use crate::support::{
    DEADLINE, TestNode, account_keys, full_node, grow_chain, internal_error, network_at,
};

const CHAIN: &str = "weft-state-sync";
const HEIGHTS: u64 = 20_000;
const SNAPSHOT_INTERVAL: u64 = 50;

async fn account(node: &TestNode, address: [u8; 32]) -> AccountResult {
    node.client().account(HashParam(address)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_node_state_syncs_a_long_chain_survives_a_crash_mid_restore_and_follows() {
    let dir = tempfile::tempdir().unwrap();
    // Blocks are built 10 ms apart from the genesis time, all in the past.
    let genesis_time =
        weft_node::fixture::now_ms() - HEIGHTS * weft_node::fixture::BLOCK_INTERVAL_MS - 60_000;
    let mut nodes = network_at(dir.path(), 4, CHAIN, Some(genesis_time));
    let keys = account_keys(&nodes[0].home);
    let chain_id = ChainId::new(CHAIN).unwrap();
    // Some heights move funds, so balances and nonces are not the genesis's.
    let mut nonce = 0;
    let transfers = |height: Height| {
        if !height.0.is_multiple_of(500) {
            return Vec::new();
        }
        nonce += 1;
        vec![Transaction::sign(
            chain_id.clone(),
            &keys[0].signing_key(),
            nonce - 1,
            Payload::Transfer {
                to: Address(keys[1].public()),
                amount: 3,
            },
        )]
    };
    let others: Vec<&_> = nodes[1..].iter().collect();
    let top = grow_chain(&nodes, &others, HEIGHTS, transfers);
    assert_eq!(top, HEIGHTS);
    for node in &mut nodes {
        node.configure(|config| {
            config.storage.snapshot_interval = SNAPSHOT_INTERVAL;
            config.storage.snapshot_keep = 2;
        });
        node.start();
    }
    let first_snapshot = (HEIGHTS / SNAPSHOT_INTERVAL + 1) * SNAPSHOT_INTERVAL;
    for node in &nodes {
        node.wait_height(first_snapshot + 5).await;
    }
    let snapshot_written = nodes[0]
        .home
        .root
        .join("data/snapshots")
        .join(first_snapshot.to_string())
        .join("manifest");
    let until = Instant::now() + DEADLINE;
    while !snapshot_written.exists() {
        assert!(Instant::now() < until, "no snapshot at {first_snapshot}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The operator reads a trusted hash from a validator they trust.
    let trust_hash = hex::encode_upper(nodes[0].block_hash(10_000).await);
    let mut joiner = full_node(&dir.path().join("joiner"), CHAIN, &nodes);
    joiner.configure(|config| {
        config.statesync.enable = true;
        config.statesync.trust_height = 10_000;
        config.statesync.trust_hash = trust_hash;
        config.statesync.discovery_time_ms = 500;
    });

    // First try: stopped right after the first chunk is written.
    joiner.env = vec![("WEFT_CRASH_AT".into(), "restore-chunk:1".into())];
    joiner.start();
    let until = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = joiner.child.as_mut().unwrap().try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < until,
            "no crash; log:\n{}",
            joiner.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        status.code(),
        Some(weft_node::crashpoint::CRASH_EXIT_CODE),
        "{}",
        joiner.log_tail()
    );
    joiner.child = None;

    // Second try: the store held a restore cut short, opens at genesis, and syncs again.
    joiner.env.clear();
    let started = Instant::now();
    joiner.start();
    joiner.wait_rpc().await;
    let status = joiner.client().status().await.unwrap();
    let earliest = status.sync_info.earliest_block_height.0;
    assert!(
        earliest >= first_snapshot && earliest.is_multiple_of(SNAPSHOT_INTERVAL),
        "restored from snapshot {earliest}: {status:?}"
    );
    let log = std::fs::read_to_string(joiner.log_path()).unwrap();
    assert!(
        log.contains("snapshot restore cut short"),
        "the restart said nothing of the interrupted restore"
    );

    // It follows the chain: past the validators' height when it finished, and on.
    let network = nodes[0].height().await.unwrap();
    joiner.wait_height(network + 20).await;
    let synced_in = started.elapsed();
    assert!(joiner.height().await.unwrap() > earliest);
    let check = network + 10;
    for node in &nodes {
        node.wait_height(check).await;
    }
    let theirs = nodes[1].block(check).await;
    let mine = joiner.block(check).await;
    assert_eq!(mine.block_id, theirs.block_id);
    let root = |result: &weft_node::rpc::api::types::BlockResult| {
        result.block.as_ref().map(|b| b.header.app_hash.clone())
    };
    assert_eq!(root(&mine), root(&theirs));
    for key in &keys[..2] {
        assert_eq!(
            account(&joiner, key.public()).await.balance,
            account(&nodes[2], key.public()).await.balance
        );
    }
    let sender = account(&joiner, keys[0].public()).await;
    assert_eq!(sender.nonce.0, HEIGHTS / 500, "{sender:?}");

    // Heights below the snapshot are not there, and RPC says so as CometBFT does.
    let reason = internal_error(joiner.client().block(Some(Int(100))).await);
    assert_eq!(
        reason,
        format!("height 100 is not available, lowest height is {earliest}")
    );
    let metrics = reqwest_metrics(&joiner).await;
    assert!(
        metrics.contains("weft_statesync_snapshots_restored_total 1"),
        "{metrics}"
    );
    println!(
        "state sync: joined a chain of {network} heights from snapshot {earliest} in {:.1} s",
        synced_in.as_secs_f64()
    );
}

/// The node's `/metrics` text.
async fn reqwest_metrics(node: &TestNode) -> String {
    let config = weft_node::config::Config::load(&node.home.config()).unwrap();
    let addr = config.metrics.laddr;
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    text
}
