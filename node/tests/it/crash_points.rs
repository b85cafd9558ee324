//! The crash loop: one validator of four is stopped, under load, at durable writes of every kind
//! (the test-only crash points of `weft_node::crashpoint`), and restarted each time.
//!
//! After each stop its database is opened as the node would open it, and checked:
//! - no committed height is lost: it holds at least every height its RPC reported before the
//!   crash, each with the block every other node holds at that height;
//! - no committed tx is lost: every tx the load saw committed at a height it holds is indexed
//!   there;
//! - no block holds evidence: nobody saw it sign twice.
//!
//! Each restart must reach its next crash point (commit-batch and sync-store points are only
//! reached by committing again), and after the last one the validator rejoins: it catches up
//! with the others, holds their blocks, and no node holds evidence against it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonrpsee::http_client::HttpClient;
use parking_lot::Mutex;
use weft_consensus::Height;
use weft_execution::TxHash;
use weft_genesis::Genesis;
use weft_node::chain::Chain;
use weft_node::config::Config;
use weft_node::crashpoint::CRASH_EXIT_CODE;
use weft_node::rpc::RpcClient;
use weft_node::rpc::api::HashParam;
use weft_node::rpc::api::encoding::Int;

use crate::support::{DEADLINE, TestNode, account_keys, committed_ok, network, transfer};

const CHAIN: &str = "weft-crash";
const TARGET: usize = 3;

/// 28 points across the four kinds of durable write, in an order that mixes them. `before`:
/// the write never happened; `after`: it did and nothing after it; `torn`: half a WAL record
/// reached the file; `unsynced`: the WAL lost what was appended since its last sync, as in a
/// power cut. The n-th write counts from the process's start.
///
/// The first run with every validator up, so the others go on while the target is down and it
/// comes back by block sync (the only way to reach `sync-store`).
const WITH_A_SPARE: [&str; 16] = [
    "wal-append:1:before",
    "guard-sync:1:after",
    "commit-batch:1:before",
    "sync-store:1:after",
    "wal-append:5:torn",
    "guard-sync:2:before",
    "commit-batch:2:after",
    "sync-store:2:before",
    "wal-append:20:after",
    "sync-store:1:before",
    "commit-batch:3:before",
    "sync-store:3:after",
    "wal-append:60:unsynced",
    "sync-store:2:after",
    "guard-sync:4:after",
    "sync-store:4:before",
];

/// Then with one other validator stopped: every height needs the target's votes, so the chain
/// waits for it and it comes back to the very height and round it was signing in. This is
/// where signing twice would happen.
const QUORUM_CRITICAL: [&str; 12] = [
    "guard-sync:1:after",
    "wal-append:40:torn",
    "guard-sync:6:before",
    "commit-batch:5:after",
    "wal-append:80:before",
    "guard-sync:9:after",
    "wal-append:30:unsynced",
    "commit-batch:1:after",
    "wal-append:9:after",
    "guard-sync:3:before",
    "wal-append:12:unsynced",
    "commit-batch:4:before",
];

/// Txs the load saw committed, by hash, with their height.
type Committed = Arc<Mutex<Vec<([u8; 32], u64)>>>;

