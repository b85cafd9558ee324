use weft_node::rpc::RpcClient;
use weft_node::rpc::api::HashParam;

use crate::support::{TestNode, account_keys, committed_ok, transfer};

const CHAIN: &str = "weft-one";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txs_commit_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::init(&dir.path().join("home"), CHAIN, "solo");
    node.configure(|config| config.consensus.timeout_commit_ms = Some(50));
    node.start();
    node.wait_height(2).await;

    let keys = account_keys(&node.home);
    assert!(keys.len() >= 2, "init funds at least two accounts");
    let (alice, bob) = (&keys[0], &keys[1]);
    let rpc = node.client();
    let bob_before = rpc.account(HashParam(bob.public())).await.unwrap();

    let mut last_height = 0;
    for nonce in 0..3 {
        let tx = transfer(CHAIN, alice, nonce, bob.public(), 100);
        let result = rpc.broadcast_tx_commit(tx.into()).await.unwrap();
        assert!(committed_ok(&result), "{result:?}");
        last_height = result.height.0;
    }
    let alice_now = rpc.account(HashParam(alice.public())).await.unwrap();
    assert_eq!(alice_now.nonce.0, 3);
    let bob_now = rpc.account(HashParam(bob.public())).await.unwrap();
    assert_eq!(bob_now.balance.0, bob_before.balance.0 + 300);

    // A replayed nonce is refused with its documented code (5: nonce too low).
    let replay = transfer(CHAIN, alice, 0, bob.public(), 101);
    let refused = rpc.broadcast_tx_sync(replay.into()).await.unwrap();
    assert_eq!(refused.code, 5, "{refused:?}");

    let block = node.block(last_height).await;
    assert!(
        node.stop(),
        "the node did not stop cleanly:\n{}",
        node.log_tail()
    );

    node.start();
    node.wait_height(last_height + 1).await;
    let again = node.block(last_height).await;
    assert_eq!(
        block.block_id, again.block_id,
        "block {last_height} changed across a restart"
    );
    let alice_after = node
        .client()
        .account(HashParam(alice.public()))
        .await
        .unwrap();
    assert_eq!(alice_after, alice_now);
    assert!(node.stop());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_empty_blocks_every_height_waits_for_txs() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::init(&dir.path().join("home"), "weft-lazy", "lazy");
    node.configure(|config| {
        config.consensus.timeout_commit_ms = Some(20);
        config.consensus.create_empty_blocks = false;
    });
    node.start();
    node.wait_rpc().await;
    let keys = account_keys(&node.home);
    for nonce in 0..2 {
        let tx = transfer("weft-lazy", &keys[0], nonce, keys[1].public(), 1);
        let result = node.client().broadcast_tx_commit(tx.into()).await.unwrap();
        assert!(committed_ok(&result), "{result:?}");
        // No empty block came before: the tx's block is the next height.
        assert_eq!(result.height.0, nonce + 1, "{result:?}");
    }
    for height in 1..=2u64 {
        let block = node.block(height).await.block.unwrap();
        assert_eq!(block.data.txs.len(), 1, "block {height}: {block:?}");
    }
    assert!(node.stop());
}
