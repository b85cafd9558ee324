use serde_json::{Value, json};

use crate::support::{TestNode, account_keys, transfer};

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
    let account = |who: [u8; 32]| json!(hex::encode(who));
    let before = node
        .call("account", &[("address", account(bob.public()))])
        .await
        .unwrap();
    let bob_before = before["balance"].as_u64().unwrap();

    let mut last_height = 0;
    for nonce in 0..3 {
        let tx = transfer(CHAIN, alice, nonce, bob.public(), 100);
        let result = node
            .call("broadcast_tx_commit", &[("tx", Value::String(tx))])
            .await
            .unwrap();
        assert_eq!(result["check_tx"]["code"], 0, "{result}");
        assert_eq!(result["tx_result"]["code"], 0, "{result}");
        last_height = result["height"].as_u64().unwrap();
    }
    let alice_now = node
        .call("account", &[("address", account(alice.public()))])
        .await
        .unwrap();
    assert_eq!(alice_now["nonce"], 3);
    let bob_now = node
        .call("account", &[("address", account(bob.public()))])
        .await
        .unwrap();
    assert_eq!(bob_now["balance"].as_u64().unwrap(), bob_before + 300);

    // A replayed nonce is refused with its documented code (5: nonce too low).
    let replay = transfer(CHAIN, alice, 0, bob.public(), 101);
    let refused = node
        .call("broadcast_tx_sync", &[("tx", Value::String(replay))])
        .await
        .unwrap();
    assert_eq!(refused["code"], 5, "{refused}");

    let block = node
        .call("block", &[("height", json!(last_height))])
        .await
        .unwrap();
    assert!(
        node.stop(),
        "the node did not stop cleanly:\n{}",
        node.log_tail()
    );

    node.start();
    node.wait_height(last_height + 1).await;
    let again = node
        .call("block", &[("height", json!(last_height))])
        .await
        .unwrap();
    assert_eq!(
        block["block_id"], again["block_id"],
        "block {last_height} changed across a restart"
    );
    let alice_after = node
        .call("account", &[("address", account(alice.public()))])
        .await
        .unwrap();
    assert_eq!(alice_after["nonce"], 3);
    assert_eq!(alice_after["balance"], alice_now["balance"]);
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
        let result = node
            .call("broadcast_tx_commit", &[("tx", Value::String(tx))])
            .await
            .unwrap();
        assert_eq!(result["tx_result"]["code"], 0, "{result}");
        // No empty block came before: the tx's block is the next height.
        assert_eq!(result["height"].as_u64(), Some(nonce + 1), "{result}");
    }
    for height in 1..=2u64 {
        let block = node
            .call("block", &[("height", json!(height))])
            .await
            .unwrap();
        assert_eq!(block["block"]["num_txs"], 1, "block {height}: {block}");
    }
    assert!(node.stop());
}
