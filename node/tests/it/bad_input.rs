use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;
use weft_execution::{ChainId, Payload, Transaction};
use weft_node::rpc::RpcClient;
use weft_node::rpc::api::HashParam;
use weft_node::rpc::api::encoding::Int;

use crate::support::{TestNode, account_keys, committed_ok, internal_error, transfer};

const CHAIN: &str = "weft-bad-input";

/// One raw HTTP POST; returns the status code and the body.
fn post(port: u16, body: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let head = format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    let _ = stream.write_all(body);
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

fn error_code(body: &str) -> Option<i64> {
    serde_json::from_str::<Value>(body).ok()?["error"]["code"].as_i64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rpc_input_gets_its_documented_error_and_the_node_keeps_committing() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::init(&dir.path().join("home"), CHAIN, "target");
    node.configure(|config| {
        config.consensus.timeout_commit_ms = Some(50);
        config.mempool.size = 2;
        config.rpc.max_body_bytes = 64 * 1024;
    });
    node.start();
    node.wait_height(2).await;
    let port = node.rpc_port;

    // Malformed JSON, an unknown method, wrong params, an oversized body.
    let (_, body) = post(port, b"{\"jsonrpc\":\"2.0\",\"id\":1,");
    assert_eq!(error_code(&body), Some(-32700), "malformed JSON: {body}");
    let (_, body) = post(
        port,
        br#"{"jsonrpc":"2.0","id":1,"method":"no_such_method"}"#,
    );
    assert_eq!(error_code(&body), Some(-32601), "unknown method: {body}");
    let (_, body) = post(
        port,
        br#"{"jsonrpc":"2.0","id":1,"method":"block","params":{"height":"tall"}}"#,
    );
    assert_eq!(error_code(&body), Some(-32602), "wrong params: {body}");
    let huge = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"broadcast_tx_sync","params":{{"tx":"{}"}}}}"#,
        "ab".repeat(100 * 1024)
    );
    let (status, body) = post(port, huge.as_bytes());
    assert!(
        status == 413 || error_code(&body).is_some(),
        "oversized body: {status} {body}"
    );

    // What is not there: CometBFT's -32603 "Internal error", the reason in `data`.
    let rpc = node.client();
    let above = node.height().await.unwrap() + 1_000;
    let reason = internal_error(rpc.block(Some(Int(above))).await);
    assert!(
        reason.starts_with(&format!(
            "height {above} must be less than or equal to the current blockchain height"
        )),
        "{reason}"
    );
    let unknown = [0x5a; 32];
    let reason = internal_error(rpc.tx(HashParam(unknown), None).await);
    assert_eq!(
        reason,
        format!("tx ({}) not found", hex::encode_upper(unknown))
    );

    // Malformed tx bytes, a bad signature, a wrong chain id, a replayed nonce.
    let keys = account_keys(&node.home);
    let (alice, bob) = (&keys[0], &keys[1]);
    let sync = |tx: Vec<u8>| {
        let rpc = &rpc;
        async move { rpc.broadcast_tx_sync(tx.into()).await.unwrap().code }
    };
    assert_eq!(sync(vec![0x00, 0xff]).await, 1, "malformed tx");
    let mut forged = transfer(CHAIN, alice, 0, bob.public(), 1);
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert_eq!(sync(forged).await, 3, "bad signature");
    let other_chain = Transaction::sign(
        ChainId::new("another-chain").unwrap(),
        &alice.signing_key(),
        0,
        Payload::Transfer {
            to: weft_execution::Address(bob.public()),
            amount: 1,
        },
    );
    assert_eq!(sync(other_chain.encode()).await, 4, "wrong chain id");
    let committed = rpc
        .broadcast_tx_commit(transfer(CHAIN, alice, 0, bob.public(), 1).into())
        .await
        .unwrap();
    assert!(committed_ok(&committed), "{committed:?}");
    assert_eq!(
        sync(transfer(CHAIN, alice, 0, bob.public(), 2)).await,
        5,
        "replayed nonce"
    );

    // A full mempool: future nonces wait in it (the size is 2).
    assert_eq!(sync(transfer(CHAIN, bob, 5, alice.public(), 1)).await, 0);
    assert_eq!(sync(transfer(CHAIN, bob, 6, alice.public(), 1)).await, 0);
    let full = sync(transfer(CHAIN, bob, 7, alice.public(), 1)).await;
    assert_eq!(full, 7, "mempool full");

    // And the node keeps committing.
    let height = node.height().await.unwrap();
    node.wait_height(height + 3).await;
    let account = rpc.account(HashParam(alice.public())).await.unwrap();
    assert_eq!(account.nonce.0, 1);
    assert!(node.stop());
}
