use ed25519_dalek::SigningKey;
use weft_consensus::{Proposal, Round, Signature, Signed, ValueId, Vote};
use weft_execution::{ChainId, MemoryState, Payload, propose};

use super::*;
use crate::block::{Block, Body};

fn code(error: &ErrorObjectOwned) -> i32 {
    error.code()
}

#[test]
fn hashes_must_be_64_hex_characters() {
    let hex64 = "ab".repeat(32);
    let cases: [(&str, Result<[u8; 32], &str>); 6] = [
        (&hex64, Ok([0xab; 32])),
        (&format!("0x{hex64}"), Ok([0xab; 32])),
        (&hex64.to_uppercase(), Ok([0xab; 32])),
        ("abcd", Err("hash must be 64 hex characters, got 4")),
        (&"zz".repeat(32), Err("hash is not hex")),
        ("", Err("hash must be 64 hex characters, got 0")),
    ];
    for (text, expected) in cases {
        match (parse_hash32("hash", text), expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{text}"),
            (Err(got), Err(want)) => assert!(got.starts_with(want), "{text}: {got}"),
            (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn txs_decode_from_hex_or_base64() {
    let cases: [(&str, Result<&[u8], &str>); 9] = [
        ("00ff10", Ok(&[0x00, 0xff, 0x10])),
        ("0x00FF10", Ok(&[0x00, 0xff, 0x10])),
        ("AP8Q", Ok(&[0x00, 0xff, 0x10])),
        ("aGVsbG8=", Ok(b"hello")),
        ("aGVsbG8", Ok(b"hello")),
        ("+/8=", Ok(&[0xfb, 0xff])),
        ("", Err("tx is empty")),
        ("0x0g", Err("tx is not hex")),
        ("aGV$", Err("tx is neither hex nor base64")),
    ];
    for (text, expected) in cases {
        match (decode_tx_text(text), expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{text}"),
            (Err(got), Err(want)) => assert!(got.starts_with(want), "{text}: {got}"),
            (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
        }
    }
    assert!(decode_base64("a").is_err(), "a lone sextet is no byte");
    assert!(decode_base64("aa===").is_err(), "three pads");
}

#[test]
fn params_by_name_or_position_numbers_or_strings() {
    let cases: [(Option<&str>, Option<u64>); 8] = [
        (None, None),
        (Some("{}"), None),
        (Some("[]"), None),
        (Some(r#"{"height":5}"#), Some(5)),
        (Some(r#"{"height":"7"}"#), Some(7)),
        (Some(r#"{"height":null}"#), None),
        (Some("[9]"), Some(9)),
        (Some(r#"{"height":3,"prove":true}"#), Some(3)),
    ];
    for (raw, expected) in cases {
        let got: HeightParams = parse_params(raw).unwrap();
        assert_eq!(got.height, expected, "{raw:?}");
    }
    for raw in [r#"{"height":-1}"#, r#"{"height":"x"}"#, r#"{"height":[]}"#] {
        let error = parse_params::<HeightParams>(Some(raw)).unwrap_err();
        assert_eq!(code(&error), -32602, "{raw}");
        assert!(error.message().contains("integer"), "{raw}: {error:?}");
    }
    let error = parse_params::<HashParams>(None).unwrap_err();
    assert!(
        error.message().contains("missing field `hash`"),
        "{error:?}"
    );
    let got: TxParams = parse_params(Some(r#"["00ff"]"#)).unwrap();
    assert_eq!(got.tx, "00ff");
}

#[test]
fn heights_resolve_within_the_stored_range() {
    let latest = Height(12);
    let one = Height(1);
    assert_eq!(resolve_height(None, latest, 1, one).unwrap(), latest);
    assert_eq!(resolve_height(Some(1), latest, 1, one).unwrap(), Height(1));
    assert_eq!(
        resolve_height(Some(5), latest, 1, Height(5)).unwrap(),
        Height(5)
    );
    let pruned = resolve_height(Some(4), latest, 1, Height(5)).unwrap_err();
    assert_eq!(
        (code(&pruned), pruned.message()),
        (
            NOT_FOUND_CODE,
            "height 4 is not available, lowest height is 5"
        )
    );
    let cases: [(Option<u64>, Height, u64, &str); 4] = [
        (
            Some(99),
            latest,
            1,
            "height 99 is above the latest height 12",
        ),
        (Some(0), latest, 1, "height 0 is below the initial height 1"),
        (None, Height(0), 1, "no block has been committed yet"),
        (Some(1), Height(0), 1, "no block has been committed yet"),
    ];
    for (requested, latest, initial, message) in cases {
        let error = resolve_height(requested, latest, initial, one).unwrap_err();
        assert_eq!((code(&error), error.message()), (NOT_FOUND_CODE, message));
    }
}

#[test]
fn queries_name_new_blocks_or_txs() {
    for query in [
        "tm.event='NewBlock'",
        "tm.event = 'NewBlock'",
        "tm.event=\"NewBlock\"",
        "NewBlock",
    ] {
        assert_eq!(parse_query(query), Ok(Query::NewBlock), "{query}");
    }
    assert_eq!(parse_query("tm.event='Tx'"), Ok(Query::Tx));
    assert!(parse_query("tm.event='Vote'").is_err());
    assert!(parse_query("").is_err());
}

fn sample_block() -> (SealedBlock, Vec<Transaction>) {
    let chain_id = ChainId::new("weft-test").unwrap();
    let txs: Vec<Transaction> = (1..=2)
        .map(|seed| {
            let key = SigningKey::from_bytes(&[seed; 32]);
            let to = Address([0xee; 32]);
            let payload = Payload::Transfer { to, amount: 5 };
            Transaction::sign(chain_id.clone(), &key, 0, payload)
        })
        .collect();
    let proposal = propose(&MemoryState::new(), &txs).unwrap();
    let vote = |value| Signed {
        message: Vote {
            vote_type: VoteType::Precommit,
            height: Height(6),
            round: Round(1),
            value,
            validator: ValidatorId([3; 32]),
        },
        signature: Signature([4; 64]),
    };
    let certificate = CommitCertificate {
        height: Height(6),
        round: Round(1),
        value: ValueId([5; 32]),
        precommits: vec![vote(Some(ValueId([5; 32])))],
    };
    let header = Header::for_tests(Height(7), 1_000);
    let evidence = vec![Evidence::DuplicateVote {
        first: vote(Some(ValueId([5; 32]))),
        second: vote(None),
    }];
    let body = Body {
        txs: txs.clone(),
        access: proposal.access,
        dag: proposal.dag,
        last_commit: Some(certificate),
        evidence,
    };
    (SealedBlock::new(Block::seal(header, body)), txs)
}

#[test]
fn a_block_is_shaped_like_cometbfts() {
    let (block, txs) = sample_block();
    let json = block_json(&block);
    assert_eq!(json["block_id"]["hash"], hex::encode(block.hash.0));
    let header = &json["block"]["header"];
    assert_eq!(header["chain_id"], "weft-test");
    assert_eq!(header["height"], 7);
    assert_eq!(header["time_ms"], 1_000);
    assert_eq!(header["prev_hash"], hex::encode([1; 32]));
    assert_eq!(header["proposer"], hex::encode([2; 32]));
    assert_eq!(header["state_root"], hex::encode([9; 32]));
    assert_eq!(header["validators_hash"], hex::encode([8; 32]));
    assert_eq!(
        header["tx_root"],
        hex::encode(block.block.header.tx_root),
        "sealing fills the roots"
    );
    for field in ["dag_root", "last_commit_hash", "evidence_hash"] {
        assert_eq!(header[field].as_str().map(str::len), Some(64), "{field}");
    }
    let want_txs: Vec<String> = txs.iter().map(|tx| hex::encode(tx.encode())).collect();
    assert_eq!(json["block"]["data"]["txs"], json!(want_txs));
    assert_eq!(json["block"]["num_txs"], 2);
    let commit = &json["block"]["last_commit"];
    assert_eq!(
        (&commit["height"], &commit["round"]),
        (&json!(6), &json!(1))
    );
    assert_eq!(commit["block_id"]["hash"], hex::encode([5; 32]));
    assert_eq!(
        commit["signatures"],
        json!([{ "validator": hex::encode([3; 32]), "signature": hex::encode([4; 64]) }])
    );
    assert_eq!(
        json["block"]["evidence"],
        json!([{
            "type": "duplicate_vote",
            "validator": hex::encode([3; 32]),
            "height": 6,
            "round": 1,
            "vote_type": "precommit",
            "first_value": hex::encode([5; 32]),
            "second_value": null,
        }])
    );
}

#[test]
fn duplicate_proposals_name_both_values() {
    let proposal = |value| Signed {
        message: Proposal {
            height: Height(3),
            round: Round(0),
            value: ValueId([value; 32]),
            pol_round: None,
            proposer: ValidatorId([7; 32]),
        },
        signature: Signature([0; 64]),
    };
    let json = evidence_json(&Evidence::DuplicateProposal {
        first: proposal(1),
        second: proposal(2),
    });
    assert_eq!(json["type"], "duplicate_proposal");
    assert_eq!(json["validator"], hex::encode([7; 32]));
    assert_eq!(json["first_value"], hex::encode([1; 32]));
    assert_eq!(json["second_value"], hex::encode([2; 32]));
}

#[test]
fn events_become_block_or_tx_notifications() {
    let event = NodeEvent::NewBlock {
        height: Height(4),
        hash: [6; 32],
        time_ms: 50,
        txs: Arc::new(vec![(TxHash([1; 32]), 0), (TxHash([2; 32]), 2)]),
    };
    assert_eq!(
        event_notifications(&event, Query::NewBlock),
        vec![json!({
            "height": 4,
            "hash": hex::encode([6; 32]),
            "time_ms": 50,
            "txs": [
                { "hash": hex::encode([1; 32]), "code": 0 },
                { "hash": hex::encode([2; 32]), "code": 2 },
            ],
        })]
    );
    let txs = event_notifications(&event, Query::Tx);
    assert_eq!(txs.len(), 2);
    assert_eq!(
        txs[1],
        json!({
            "hash": hex::encode([2; 32]),
            "height": 4,
            "index": 1,
            "code": 2,
            "log": code_name(2),
        })
    );
}

#[test]
fn malformed_txs_get_the_mempools_code_one() {
    let check = Check::malformed("tx is not hex".into());
    assert_eq!(check.code, 1);
    assert_eq!(
        check.json(),
        json!({ "code": 1, "log": "malformed transaction: tx is not hex", "hash": null })
    );
    assert_eq!(tx_result_json(0), json!({ "code": 0, "log": "ok" }));
}

/// A context over a fresh chain with one funded account, real (peerless) gossip, and no
/// driver: blocks come only from events the test sends.
async fn context(dir: &std::path::Path) -> (Arc<NodeContext>, SigningKey) {
    context_with(dir, |_| {}).await
}

/// [`context`], with `tweak` applied to the config.
async fn context_with(
    dir: &std::path::Path,
    tweak: impl FnOnce(&mut crate::config::Config),
) -> (Arc<NodeContext>, SigningKey) {
    use parking_lot::{Mutex, RwLock};
    use weft_genesis::{ConsensusParams, Genesis, SecretKey};
    use weft_gossip::net::keypair_from_secret;
    use weft_gossip::{GossipConfig, Hooks};

    use crate::config::Config;
    use crate::context::{ConsensusStatus, NodeInfo};
    use crate::mempool::{Mempool, MempoolConfig};
    use crate::metrics::NodeMetrics;

    let (validator, sender) = (SecretKey([1; 32]), SecretKey([2; 32]));
    let genesis = Genesis::new(
        "weft-rpc",
        1_000,
        vec![("v".into(), validator.public(), 10)],
        vec![(sender.public(), 1_000)],
        ConsensusParams::default(),
    )
    .unwrap();
    let chain = Chain::open(dir, genesis, 1).unwrap();
    let (chain_id, validators) = (chain.chain_id().clone(), chain.current_validators().clone());
    let gossip_config = GossipConfig::new(
        keypair_from_secret(&validator),
        chain_id.as_str(),
        validators,
    );
    let (gossip, _gossip_events) = weft_gossip::spawn(gossip_config, Hooks::default())
        .await
        .unwrap();
    let mut config = Config::default();
    config.rpc.laddr = "127.0.0.1:0".into();
    config.rpc.commit_timeout_ms = 300;
    tweak(&mut config);
    let info = NodeInfo {
        moniker: "m".into(),
        chain_id: chain_id.as_str().into(),
        version: "0".into(),
        peer_id: gossip.peer_id().to_string(),
        validator: Some(hex::encode(validator.public())),
        p2p_addrs: Vec::new(),
        rpc_addr: config.rpc.laddr.clone(),
    };
    let ctx = NodeContext {
        config,
        info,
        chain: Arc::new(RwLock::new(chain)),
        mempool: Arc::new(Mutex::new(Mempool::new(MempoolConfig::default(), chain_id))),
        gossip,
        events: broadcast::channel(EVENTS_MAX).0,
        consensus: Arc::new(Mutex::new(ConsensusStatus::default())),
        evidence: Arc::new(Mutex::new(Vec::new())),
        metrics: Arc::new(NodeMetrics::new().unwrap()),
        snapshots: None,
    };
    (Arc::new(ctx), sender.signing_key())
}

fn transfer(key: &SigningKey, nonce: u64) -> Transaction {
    let payload = Payload::Transfer {
        to: Address([0xee; 32]),
        amount: 1,
    };
    Transaction::sign(ChainId::new("weft-rpc").unwrap(), key, nonce, payload)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[expect(
    clippy::await_holding_lock,
    reason = "the held lock stalls the admitter on purpose; the queue has room, so sends never wait"
)]
async fn concurrent_admissions_are_batched_in_arrival_order() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, key) = context(dir.path()).await;
    let admitter = Admitter::spawn(
        Arc::clone(&ctx.chain),
        Arc::clone(&ctx.mempool),
        ctx.gossip.clone(),
        Arc::clone(&ctx.metrics),
    );
    // One sender's nonces 0..200 queued before the task can take them, so several share a
    // batch; nonce 0 first. A forged copy of nonce 100 just before the genuine one is
    // refused alone and holds no nonce.
    let mut forged = transfer(&key, 100);
    forged.signature[7] ^= 1;
    let mut raws: Vec<Vec<u8>> = (0..200).map(|n| transfer(&key, n).encode()).collect();
    raws.insert(100, forged.encode());
    raws.push(b"not a tx".to_vec());
    // The mempool's lock, held while queueing, stalls the admitter's first batch, so the
    // rest wait in the queue together.
    let mut pending = Vec::new();
    {
        let _stall = ctx.mempool.lock();
        for raw in &raws {
            pending.push(admitter.submit(raw.clone()).await.unwrap());
        }
    }
    let mut answers = Vec::new();
    for answer in pending {
        answers.push(answer.await.unwrap());
    }
    for (index, answer) in answers.iter().enumerate() {
        match index {
            100 => {
                assert!(matches!(answer.verdict, Err(AdmitError::BadSignature(_))));
                assert_eq!(answer.hash, Some(forged.hash()));
            }
            201 => {
                assert_eq!(answer.verdict.as_ref().unwrap_err().code(), 1);
                assert_eq!(answer.hash, None);
            }
            _ => {
                let nonce = if index < 100 { index } else { index - 1 } as u64;
                let hash = transfer(&key, nonce).hash();
                assert_eq!(answer.verdict, Ok(hash), "nonce {nonce}");
                assert_eq!(answer.hash, Some(hash));
            }
        }
    }
    assert_eq!(ctx.mempool.lock().len(), 200);
    assert!(
        answers.iter().any(|answer| answer.batch > 1),
        "no batch held more than one tx"
    );
    assert!(
        answers
            .iter()
            .all(|a| a.batch <= crate::admit::ADMIT_BATCH_MAX)
    );
}

/// Named params for a client call.
fn named(pairs: &[(&str, Value)]) -> jsonrpsee::core::params::ObjectParams {
    let mut params = jsonrpsee::core::params::ObjectParams::new();
    for (name, value) in pairs {
        params.insert(name, value).unwrap();
    }
    params
}

/// The code and message of a call's JSON-RPC error.
fn call_error(error: jsonrpsee::core::ClientError) -> (i32, String) {
    match error {
        jsonrpsee::core::ClientError::Call(e) => (e.code(), e.message().to_owned()),
        other => panic!("not a call error: {other}"),
    }
}

/// Waits, with a deadline, until `count` receivers listen for events.
async fn until_listening(ctx: &NodeContext, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while ctx.events.receiver_count() < count {
        assert!(Instant::now() < deadline, "no listener subscribed");
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_answers_over_http_and_websocket() {
    use jsonrpsee::core::client::{ClientT, SubscriptionClientT};
    use jsonrpsee::http_client::HttpClientBuilder;
    use jsonrpsee::rpc_params;
    use jsonrpsee::ws_client::WsClientBuilder;

    let dir = tempfile::tempdir().unwrap();
    let (ctx, key) = context(dir.path()).await;
    let (handle, addr) = serve(Arc::clone(&ctx)).await.unwrap();
    let http = HttpClientBuilder::default()
        .build(format!("http://{addr}"))
        .unwrap();

    let health: Value = http.request("health", rpc_params![]).await.unwrap();
    assert_eq!(health, json!({}));
    let status: Value = http.request("status", rpc_params![]).await.unwrap();
    assert_eq!(status["node_info"]["network"], "weft-rpc");
    assert_eq!(status["node_info"]["rpc_addr"], addr.to_string());
    assert_eq!(status["sync_info"]["latest_block_height"], "0");
    assert_eq!(status["validator_info"]["voting_power"], 10);
    let error = http
        .request::<Value, _>("block", rpc_params![])
        .await
        .unwrap_err();
    assert_eq!(
        call_error(error),
        (NOT_FOUND_CODE, "no block has been committed yet".into())
    );

    let address = hex::encode(key.verifying_key().to_bytes());
    let account: Value = http
        .request("account", named(&[("address", json!(address))]))
        .await
        .unwrap();
    assert_eq!(
        account,
        json!({ "address": address, "balance": 1_000, "nonce": 0 })
    );
    let error = http
        .request::<Value, _>("account", named(&[("address", json!("12"))]))
        .await
        .unwrap_err();
    assert_eq!(
        call_error(error),
        (-32602, "address must be 64 hex characters, got 2".into())
    );

    let first = transfer(&key, 0);
    let hash = hex::encode(first.hash().0);
    let tx = json!(hex::encode(first.encode()));
    let sync: Value = http
        .request("broadcast_tx_sync", named(&[("tx", tx.clone())]))
        .await
        .unwrap();
    assert_eq!(sync, json!({ "code": 0, "log": "", "hash": hash }));
    let again: Value = http
        .request("broadcast_tx_sync", rpc_params![tx])
        .await
        .unwrap();
    assert_eq!((&again["code"], &again["hash"]), (&json!(8), &json!(hash)));
    let garbage: Value = http
        .request("broadcast_tx_async", named(&[("tx", json!("zz"))]))
        .await
        .unwrap();
    assert_eq!(garbage["code"], 1);
    let pending: Value = http
        .request("unconfirmed_txs", named(&[("limit", json!("5"))]))
        .await
        .unwrap();
    assert_eq!(
        (&pending["n_txs"], &pending["total"]),
        (&json!(1), &json!(1))
    );
    let error = http
        .request::<Value, _>("tx", named(&[("hash", json!(hash))]))
        .await
        .unwrap_err();
    assert_eq!(call_error(error).0, NOT_FOUND_CODE);

    // No driver runs, so the commit waits out rpc.commit_timeout_ms.
    let second = hex::encode(transfer(&key, 1).encode());
    let error = http
        .request::<Value, _>("broadcast_tx_commit", named(&[("tx", json!(second))]))
        .await
        .unwrap_err();
    assert_eq!(
        call_error(error),
        (COMMIT_TIMEOUT_CODE, COMMIT_TIMEOUT_MESSAGE.into())
    );

    // A commit that sees its block.
    let third = transfer(&key, 2);
    let third_hash = third.hash();
    let call = {
        let http = http.clone();
        let tx = json!(hex::encode(third.encode()));
        tokio::spawn(async move {
            http.request::<Value, _>("broadcast_tx_commit", named(&[("tx", tx)]))
                .await
        })
    };
    until_listening(&ctx, 1).await;
    let event = NodeEvent::NewBlock {
        height: Height(1),
        hash: [6; 32],
        time_ms: 2_000,
        txs: Arc::new(vec![(third_hash, 0)]),
    };
    // The handler subscribes before it admits; wait for the admission too.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ctx.mempool.lock().contains(&third_hash) {
        assert!(Instant::now() < deadline, "the tx was never admitted");
        tokio::task::yield_now().await;
    }
    ctx.events.send(event.clone()).unwrap();
    let committed = call.await.unwrap().unwrap();
    assert_eq!(
        committed,
        json!({
            "check_tx": { "code": 0, "log": "" },
            "tx_result": { "code": 0, "log": "ok" },
            "hash": hex::encode(third_hash.0),
            "height": 1,
        })
    );

    let ws = WsClientBuilder::default()
        .build(format!("ws://{addr}/websocket"))
        .await
        .unwrap();
    let refused = ws
        .subscribe::<Value, _>("subscribe", rpc_params!["tm.event='Vote'"], "unsubscribe")
        .await;
    assert!(refused.is_err(), "an unsupported query is refused");
    let mut blocks = ws
        .subscribe::<Value, _>(
            "subscribe",
            named(&[("query", json!("tm.event='NewBlock'"))]),
            "unsubscribe",
        )
        .await
        .unwrap();
    until_listening(&ctx, 1).await;
    ctx.events.send(event.clone()).unwrap();
    let notification = blocks.next().await.unwrap().unwrap();
    assert_eq!(
        notification,
        event_notifications(&event, Query::NewBlock)[0]
    );
    blocks.unsubscribe().await.unwrap();
    handle.stop().unwrap();
}

#[test]
fn the_busy_answer_is_well_formed() {
    let (head, body) = BUSY_RESPONSE.split_once("\r\n\r\n").unwrap();
    assert!(
        head.contains(&format!("Content-Length: {}", body.len())),
        "{head}"
    );
    let body: Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["error"]["code"], -32009);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_set_isolated_exists_only_with_rpc_unsafe() {
    use jsonrpsee::core::client::ClientT;
    use jsonrpsee::http_client::HttpClientBuilder;
    use jsonrpsee::rpc_params;

    for unsafe_routes in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (ctx, _) = context_with(dir.path(), |config| {
            config.rpc.unsafe_routes = unsafe_routes
        })
        .await;
        let (handle, addr) = serve(Arc::clone(&ctx)).await.unwrap();
        let http = HttpClientBuilder::default()
            .build(format!("http://{addr}"))
            .unwrap();
        let isolate = named(&[("isolated", json!(true))]);
        let answer = http
            .request::<Value, _>("unsafe_set_isolated", isolate)
            .await;
        let net_info: Value = http.request("net_info", rpc_params![]).await.unwrap();
        if !unsafe_routes {
            let (code, _) = call_error(answer.unwrap_err());
            assert_eq!(code, jsonrpsee::types::error::METHOD_NOT_FOUND_CODE);
            assert!(!ctx.gossip.is_isolated());
            assert_eq!(net_info["isolated"], false);
            handle.stop().unwrap();
            continue;
        }
        assert_eq!(answer.unwrap(), json!({ "isolated": true, "peers": 0 }));
        assert!(ctx.gossip.is_isolated());
        assert_eq!(net_info["isolated"], true);
        let healed: Value = http
            .request("unsafe_set_isolated", rpc_params![false])
            .await
            .unwrap();
        assert_eq!(healed, json!({ "isolated": false, "peers": 0 }));
        assert!(!ctx.gossip.is_isolated());
        for (params, what) in [
            (named(&[]), "missing field `isolated`"),
            (named(&[("isolated", json!("yes"))]), "expected a boolean"),
        ] {
            let error = http
                .request::<Value, _>("unsafe_set_isolated", params)
                .await
                .unwrap_err();
            let (code, message) = call_error(error);
            assert_eq!(code, jsonrpsee::types::error::INVALID_PARAMS_CODE, "{what}");
            assert!(message.contains(what), "{message}");
        }
        assert!(!ctx.gossip.is_isolated());
        handle.stop().unwrap();
    }
}
