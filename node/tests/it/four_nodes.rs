use std::time::{Duration, Instant};

use weft_node::rpc::RpcClient;
use weft_node::rpc::api::HashParam;
use weft_node::rpc::api::encoding::{Hash, HexBytes, Int};

use crate::support::{DEADLINE, TestNode, account_keys, committed_ok, network, transfer};

const CHAIN: &str = "weft-four";

/// The block's hash and its state root (`app_hash`).
async fn block_at(node: &TestNode, height: u64) -> Option<(Hash, HexBytes)> {
    let result = node.client().block(Some(Int(height))).await.ok()?;
    Some((result.block_id.hash, result.block?.header.app_hash))
}

/// Every node holds the same hash and state root at every height up to `height`.
async fn assert_identical(nodes: &[TestNode], height: u64) {
    for h in 1..=height {
        let first = block_at(&nodes[0], h).await.expect("node 0 has the block");
        for (i, node) in nodes.iter().enumerate().skip(1) {
            let other = block_at(node, h).await;
            assert_eq!(
                other.as_ref(),
                Some(&first),
                "node {i} differs at height {h}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_validators_agree_and_a_killed_one_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = network(dir.path(), 4, CHAIN);
    for node in &mut nodes {
        node.start();
    }
    for node in &nodes {
        node.wait_height(3).await;
    }

    // A tx sent to node 0 commits and is found on all four.
    let keys = account_keys(&nodes[0].home);
    let tx = transfer(CHAIN, &keys[0], 0, keys[1].public(), 7);
    let result = nodes[0]
        .client()
        .broadcast_tx_commit(tx.into())
        .await
        .unwrap();
    assert!(committed_ok(&result), "{result:?}");
    let hash = HashParam(result.hash.require("hash").unwrap());
    let height = result.height.0;
    for node in &nodes {
        node.wait_height(height).await;
        let found = node.client().tx(hash, None).await.unwrap();
        assert_eq!(found.height.0, height, "{found:?}");
    }

    // Kill node 3; the others go on; it restarts, syncs and rejoins. The others go on far
    // enough that gossip (which keeps a few heights) cannot hand it what it missed: only block
    // sync can (with 5 heights, it sometimes caught up from gossip alone).
    nodes[3].kill9();
    let target = height + 20;
    for node in &nodes[..3] {
        node.wait_height(target).await;
    }
    nodes[3].start();
    nodes[3].wait_height(target + 2).await;
    let until = Instant::now() + DEADLINE;
    let top = loop {
        let mut heights = Vec::new();
        for node in &nodes {
            heights.push(node.height().await.unwrap_or(0));
        }
        let min = *heights.iter().min().unwrap();
        if min >= target + 2 {
            break min;
        }
        assert!(Instant::now() < until, "heights {heights:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_identical(&nodes, top).await;
    let log = std::fs::read_to_string(nodes[3].log_path()).unwrap();
    assert!(
        log.contains("synced"),
        "node 3 did not catch up by block sync:\n{}",
        nodes[3].log_tail()
    );
    // No evidence names the restarted validator: it never signed twice.
    for (i, node) in nodes.iter().enumerate() {
        let state = node.client().dump_consensus_state().await.unwrap();
        let evidence = state.round_state.evidence;
        assert!(evidence.is_empty(), "node {i} holds evidence: {evidence:?}");
    }
    for node in &mut nodes {
        assert!(
            node.stop(),
            "a node did not stop cleanly:\n{}",
            node.log_tail()
        );
    }
}

/// Every node stopped at the same moment, maybe between deciding a height and committing it,
/// then restarted: each resumes from its WAL, and whoever decided still holds the block (the
/// blocks kept in its WAL), so the chain carries on. Three rounds, to land in that window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_four_stopped_together_resume_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = network(dir.path(), 4, CHAIN);
    for node in &mut nodes {
        node.start();
    }
    let mut top = 2;
    for round in 0..3 {
        for node in &nodes {
            node.wait_height(top).await;
        }
        for node in &nodes {
            node.term();
        }
        for node in &mut nodes {
            assert!(node.stop(), "round {round}: a node did not stop cleanly");
        }
        let mut heights = Vec::new();
        for node in &mut nodes {
            node.start();
            node.wait_rpc().await;
            heights.push(node.height().await.unwrap());
        }
        top = heights.into_iter().max().unwrap() + 3;
    }
    for node in &nodes {
        node.wait_height(top).await;
    }
    assert_identical(&nodes, top).await;
}
