//! A living validator set, end to end with real processes: four validators under load add a
//! fifth (a full node that synced first), change a power, and remove an original one while a
//! validator restarts in the middle of the change; every node agrees, no acknowledged tx is
//! lost, and a node that block-syncs from genesis across every change verifies each
//! certificate against the set of its own height.

use std::time::{Duration, Instant};

use weft_execution::tx::ValidatorKey;
use weft_execution::{ChainId, Payload, Transaction};
use weft_genesis::{ConsensusParams, Genesis, SecretKey};
use weft_node::rpc::RpcClient;
use weft_node::rpc::api::HashParam;
use weft_node::rpc::api::encoding::{HexBytes, Int, address_of};
use weft_node::rpc::api::types::BLOCK_ID_FLAG_COMMIT;

use crate::support::{DEADLINE, TestNode, account_keys, committed_ok, transfer};

const CHAIN: &str = "weft-living-set";

fn validator_update(authority: &SecretKey, nonce: u64, validator: [u8; 32], power: u64) -> Vec<u8> {
    let tx = Transaction::sign(
        ChainId::new(CHAIN).unwrap(),
        &authority.signing_key(),
        nonce,
        Payload::ValidatorUpdate {
            validator: ValidatorKey::new(validator).unwrap(),
            power,
        },
    );
    tx.encode()
}

/// Commits `tx` through `node` and returns the height it landed at.
async fn commit(node: &TestNode, tx: Vec<u8>) -> u64 {
    let result = node.client().broadcast_tx_commit(tx.into()).await.unwrap();
    assert!(committed_ok(&result), "{result:?}");
    result.height.0
}

/// The validators (public key → power) `node` reports for `height`.
async fn validators_at(node: &TestNode, height: u64) -> Vec<([u8; 32], u64)> {
    let answer = node
        .client()
        .validators(Some(Int(height)), None, None)
        .await
        .unwrap();
    assert_eq!(answer.count.0, answer.total.0, "one page holds them all");
    let mut out: Vec<([u8; 32], u64)> = answer
        .validators
        .iter()
        .map(|v| (v.pub_key.ed25519_bytes().unwrap(), v.voting_power.0))
        .collect();
    out.sort();
    out
}

/// The addresses of the signers of the certificate that decided `height` (carried by block
/// `height + 1`).
async fn signers_of(node: &TestNode, height: u64) -> Vec<HexBytes> {
    node.wait_height(height + 1).await;
    let block = node.block(height + 1).await.block.unwrap();
    block
        .last_commit
        .unwrap()
        .signatures
        .into_iter()
        .filter(|s| s.block_id_flag == BLOCK_ID_FLAG_COMMIT)
        .map(|s| s.validator_address)
        .collect()
}

