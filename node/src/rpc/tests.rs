use ed25519_dalek::SigningKey;
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use serde_json::Value;
use weft_consensus::{Proposal, Round, Signature, Signed, Validator, ValueId, Vote};
use weft_execution::{ChainId, MemoryState, Payload, propose};

use super::api::encoding::{Base64, Hash};
use super::api::{RpcClient as _, UnsafeRpcClient};
use super::*;
use crate::block::{Block, Body};
use crate::context::EVENTS_MAX;

#[test]
fn heights_resolve_within_the_stored_range_with_cometbfts_errors() {
    let resolve = |requested, latest, initial, earliest| {
        resolve_height(requested, Height(latest), initial, Height(earliest))
            .map(|h| h.0)
            .map_err(|e| (e.code(), e.data().map(|d| d.get().to_owned())))
    };
    assert_eq!(resolve(None, 9, 1, 1), Ok(9));
    assert_eq!(
        resolve(Some(0), 9, 1, 1),
        Ok(9),
        "0 is the latest, as in CometBFT"
    );
    assert_eq!(resolve(Some(4), 9, 1, 1), Ok(4));
    assert_eq!(
        resolve(Some(10), 9, 1, 1),
        Err((
            -32603,
            Some(
                r#""height 10 must be less than or equal to the current blockchain height 9""#
                    .into()
            )
        ))
    );
    assert_eq!(
        resolve(Some(3), 9, 1, 5),
        Err((
            -32603,
            Some(r#""height 3 is not available, lowest height is 5""#.into())
        ))
    );
    assert_eq!(
        resolve(Some(2), 9, 4, 1),
        Err((
            -32603,
            Some(r#""height 2 is not available, lowest height is 4""#.into())
        ))
    );
    assert!(resolve(None, 0, 1, 1).is_err(), "nothing committed yet");
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
    let header = WeftHeader::for_tests(Height(7), 1_000);
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

/// A set of one validator, id `[3; 32]`, and one that did not sign, `[9; 32]`.
fn two_validators() -> ValidatorSet {
    ValidatorSet::new([
        Validator {
            id: ValidatorId([3; 32]),
            power: 10,
        },
        Validator {
            id: ValidatorId([9; 32]),
            power: 5,
        },
    ])
    .unwrap()
}

#[test]
fn a_block_is_shaped_like_cometbfts() {
    let (block, txs) = sample_block();
    let set = two_validators();
    let json = serde_json::to_value(convert::block(&block, Some(&set), [0xcc; 32])).unwrap();
    let upper = |bytes: &[u8]| hex::encode_upper(bytes);
    assert_eq!(json["block_id"]["hash"], upper(&block.hash.0));
    assert_eq!(
        json["block_id"]["parts"],
        json!({"total": 1, "hash": upper(&block.hash.0)})
    );
    let header = &json["block"]["header"];
    assert_eq!(header["version"], json!({"block": "11", "app": "1"}));
    assert_eq!(header["chain_id"], "weft-test");
    assert_eq!(header["height"], "7", "heights are strings");
    assert_eq!(header["time"], "1970-01-01T00:00:01Z");
    assert_eq!(header["last_block_id"]["hash"], upper(&[1; 32]));
    assert_eq!(header["app_hash"], upper(&[9; 32]), "the state root");
    assert_eq!(header["validators_hash"], upper(&[8; 32]));
    assert_eq!(
        header["data_hash"],
        upper(&block.block.header.tx_root),
        "the tx root"
    );
    assert_eq!(header["dag_root"], upper(&block.block.header.dag_root));
    assert_eq!(header["consensus_hash"], upper(&[0xcc; 32]));
    assert_eq!(header["last_results_hash"], "");
    assert_eq!(
        header["proposer_address"],
        json!(api::encoding::address_of(&[2; 32]))
    );
    assert_eq!(header["proposer_address"].as_str().map(str::len), Some(40));
    let want_txs: Vec<String> = txs
        .iter()
        .map(|tx| api::encoding::encode_base64(&tx.encode()))
        .collect();
    assert_eq!(json["block"]["data"]["txs"], json!(want_txs));
    let commit = &json["block"]["last_commit"];
    assert_eq!(
        (&commit["height"], &commit["round"]),
        (&json!("6"), &json!(1))
    );
    assert_eq!(commit["block_id"]["hash"], upper(&[5; 32]));
    assert_eq!(
        commit["signatures"],
        json!([
            {
                "block_id_flag": 2,
                "validator_address": api::encoding::address_of(&[3; 32]),
                "timestamp": "1970-01-01T00:00:01Z",
                "signature": api::encoding::encode_base64(&[4; 64]),
            },
            {
                "block_id_flag": 1,
                "validator_address": "",
                "timestamp": "0001-01-01T00:00:00Z",
                "signature": null,
            },
        ]),
        "one signature per member of the set, absent where it did not sign"
    );
    assert_eq!(json["block"]["evidence"]["evidence"], json!([]));
    assert_eq!(
        json["block"]["evidence"]["weft"],
        json!([{
            "type": "duplicate_vote",
            "validator_address": api::encoding::address_of(&[3; 32]),
            "validator_pub_key": upper(&[3; 32]),
            "height": "6",
            "round": 1,
            "vote_type": "precommit",
            "first_value": upper(&[5; 32]),
            "second_value": "",
        }])
    );
    // It reads back as the typed result.
    let typed: BlockResult = serde_json::from_value(json).unwrap();
    assert_eq!(typed.block.unwrap().data.txs.len(), 2);
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
    let evidence = convert::evidence(&Evidence::DuplicateProposal {
        first: proposal(1),
        second: proposal(2),
    });
    assert_eq!(evidence.kind, "duplicate_proposal");
    assert_eq!(evidence.validator_pub_key.0, vec![7; 32]);
    assert_eq!(evidence.first_value, Hash::some([1; 32]));
    assert_eq!(evidence.second_value, Hash::some([2; 32]));
}

#[test]
fn multiaddrs_become_cometbfts_tcp_addresses() {
    assert_eq!(
        convert::tcp_address("/ip4/127.0.0.1/tcp/26656"),
        "tcp://127.0.0.1:26656"
    );
    assert_eq!(
        convert::tcp_address(
            "/ip6/::1/tcp/5/p2p/12D3KooWFcM914CKsX9x4Vtvim6RdLUwbRaRK9BdenwwnsLUN5gb"
        ),
        "tcp://[::1]:5"
    );
    assert_eq!(convert::tcp_address("not an address"), "not an address");
    let key = libp2p::identity::Keypair::ed25519_from_bytes([5; 32]).unwrap();
    let peer = key.public().to_peer_id();
    let ed = key.public().try_into_ed25519().unwrap().to_bytes();
    assert_eq!(convert::peer_key(&peer), Some(ed));
}

/// A sealed block at height 1 holding `txs`, for events.
fn block_of(txs: Vec<Transaction>) -> SealedBlock {
    let proposal = propose(&MemoryState::new(), &txs).unwrap();
    let header = WeftHeader::for_tests(Height(1), 2_000);
    let body = Body {
        txs,
        access: proposal.access,
        dag: proposal.dag,
        last_commit: None,
        evidence: Vec::new(),
    };
    SealedBlock::new(Block::seal(header, body))
}

fn new_block(txs: Vec<Transaction>, codes: &[u8]) -> NodeEvent {
    let block = block_of(txs.clone());
    NodeEvent::NewBlock {
        height: Height(1),
        hash: block.hash.0,
        time_ms: 2_000,
        txs: Arc::new(
            txs.iter()
                .map(|tx| tx.hash())
                .zip(codes.iter().copied())
                .collect(),
        ),
        block,
    }
}

fn client(addr: SocketAddr) -> HttpClient {
    HttpClientBuilder::default()
        .build(format!("http://{addr}"))
        .unwrap()
}

/// The code and `data` of a call's JSON-RPC error.
fn call_error(error: jsonrpsee::core::ClientError) -> (i32, String) {
    match error {
        jsonrpsee::core::ClientError::Call(e) => (
            e.code(),
            e.data()
                .and_then(|d| serde_json::from_str::<String>(d.get()).ok())
                .unwrap_or_else(|| e.message().to_owned()),
        ),
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
async fn the_server_answers_in_cometbfts_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, key) = context(dir.path()).await;
    let (handle, addr) = serve(Arc::clone(&ctx)).await.unwrap();
    let http = client(addr);

    assert_eq!(http.health().await.unwrap(), Empty {});
    let status = http.status().await.unwrap();
    assert_eq!(status.node_info.network, "weft-rpc");
    assert_eq!(status.node_info.id.len(), 40, "CometBFT's node id");
    assert_eq!(status.node_info.peer_id, ctx.info.peer_id);
    assert_eq!(status.node_info.other.rpc_address, format!("tcp://{addr}"));
    assert_eq!(status.sync_info.latest_block_height, Int(0));
    assert_eq!(status.sync_info.latest_block_hash, Hash(None));
    assert_eq!(status.validator_info.voting_power, Int(10));
    assert_eq!(status.validator_info.address.0.len(), 20);
    let (code, data) = call_error(http.block(None).await.unwrap_err());
    assert_eq!(code, INTERNAL_ERROR_CODE);
    assert!(data.contains("no block has been committed yet"), "{data}");

    let address = HashParam(key.verifying_key().to_bytes());
    let account = http.account(address).await.unwrap();
    assert_eq!((account.balance, account.nonce), (Int(1_000), Int(0)));

    // check_tx gives the verdict and admits nothing.
    let first = transfer(&key, 0);
    let checked = http.check_tx(TxText::from(first.encode())).await.unwrap();
    assert_eq!(checked.code, 0, "{}", checked.log);
    assert_eq!(ctx.mempool.lock().len(), 0);
    let sync = http
        .broadcast_tx_sync(TxText::from(first.encode()))
        .await
        .unwrap();
    assert_eq!((sync.code, sync.hash), (0, Hash::some(first.hash().0)));
    let again = http
        .broadcast_tx_sync(TxText::from(first.encode()))
        .await
        .unwrap();
    assert_eq!(again.code, 8, "already known");
    // Bytes that are no tx still get a hash (blake3 of them), never null.
    let garbage = http
        .broadcast_tx_async(TxText::from(b"not a tx".to_vec()))
        .await
        .unwrap();
    assert_eq!(garbage.code, 1);
    assert_eq!(
        garbage.hash,
        Hash::some(*blake3::hash(b"not a tx").as_bytes())
    );
    let pending = http.unconfirmed_txs(Some(Int(5))).await.unwrap();
    assert_eq!((pending.n_txs, pending.total), (Int(1), Int(1)));
    assert_eq!(pending.txs, Some(vec![Base64(first.encode())]));
    let (code, data) = call_error(http.tx(HashParam(first.hash().0), None).await.unwrap_err());
    assert_eq!(code, INTERNAL_ERROR_CODE);
    assert!(data.contains("not found"), "{data}");

    // No driver runs, so a commit waits out rpc.commit_timeout_ms.
    let second = transfer(&key, 1);
    let error = http
        .broadcast_tx_commit(TxText::from(second.encode()))
        .await
        .unwrap_err();
    let (code, data) = call_error(error);
    assert_eq!(code, INTERNAL_ERROR_CODE);
    assert!(data.contains(&hex::encode_upper(second.hash().0)), "{data}");

    // A commit that sees its block.
    let third = transfer(&key, 2);
    let event = new_block(vec![third.clone()], &[0]);
    let listening = ctx.events.receiver_count();
    let call = {
        let http = http.clone();
        let tx = TxText::from(third.encode());
        tokio::spawn(async move { http.broadcast_tx_commit(tx).await })
    };
    until_listening(&ctx, listening + 1).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ctx.mempool.lock().contains(&third.hash()) {
        assert!(Instant::now() < deadline, "the tx was never admitted");
        tokio::task::yield_now().await;
    }
    ctx.events.send(event).unwrap();
    let committed = call.await.unwrap().unwrap();
    assert_eq!(committed.height, Int(1));
    assert_eq!(committed.hash, Hash::some(third.hash().0));
    assert_eq!((committed.check_tx.code, committed.tx_result.code), (0, 0));
    assert_eq!(committed.tx_result.log, "ok");
    handle.stop().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_get_cometbfts_event_envelope() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, key) = context(dir.path()).await;
    let (handle, addr) = serve(Arc::clone(&ctx)).await.unwrap();
    let rpc = addr.to_string();

    let refused = EventStream::subscribe(&rpc, "tm.event='Tx' AND").await;
    assert!(
        matches!(refused, Err(EventStreamError::Refused(_))),
        "a bad query is refused"
    );
    let mut blocks = EventStream::subscribe(&rpc, "tm.event='NewBlock'")
        .await
        .unwrap();
    let mut second_tx = EventStream::subscribe(&rpc, "tm.event = 'Tx' AND tx.height >= 1")
        .await
        .unwrap();
    let txs = vec![transfer(&key, 0), transfer(&key, 1)];
    // The renderer and both connections listen; send only then.
    let deadline = Instant::now() + Duration::from_secs(10);
    let event = new_block(txs.clone(), &[0, 2]);
    let first = loop {
        ctx.events.send(event.clone()).unwrap();
        match tokio::time::timeout(Duration::from_millis(200), blocks.next()).await {
            Ok(envelope) => break envelope.unwrap(),
            Err(_) => assert!(Instant::now() < deadline, "no NewBlock event came"),
        }
    };
    assert_eq!(
        first.query, "tm.event='NewBlock'",
        "the query as subscribed"
    );
    assert_eq!(first.data.kind, "tendermint/event/NewBlock");
    assert_eq!(first.events["tm.event"], vec!["NewBlock".to_owned()]);
    assert_eq!(first.events["block.height"], vec!["1".to_owned()]);
    let block: NewBlockEvent = serde_json::from_value(first.data.value).unwrap();
    assert_eq!(block.block.header.height, Int(1));
    assert_eq!(block.block.data.txs.len(), 2);
    assert_eq!(
        block
            .result_finalize_block
            .tx_results
            .iter()
            .map(|r| r.code)
            .collect::<Vec<_>>(),
        vec![0, 2]
    );
    let tx = second_tx.next_tx().await.unwrap();
    assert_eq!((tx.height, tx.index, tx.result.code), (Int(1), 0, 0));
    assert_eq!(tx.tx, Base64(txs[0].encode()));
    let tx = second_tx.next_tx().await.unwrap();
    assert_eq!((tx.index, tx.result.code), (1, 2));
    handle.stop().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_set_isolated_exists_only_with_rpc_unsafe() {
    for unsafe_routes in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (ctx, _) = context_with(dir.path(), |config| {
            config.rpc.unsafe_routes = unsafe_routes
        })
        .await;
        let (handle, addr) = serve(Arc::clone(&ctx)).await.unwrap();
        let http = client(addr);
        let answer = http.unsafe_set_isolated(true).await;
        let net_info = http.net_info().await.unwrap();
        if !unsafe_routes {
            let (code, _) = call_error(answer.unwrap_err());
            assert_eq!(code, jsonrpsee::types::error::METHOD_NOT_FOUND_CODE);
            assert!(!ctx.gossip.is_isolated());
            assert!(!net_info.isolated);
            handle.stop().unwrap();
            continue;
        }
        assert_eq!(
            answer.unwrap(),
            IsolatedResult {
                isolated: true,
                peers: Int(0)
            }
        );
        assert!(ctx.gossip.is_isolated());
        assert!(net_info.isolated);
        let healed = http.unsafe_set_isolated(false).await.unwrap();
        assert!(!healed.isolated);
        assert!(!ctx.gossip.is_isolated());
        use jsonrpsee::core::client::ClientT as _;
        for (params, what) in [
            // An empty object goes as no params at all.
            (json!({}), "No more params"),
            (json!({"isolated": "yes"}), "expected a boolean"),
        ] {
            let mut object = jsonrpsee::core::params::ObjectParams::new();
            for (k, v) in params.as_object().unwrap() {
                object.insert(k, v).unwrap();
            }
            let error = http
                .request::<Value, _>("unsafe_set_isolated", object)
                .await
                .unwrap_err();
            let (code, message) = call_error(error);
            assert_eq!(code, jsonrpsee::types::error::INVALID_PARAMS_CODE, "{what}");
            assert!(message.contains(what), "{message}");
        }
        handle.stop().unwrap();
    }
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