/// One sender per live node: transfers through `broadcast_tx_commit`, one after another.
fn start_load(nodes: &[TestNode]) -> (Committed, Vec<tokio::task::JoinHandle<()>>) {
    let committed: Committed = Arc::default();
    let keys = account_keys(&nodes[0].home);
    let mut tasks = Vec::new();
    for (sender, node) in nodes.iter().enumerate().take(TARGET) {
        let (key, to) = (
            keys[sender].clone(),
            keys[(sender + 1) % keys.len()].public(),
        );
        let client = node.client();
        let committed = Arc::clone(&committed);
        tasks.push(tokio::spawn(async move {
            let mut nonce = 0;
            loop {
                let tx = transfer(CHAIN, &key, nonce, to, 1);
                match client.broadcast_tx_commit(tx.into()).await {
                    Ok(result) if committed_ok(&result) => {
                        let hash = result.hash.require("hash").unwrap();
                        committed.lock().push((hash, result.height.0));
                        nonce += 1;
                    }
                    // A timeout leaves the nonce in doubt: ask the chain.
                    _ => {
                        if let Ok(account) = client.account(HashParam(key.public())).await {
                            nonce = account.nonce.0;
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }));
    }
    (committed, tasks)
}

/// Block hashes of a live node, fetched once per height.
struct Reference {
    client: HttpClient,
    hashes: HashMap<u64, [u8; 32]>,
}

impl Reference {
    async fn hash(&mut self, height: u64) -> [u8; 32] {
        if let Some(hash) = self.hashes.get(&height) {
            return *hash;
        }
        let block = self.client.block(Some(Int(height))).await.unwrap();
        let hash = block.block_id.hash.require("block_id.hash").unwrap();
        self.hashes.insert(height, hash);
        hash
    }
}

/// Opens the stopped target's database the way the node does, and checks it holds everything
/// it had acknowledged. Returns its height and the number of committed txs checked.
async fn check_store(
    target: &TestNode,
    reported: u64,
    committed: &Committed,
    reference: &mut Reference,
    point: &str,
) -> (u64, usize) {
    let config = Config::load(&target.home.config()).unwrap();
    let genesis = Genesis::load(&target.home.genesis()).unwrap();
    let chain = Chain::open(&target.home.data(&config).join("chain"), genesis, 1)
        .unwrap_or_else(|e| panic!("after {point}: the database does not open: {e}"));
    chain
        .verify_integrity()
        .unwrap_or_else(|e| panic!("after {point}: {e}"));
    let height = chain.height().0;
    assert!(
        height >= reported,
        "after {point}: the database is at height {height}, but the node reported {reported}"
    );
    for h in 1..=height {
        let block = chain
            .block(Height(h))
            .unwrap()
            .unwrap_or_else(|| panic!("after {point}: block {h} is missing"));
        assert_eq!(
            block.hash.0,
            reference.hash(h).await,
            "after {point}: block {h} differs from the other nodes'"
        );
        assert!(
            block.block.evidence.is_empty(),
            "after {point}: block {h} holds evidence"
        );
    }
    let txs: Vec<([u8; 32], u64)> = committed.lock().clone();
    let mut checked = 0;
    for (hash, at) in txs.iter().filter(|(_, at)| *at <= height) {
        let location = chain.tx(&TxHash(*hash)).unwrap();
        assert_eq!(
            location.map(|l| l.height.0),
            Some(*at),
            "after {point}: tx {} committed at {at} is not indexed there",
            hex::encode_upper(hash)
        );
        checked += 1;
    }
    (height, checked)
}

/// Runs the target with `point` armed until it stops there; returns the highest height its
/// RPC reported meanwhile.
/// Fails the test if the audit so far shows a second signature for one step.
fn check_audit(audit: &Path, after: &str) {
    let text = std::fs::read_to_string(audit).unwrap_or_default();
    if let Some((first, second)) = double_sign(&text) {
        panic!("{after}: the target signed twice: {first:?}, then {second:?}");
    }
}

async fn run_until_crash(target: &mut TestNode, point: &str, audit: &Path) -> u64 {
    target.env.retain(|(name, _)| name != "WEFT_CRASH_AT");
    target.env.push(("WEFT_CRASH_AT".into(), point.into()));
    target.start();
    let until = Instant::now() + DEADLINE;
    let mut reported = 0;
    loop {
        let exited = target.child.as_mut().unwrap().try_wait().unwrap();
        if let Some(status) = exited {
            target.child = None;
            assert_eq!(
                status.code(),
                Some(CRASH_EXIT_CODE),
                "{point}: the node exited otherwise; log:\n{}",
                target.log_tail()
            );
            return reported;
        }
        if let Some(height) = target.height().await {
            reported = reported.max(height);
        }
        if Instant::now() >= until {
            // A double sign can stall the chain: name it rather than the stall.
            check_audit(audit, point);
        }
        assert!(
            Instant::now() < until,
            "{point}: never reached; log:\n{}",
            target.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn max_height(nodes: &[TestNode]) -> u64 {
    let mut top = 0;
    for node in nodes {
        top = top.max(node.height().await.unwrap_or(0));
    }
    top
}

/// The first two signatures in the audit for the same step with different values, if any.
fn double_sign(audit: &str) -> Option<(String, String)> {
    let mut signed: HashMap<String, (String, &str)> = HashMap::new();
    for line in audit.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let (step, value) = match fields.as_slice() {
            ["vote", h, r, kind, value] => (format!("vote {h} {r} {kind}"), value.to_string()),
            ["proposal", h, r, value] => (format!("proposal {h} {r}"), value.to_string()),
            _ => panic!("an unreadable audit line: {line:?}"),
        };
        match signed.get(&step) {
            Some((first, first_line)) if *first != value => {
                return Some((first_line.to_string(), line.to_owned()));
            }
            Some(_) => {}
            None => {
                signed.insert(step, (value, line));
            }
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validator_stopped_at_every_kind_of_durable_write_loses_nothing_and_never_signs_twice() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("signed-by-target.log");
    let audit_env = ("WEFT_SIGN_AUDIT".to_string(), audit.display().to_string());
    let mut nodes = network(dir.path(), 4, CHAIN);
    nodes[TARGET].env = vec![audit_env.clone()];
    for node in &mut nodes {
        node.start();
    }
    for node in &nodes {
        node.wait_height(2).await;
    }
    let (committed, load) = start_load(&nodes);
    let (live, rest) = nodes.split_at_mut(TARGET);
    let target = &mut rest[0];
    let mut reference = Reference {
        client: live[0].client(),
        hashes: HashMap::new(),
    };
    assert!(target.stop(), "{}", target.log_tail());
    let mut stored = 0;
    let mut txs_checked = 0;
    let mut kinds: HashMap<&str, usize> = HashMap::new();
    let points = WITH_A_SPARE.iter().map(|p| (p, true));
    let points = points.chain(QUORUM_CRITICAL.iter().map(|p| (p, false)));
    for (point, spare) in points {
        if !spare && live[2].child.is_some() {
            // From here the target is needed for every height.
            assert!(live[2].stop(), "{}", live[2].log_tail());
        }
        if point.starts_with("sync-store") {
            // Only a node that is behind syncs: let the others get ahead first.
            for node in live.iter() {
                node.wait_height(stored + 6).await;
            }
        }
        let reported = run_until_crash(target, point, &audit).await;
        check_audit(&audit, point);
        let log = std::fs::read_to_string(target.log_path()).unwrap();
        assert!(
            log.contains(&format!("stopped at crash point {point}")),
            "{point}: no crash-point line in the log"
        );
        let (height, txs) = check_store(target, reported, &committed, &mut reference, point).await;
        eprintln!("{point}: reported {reported}, stored {height}, {txs} committed txs found");
        stored = height;
        txs_checked += txs;
        *kinds.entry(point.split(':').next().unwrap()).or_default() += 1;
    }
    assert_eq!(kinds.len(), 4, "{kinds:?}");
    assert!(kinds.values().sum::<usize>() >= 20);
    assert!(
        txs_checked > 0,
        "no committed tx was checked in a crashed store"
    );

    // Rejoin: unarmed, it catches up with the others and holds their blocks.
    target.env.retain(|(name, _)| name != "WEFT_CRASH_AT");
    target.start();
    live[2].start();
    let goal = max_height(&live[..2]).await + 3;
    target.wait_height(goal).await;
    for h in stored.saturating_sub(10).max(1)..=goal {
        assert_eq!(
            target.block_hash(h).await,
            reference.hash(h).await,
            "height {h}"
        );
    }
    for task in load {
        task.abort();
    }
    let txs = committed.lock().len();
    assert!(txs >= 20, "only {txs} txs committed under the crash loop");

    // It never signed twice: by its own audit of every signature it released, and by every
    // node's evidence.
    check_audit(&audit, "the rejoin");
    let signed = std::fs::read_to_string(&audit).unwrap().lines().count();
    assert!(signed > 100, "only {signed} signatures audited");
    for node in &nodes[..3] {
        node.wait_height(goal).await;
    }
    for (i, node) in nodes.iter().enumerate() {
        let state = node.client().dump_consensus_state().await.unwrap();
        let evidence = state.round_state.evidence;
        assert!(evidence.is_empty(), "node {i} holds evidence: {evidence:?}");
    }
    let until = Instant::now() + DEADLINE;
    for node in &mut nodes {
        assert!(node.stop(), "{}", node.log_tail());
        assert!(Instant::now() < until);
    }
}

#[test]
fn the_audit_check_catches_a_second_signature() {
    let value = "ab".repeat(32);
    let fine = format!(
        "vote 5 0 Prevote {value}\nvote 5 0 Prevote {value}\nvote 5 0 Precommit nil\n\
         proposal 5 1 {value}\nvote 6 0 Prevote nil\n"
    );
    assert_eq!(double_sign(&fine), None);
    let twice = format!("vote 5 0 Prevote {value}\nvote 5 1 Prevote nil\nvote 5 0 Prevote nil\n");
    assert_eq!(
        double_sign(&twice),
        Some((
            format!("vote 5 0 Prevote {value}"),
            "vote 5 0 Prevote nil".to_owned()
        ))
    );
    let proposals = format!("proposal 7 0 {value}\nproposal 7 0 {}\n", "cd".repeat(32));
    assert!(double_sign(&proposals).is_some());
}