async fn wait_all(nodes: &[&TestNode], height: u64) {
    for node in nodes {
        node.wait_height(height).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validators_join_change_power_and_leave_while_the_chain_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes: Vec<TestNode> = (0..6)
        .map(|i| {
            TestNode::init(
                &dir.path().join(format!("node{i}")),
                CHAIN,
                &format!("node{i}"),
            )
        })
        .collect();
    let keys: Vec<[u8; 32]> = nodes.iter().map(|n| n.validator_key().public()).collect();
    let accounts = account_keys(&nodes[0].home);
    let authority = &accounts[0];
    let first = Genesis::load(&nodes[0].home.genesis()).unwrap();
    let mut genesis = Genesis::new(
        CHAIN,
        first.genesis_time_ms(),
        (0..4)
            .map(|i| (format!("validator-{i}"), keys[i], 10))
            .collect(),
        first
            .accounts
            .iter()
            .map(|a| (a.address().unwrap().0, a.balance))
            .collect(),
        ConsensusParams::fast(),
    )
    .unwrap();
    genesis
        .set_authority(&hex::encode(authority.public()))
        .unwrap();
    for (i, node) in nodes.iter().enumerate() {
        genesis.save(&node.home.genesis()).unwrap();
        // Each dials the four original validators (a full node has to reach them).
        let peers: Vec<String> = nodes[..4]
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, p)| p.peer_addr())
            .collect();
        node.configure(|config| config.p2p.persistent_peers = peers);
    }
    for node in &mut nodes[..5] {
        node.start();
    }
    wait_all(&nodes[..5].iter().collect::<Vec<_>>(), 3).await;

    // Load: transfers from another account all along, each acknowledged by the mempool.
    let client = nodes[0].client();
    let sender = accounts[1].clone();
    let recipient = accounts[2].public();
    let (stop_load, mut stopped) = tokio::sync::watch::channel(false);
    let load = tokio::spawn(async move {
        let mut acknowledged = Vec::new();
        let mut nonce = 0;
        while !*stopped.borrow() {
            let tx = transfer(CHAIN, &sender, nonce, recipient, 1);
            if let Ok(answer) = client.broadcast_tx_sync(tx.into()).await
                && answer.code == 0
            {
                acknowledged.push(answer.hash.require("hash").unwrap());
                nonce += 1;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                _ = stopped.changed() => {}
            }
        }
        acknowledged
    });

    let address = |i: usize| address_of(&keys[i]);
    // 1. Node 4, a full node that followed the chain, becomes a validator.
    let added = commit(&nodes[0], validator_update(authority, 0, keys[4], 10)).await;
    let effective = added + 2;
    wait_all(&nodes[..5].iter().collect::<Vec<_>>(), effective + 1).await;
    for node in &nodes[..5] {
        let set = validators_at(node, effective).await;
        assert!(set.contains(&(keys[4], 10)), "{set:?}");
        assert_eq!(set.len(), 5);
        let before = validators_at(node, effective - 1).await;
        assert_eq!(before.len(), 4, "the change took effect early: {before:?}");
    }
    // It signs from then on: its precommit is in a certificate soon after.
    let until = Instant::now() + DEADLINE;
    let mut height = effective;
    while !signers_of(&nodes[0], height).await.contains(&address(4)) {
        assert!(Instant::now() < until, "node 4 never signed a certificate");
        height += 1;
    }

    // 2. A power change: validator 1 goes from 10 to 12.
    let changed = commit(&nodes[0], validator_update(authority, 1, keys[1], 12)).await;
    wait_all(&nodes[..5].iter().collect::<Vec<_>>(), changed + 3).await;
    assert!(
        validators_at(&nodes[2], changed + 2)
            .await
            .contains(&(keys[1], 12))
    );

    // 3. Validator 3 is removed; validator 2 restarts in the middle of the change.
    let removed = commit(&nodes[0], validator_update(authority, 2, keys[3], 0)).await;
    nodes[2].kill9();
    nodes[2].start();
    let live: Vec<&TestNode> = nodes[..5].iter().collect();
    wait_all(&live, removed + 6).await;
    for node in &live {
        let set = validators_at(node, removed + 2).await;
        assert!(!set.iter().any(|(key, _)| *key == keys[3]), "{set:?}");
        assert_eq!(set.len(), 4);
    }
    // Node 3 still runs, now a full node: it follows the chain, and no certificate from the
    // removal on counts its signature.
    for h in removed + 2..removed + 5 {
        assert!(!signers_of(&nodes[1], h).await.contains(&address(3)));
    }
    nodes[3].wait_height(removed + 5).await;

    // Every acknowledged tx committed.
    stop_load.send(true).unwrap();
    let acknowledged = load.await.unwrap();
    assert!(!acknowledged.is_empty());
    for hash in &acknowledged {
        let until = Instant::now() + DEADLINE;
        loop {
            if nodes[1].client().tx(HashParam(*hash), None).await.is_ok() {
                break;
            }
            assert!(
                Instant::now() < until,
                "acknowledged tx {} never committed",
                hex::encode_upper(hash)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // 4. A new node syncs from genesis across all three changes, checking every certificate
    // against the set of its own height.
    nodes[5].start();
    let top = nodes[0].height().await.unwrap();
    nodes[5].wait_height(top).await;
    for h in 1..=top {
        let expected = nodes[0].block(h).await;
        let got = nodes[5].block(h).await;
        assert_eq!(got.block_id, expected.block_id, "height {h}");
    }
    let log = std::fs::read_to_string(nodes[5].log_path()).unwrap();
    assert!(
        !log.contains("synced block refused"),
        "{}",
        nodes[5].log_tail()
    );
    for node in &mut nodes {
        assert!(
            node.stop(),
            "a node did not stop cleanly:\n{}",
            node.log_tail()
        );
    }
}
