use std::os::unix::fs::PermissionsExt;

use serde_json::json;

use super::*;
use crate::config::{P2pConfig, RpcConfig};
use crate::rpc::api::encoding::{Hash, HexBytes, Int};
use crate::rpc::api::types::{
    BroadcastCommitResult, BroadcastResult, CheckTxResult, ExecTxResult, StatusResult,
};

fn init_args(home: &Path, accounts: usize) -> InitArgs {
    InitArgs {
        single_validator: true,
        chain_id: "weft-test".into(),
        accounts,
        balance: 5_000,
        ..InitArgs::joining(home, "node-0")
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_writes_a_home_that_loads() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("home");
    let summary = init(&init_args(&root, 3)).unwrap();
    let home = Home::new(&root);

    let config = Config::load(&home.config()).unwrap();
    assert_eq!(config.moniker, "node-0");
    assert!(home.data(&config).is_dir());
    assert_eq!(config.p2p.listen, P2pConfig::default().listen, "loopback");

    let validator = read_key_file(&home.validator_key()).unwrap();
    read_key_file(&home.node_key()).unwrap();
    for path in [home.validator_key(), home.node_key()] {
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
    assert_eq!(summary.validator_public, validator.public());

    let genesis = Genesis::load(&home.genesis()).unwrap();
    assert_eq!(genesis.chain_id, "weft-test");
    assert_eq!(genesis.validators.len(), 1);
    assert_eq!(
        genesis.validators[0].public_key().unwrap(),
        validator.public()
    );
    assert_eq!(genesis.validators[0].power, INIT_VALIDATOR_POWER);
    assert_eq!(genesis.accounts.len(), 3);
    assert_eq!(summary.accounts.len(), 3);
    for (i, (path, address)) in summary.accounts.iter().enumerate() {
        assert_eq!(*path, account_key_path(&home, i));
        assert_eq!(mode(path), 0o600);
        assert_eq!(read_key_file(path).unwrap().public(), *address);
        let funded = &genesis.accounts[i];
        assert_eq!(funded.address, hex::encode(address));
        assert_eq!(funded.balance, 5_000);
    }
    assert!(summary.to_string().contains("weft-test"));
}

#[test]
fn init_for_a_network_makes_keys_and_no_genesis_and_start_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("operator");
    let summary = init(&InitArgs::joining(&root, "op-1")).unwrap();
    let home = Home::new(&root);
    assert!(!home.genesis().exists());
    assert!(summary.chain_id.is_none() && summary.accounts.is_empty());
    let validator = read_key_file(&home.validator_key()).unwrap();
    assert_eq!(summary.validator_public, validator.public());
    assert_eq!(mode(&home.node_key()), 0o600);
    let config = Config::load(&home.config()).unwrap();
    assert_eq!(config.p2p.listen, JOIN_P2P_LISTEN);
    assert_eq!(
        config.rpc.laddr,
        RpcConfig::default().laddr,
        "RPC stays on loopback"
    );
    assert!(!config.rpc.unsafe_routes);
    let text = summary.to_string();
    assert!(text.contains("weft keys show --home"), "{text}");

    let error = prepare_start(&StartArgs {
        home: root.clone(),
        ..StartArgs::default()
    })
    .unwrap_err();
    assert!(matches!(error, CliError::NoGenesis { .. }), "{error}");
    assert!(error.to_string().contains("weft genesis hash"), "{error}");

    // What the operator sends: public values and a ready peer entry.
    let shown = keys(KeysCommand::Show {
        key: None,
        home: Some(root.clone()),
        host: Some("val-1.example.org".into()),
        port: None,
        json: true,
    })
    .unwrap();
    let card: OperatorCard = serde_json::from_str(&shown).unwrap();
    assert_eq!(card.name, "op-1");
    assert_eq!(card.pub_key, hex::encode(validator.public()));
    assert_eq!(
        card.persistent_peer.unwrap(),
        format!("/dns4/val-1.example.org/tcp/26656/p2p/{}", summary.peer_id)
    );
    assert!(
        !shown.contains(&hex::encode(validator.0)),
        "the secret leaked"
    );
    let text = keys(KeysCommand::Show {
        key: None,
        home: Some(root),
        host: None,
        port: Some(7),
        json: false,
    })
    .unwrap();
    assert!(
        text.contains("weft genesis add-validator --name op-1"),
        "{text}"
    );
}

/// The coordinator's side: a genesis from cards, each bad input refused by name, and the
/// hash every operator compares.
#[test]
fn a_coordinator_assembles_a_genesis_from_cards() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("genesis.json");
    let file = GenesisFile {
        genesis: path.clone(),
        home: None,
    };
    let run = |command: GenesisCommand| genesis(command).map_err(|e| e.to_string());
    let new = || GenesisCommand::New {
        file: file.clone(),
        chain_id: ChainId::new("weft-ceremony").unwrap(),
        time: Some("2026-12-24T00:00:00Z".into()),
        initial_height: 1,
        timeouts: Timeouts::Fast,
    };
    run(new()).unwrap();
    assert!(run(new()).unwrap_err().contains("exists already"));
    let error = run(GenesisCommand::Hash { file: file.clone() }).unwrap_err();
    assert!(error.contains("no validators"), "{error}");

    let mut cards = Vec::new();
    for i in 0..3 {
        let home = dir.path().join(format!("op{i}"));
        init(&InitArgs::joining(&home, &format!("op-{i}"))).unwrap();
        let card = dir.path().join(format!("op{i}.json"));
        let json = keys(KeysCommand::Show {
            key: None,
            home: Some(home),
            host: Some(format!("10.0.0.{i}")),
            port: None,
            json: true,
        })
        .unwrap();
        std::fs::write(&card, json).unwrap();
        cards.push(card);
    }
    let add = |from: &Path, name: Option<&str>, power: u64| GenesisCommand::AddValidator {
        file: file.clone(),
        pubkey: None,
        from: Some(from.to_owned()),
        name: name.map(str::to_owned),
        power,
    };
    for card in &cards {
        run(add(card, None, 10)).unwrap();
    }
    let refusals = [
        (add(&cards[0], Some("again"), 10), "same pub_key"),
        (add(&cards[1], Some("op-0"), 10), "appears twice"),
        (
            add(&dir.path().join("op0/config/validator_key.json"), None, 10),
            "secret",
        ),
        (
            GenesisCommand::AddValidator {
                file: file.clone(),
                pubkey: Some("abc".into()),
                from: None,
                name: Some("short".into()),
                power: 1,
            },
            "not 64 hex digits",
        ),
        (
            GenesisCommand::AddValidator {
                file: file.clone(),
                pubkey: Some(hex::encode(SecretKey([9; 32]).public())),
                from: None,
                name: Some("zero".into()),
                power: 0,
            },
            "zero power",
        ),
        (
            GenesisCommand::AddValidator {
                file: file.clone(),
                pubkey: Some(hex::encode(SecretKey([9; 32]).public())),
                from: None,
                name: Some("whale".into()),
                power: u64::MAX,
            },
            "total voting power",
        ),
        (
            GenesisCommand::AddAccount {
                file: file.clone(),
                account: AccountKey {
                    address: Some("xyz".into()),
                    from: None,
                },
                balance: 1,
            },
            "address is 3 characters",
        ),
        (
            GenesisCommand::SetAuthority {
                file: file.clone(),
                account: AccountKey {
                    address: Some("00".repeat(31)),
                    from: None,
                },
            },
            "62 characters",
        ),
    ];
    let before = std::fs::read(&path).unwrap();
    for (command, expected) in refusals {
        let error = run(command).unwrap_err();
        assert!(error.contains(expected), "{expected}: {error}");
        assert!(
            error.contains("genesis") || error.contains("secret"),
            "{error}"
        );
    }
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "a refusal changed the file"
    );

    run(GenesisCommand::AddAccount {
        file: file.clone(),
        account: AccountKey {
            address: Some(hex::encode(SecretKey([4; 32]).public())),
            from: None,
        },
        balance: 500,
    })
    .unwrap();
    let authority = hex::encode(SecretKey([5; 32]).public());
    run(GenesisCommand::SetAuthority {
        file: file.clone(),
        account: AccountKey {
            address: Some(authority.clone()),
            from: None,
        },
    })
    .unwrap();
    let genesis = weft_genesis::Genesis::load(&path).unwrap();
    assert_eq!(
        genesis.validator_authority.as_deref(),
        Some(authority.as_str())
    );
    let valid = run(GenesisCommand::Validate { file: file.clone() }).unwrap();
    assert!(valid.contains("3 validators (total power 30)"), "{valid}");
    let hash = run(GenesisCommand::Hash { file: file.clone() }).unwrap();
    assert_eq!(
        hash.trim(),
        hex::encode(Genesis::load(&path).unwrap().hash())
    );
    let shown = run(GenesisCommand::Show { file }).unwrap();
    assert!(
        shown.contains("op-2") && shown.contains("33.33%"),
        "{shown}"
    );
    assert!(shown.contains(hash.trim()), "{shown}");
}

#[test]
fn init_refuses_an_initialised_home_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    init(&init_args(dir.path(), 1)).unwrap();
    let home = Home::new(dir.path());
    let genesis_before = std::fs::read(home.genesis()).unwrap();

    let error = init(&init_args(dir.path(), 1)).unwrap_err();
    assert!(matches!(error, CliError::HomeExists { .. }), "{error}");
    assert!(error.to_string().contains("config.toml"), "{error}");
    assert_eq!(std::fs::read(home.genesis()).unwrap(), genesis_before);
}

#[test]
fn init_refuses_bad_input_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, InitArgs)> = vec![
        (
            "chain id",
            InitArgs {
                chain_id: "bad chain".into(),
                ..init_args(dir.path(), 1)
            },
        ),
        ("accounts", init_args(dir.path(), ACCOUNTS_MAX + 1)),
        (
            "balances",
            InitArgs {
                balance: u64::MAX,
                ..init_args(dir.path(), 2)
            },
        ),
    ];
    for (what, args) in cases {
        let error = init(&args).unwrap_err();
        assert!(
            !Home::new(dir.path()).config_dir().exists(),
            "{what}: {error}"
        );
    }
}

#[test]
fn keys_new_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.json");
    let key = keys_new(&path).unwrap();
    assert_eq!(mode(&path), 0o600);
    let error = keys_new(&path).unwrap_err();
    assert!(error.to_string().contains("key.json"), "{error}");
    assert_eq!(read_key_file(&path).unwrap().0, key.0);
    let shown = KeySummary::new(&key, &path).to_string();
    assert!(shown.contains(&hex::encode(key.public())), "{shown}");
    assert!(shown.contains("12D3KooW"), "{shown}");
}

#[test]
fn start_names_the_missing_or_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let args = |overrides: StartArgs| StartArgs {
        home: dir.path().to_owned(),
        ..overrides
    };
    let error = prepare_start(&args(StartArgs::default())).unwrap_err();
    assert!(error.to_string().contains("config.toml"), "{error}");

    init(&init_args(dir.path(), 1)).unwrap();
    let (_, config) = prepare_start(&args(StartArgs {
        rpc_laddr: Some("127.0.0.1:0".into()),
        persistent_peers: Some(vec![String::new()]),
        timeout_commit_ms: Some(50),
        threads: Some(2),
        rpc_unsafe: true,
        ..StartArgs::default()
    }))
    .unwrap();
    assert_eq!(config.rpc.laddr, "127.0.0.1:0");
    assert!(config.rpc.unsafe_routes);
    assert!(config.p2p.persistent_peers.is_empty());
    assert_eq!(config.consensus.timeout_commit_ms, Some(50));
    assert_eq!(config.execution.threads, 2);

    let error = prepare_start(&args(StartArgs {
        rpc_laddr: Some("nowhere".into()),
        ..StartArgs::default()
    }))
    .unwrap_err();
    assert!(error.to_string().contains("rpc.laddr"), "{error}");

    let (_, config) = prepare_start(&args(StartArgs {
        state_sync: true,
        trust_height: Some(20),
        trust_hash: Some("ab".repeat(32)),
        ..StartArgs::default()
    }))
    .unwrap();
    assert!(config.statesync.enable);
    assert_eq!(config.statesync.anchor().unwrap(), Some((20, [0xab; 32])));
    let error = prepare_start(&args(StartArgs {
        state_sync: true,
        trust_height: Some(20),
        trust_hash: Some("not hex".into()),
        ..StartArgs::default()
    }))
    .unwrap_err();
    assert!(
        error.to_string().contains("statesync.trust_hash"),
        "{error}"
    );

    let home = Home::new(dir.path());
    std::fs::set_permissions(home.node_key(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let error = prepare_start(&args(StartArgs::default())).unwrap_err();
    assert!(error.to_string().contains("node_key.json"), "{error}");

    std::fs::write(home.genesis(), "{}").unwrap();
    let error = prepare_start(&args(StartArgs::default())).unwrap_err();
    assert!(error.to_string().contains("genesis.json"), "{error}");
}

fn parse(line: &str) -> Result<Command, clap::Error> {
    Cli::try_parse_from(line.split_whitespace()).map(|cli| cli.command)
}

#[test]
fn every_subcommand_parses() {
    let to = "ab".repeat(32);
    let accepted = [
        "weft init --home h".to_owned(),
        "weft init --home h --single-validator --chain-id c --moniker m --accounts 0 --balance 7"
            .into(),
        "weft init --home h --accounts 2 --p2p-listen /ip4/0.0.0.0/tcp/1".into(),
        "weft genesis new --chain-id c".into(),
        "weft genesis new --home h --chain-id c --time 2026-01-01T00:00:00Z --timeouts fast".into(),
        format!("weft genesis add-validator --genesis g.json --pubkey {to} --name v --power 3"),
        "weft genesis add-validator --from card.json".into(),
        format!("weft genesis add-account --pubkey-less --address {to} --balance 1")
            .replace(" --pubkey-less", ""),
        "weft genesis add-account --from card.json --balance 1".into(),
        "weft genesis validate --home h".into(),
        "weft genesis hash".into(),
        "weft genesis show --genesis g.json".into(),
        "weft keys show --home h --host a.example --port 26656 --json".into(),
        "weft start --home h".into(),
        "weft start --home h --p2p-listen /ip4/127.0.0.1/tcp/1 --rpc-laddr 127.0.0.1:2 \
         --metrics-laddr 127.0.0.1:3 --persistent-peers a,b --gossip plain --log-level debug \
         --timeout-commit-ms 5 --threads 2 --rpc-unsafe"
            .into(),
        "weft keys new --out k.json".into(),
        "weft keys show --key k.json".into(),
        "weft status".into(),
        "weft status --rpc http://127.0.0.1:1 --json".into(),
        format!("weft tx transfer --key k --to {to} --amount 3"),
        format!(
            "weft tx transfer --key k --to {to} --amount 3 --rpc http://x:1 --chain-id c --async"
        ),
        "weft tx register-name --key k --name alice".into(),
        "weft tx pay-name --key k --name alice --amount 9".into(),
        format!(
            "weft tx validator-update --key authority.json --pubkey {} --power 0",
            hex::encode(SecretKey([4; 32]).public())
        ),
        format!("weft genesis set-authority --genesis g.json --address {to}"),
        "weft genesis set-authority --from card.json".into(),
        "weft version".into(),
    ];
    for line in &accepted {
        if let Err(e) = parse(line) {
            panic!("{line}: {e}");
        }
    }
    let refused = [
        "weft init".to_owned(),
        "weft init --home h --chain-id c".into(),
        "weft genesis new".into(),
        "weft genesis add-validator --name v".into(),
        format!("weft genesis add-validator --pubkey {to}"),
        "weft genesis add-account --address x".into(),
        "weft genesis hash --home h --genesis g.json".into(),
        "weft keys show".into(),
        "weft keys show --key k --home h".into(),
        "weft start --home h --gossip loud".into(),
        "weft start --home h --threads many".into(),
        "weft start --home h --rpc-unsafe yes".into(),
        "weft keys new".into(),
        "weft tx transfer --key k --to 00 --amount 3".into(),
        "weft tx transfer --key k --to zz --amount 3".into(),
        "weft tx register-name --key k --name Alice".into(),
        // Not a curve point; a key file where the public key belongs; no power.
        format!(
            "weft tx validator-update --key k --pubkey 02{} --power 1",
            "00".repeat(31)
        ),
        "weft tx validator-update --key k --pubkey Cargo.toml --power 1".into(),
        format!(
            "weft tx validator-update --key k --pubkey {}",
            hex::encode(SecretKey([4; 32]).public())
        ),
        "weft genesis set-authority".into(),
        "weft tx pay-name --key k --name alice --amount -1".into(),
        format!("weft tx transfer --key k --to {to} --amount 3 --chain-id bad/id"),
        format!("weft tx transfer --key k --to {to}"),
        "weft frobnicate".into(),
    ];
    for line in &refused {
        assert!(parse(line).is_err(), "{line} parsed");
    }

    let line = |needle: &str| accepted.iter().find(|l| l.contains(needle)).unwrap();
    let Command::Start(start) = parse(line("--rpc-unsafe")).unwrap() else {
        panic!("not start");
    };
    assert_eq!(
        start.persistent_peers,
        Some(vec!["a".to_owned(), "b".to_owned()])
    );
    assert_eq!(start.gossip.as_deref(), Some("plain"));
    assert!(start.rpc_unsafe);
    let Command::Start(start) = parse("weft start --home h").unwrap() else {
        panic!("not start");
    };
    assert!(!start.rpc_unsafe);
    let Command::Tx {
        command:
            TxCommand::Transfer {
                common,
                to: address,
                amount,
            },
    } = parse(line("--chain-id c --async")).unwrap()
    else {
        panic!("not transfer");
    };
    assert_eq!((address, amount), (Address([0xab; 32]), 3));
    assert!(common.no_wait);
    assert_eq!(common.chain_id.unwrap().as_str(), "c");
}

#[test]
fn tx_replies_are_read_and_judged() {
    let ok = |code: u32, log: &str| (code, log.to_owned());
    let (node_hash, local_hash) = ([0xab; 32], [0xcd; 32]);
    let outcome = |hash: [u8; 32], height, check, result| TxOutcome {
        hash: hex::encode_upper(hash),
        height,
        check,
        result,
    };
    let check_tx = |code: u32, log: &str| CheckTxResult {
        code,
        log: log.into(),
        ..CheckTxResult::default()
    };
    let tx_result = |code: u32, log: &str| ExecTxResult {
        code,
        log: log.into(),
        ..ExecTxResult::default()
    };
    let commit = |check: CheckTxResult, result: ExecTxResult, height: u64| BroadcastCommitResult {
        check_tx: check,
        tx_result: result,
        hash: Hash::some(node_hash),
        height: Int(height),
    };
    // (reply, expected outcome, whether it passes)
    let committed = [
        (
            commit(check_tx(0, ""), tx_result(0, "ok"), 12),
            outcome(node_hash, Some(12), ok(0, ""), Some(ok(0, "ok"))),
            true,
        ),
        (
            commit(check_tx(0, ""), tx_result(3, "balance"), 4),
            outcome(node_hash, Some(4), ok(0, ""), Some(ok(3, "balance"))),
            false,
        ),
        // A refused check: the node's empty tx_result (code 0) is no verdict.
        (
            commit(check_tx(5, "nonce"), ExecTxResult::default(), 0),
            outcome(node_hash, None, ok(5, "nonce"), None),
            false,
        ),
    ];
    for (reply, expected, passes) in committed {
        let got = TxOutcome::committed(reply.clone(), local_hash);
        assert_eq!(got, expected, "{reply:?}");
        assert_eq!(got.check().is_ok(), passes, "{reply:?}");
    }
    let sync = |code: u32, hash: Hash| BroadcastResult {
        code,
        data: HexBytes::default(),
        log: String::new(),
        codespace: String::new(),
        hash,
    };
    let checked = [
        (
            sync(0, Hash::some(node_hash)),
            outcome(node_hash, None, ok(0, ""), None),
            true,
        ),
        // No hash in the reply: the one computed here stands in.
        (
            sync(0, Hash(None)),
            outcome(local_hash, None, ok(0, ""), None),
            true,
        ),
        (
            sync(7, Hash::some(node_hash)),
            outcome(node_hash, None, ok(7, ""), None),
            false,
        ),
    ];
    for (reply, expected, passes) in checked {
        let got = TxOutcome::checked(reply.clone(), local_hash);
        assert_eq!(got, expected, "{reply:?}");
        assert_eq!(got.check().is_ok(), passes, "{reply:?}");
    }
}

#[test]
fn gossipsub_warnings_are_quiet_unless_asked_for() {
    let cases = [
        ("info", "info,libp2p_gossipsub=error"),
        ("", "libp2p_gossipsub=error"),
        ("debug,libp2p_gossipsub=warn", "debug,libp2p_gossipsub=warn"),
    ];
    for (level, expected) in cases {
        let filter = with_quiet_gossipsub(level);
        assert_eq!(filter, expected);
        tracing_subscriber::EnvFilter::try_new(&filter).unwrap();
    }
}

/// A `status` answer as CometBFT v0.38 writes it, with Weft's `peer_id` and
/// `listen_multiaddr`.
fn status_answer() -> serde_json::Value {
    json!({
        "node_info": {
            "protocol_version": {"p2p": "8", "block": "11", "app": "0"},
            "id": "5576458aef205977e18fd50b274e9b5d9014525a",
            "listen_addr": "tcp://127.0.0.1:26656",
            "network": "weft-local",
            "version": "0.38.0",
            "channels": "40202122233038606100",
            "moniker": "m",
            "other": {"tx_index": "on", "rpc_address": "tcp://127.0.0.1:26657"},
            "peer_id": "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA",
            "listen_multiaddr": "/ip4/127.0.0.1/tcp/26656",
        },
        "sync_info": {
            "latest_block_hash": "AB".repeat(32),
            "latest_app_hash": "CD".repeat(32),
            "latest_block_height": "7",
            "latest_block_time": "2026-12-04T10:00:00.123Z",
            "earliest_block_hash": "EF".repeat(32),
            "earliest_app_hash": "",
            "earliest_block_height": "1",
            "earliest_block_time": "2026-12-04T09:00:00Z",
            "catching_up": false,
        },
        "validator_info": {
            "address": "5576458AEF205977E18FD50B274E9B5D9014525A",
            "pub_key": {
                "type": "tendermint/PubKeyEd25519",
                "value": "VKTh6GLOdtp5Gm5CBkN7MwgYDKsiaezq/LsuWxx8BK4=",
            },
            "voting_power": "10",
            "proposer_priority": "0",
        },
    })
}

#[test]
fn status_summary_reads_cometbfts_status() {
    let status: StatusResult = serde_json::from_value(status_answer()).unwrap();
    let text = status_summary(&status, Some(3));
    for part in [
        "chain id:    weft-local",
        "node id:     5576458aef205977e18fd50b274e9b5d9014525a",
        "height:      7",
        &format!("block hash:  {}", "AB".repeat(32)),
        "block time:  2026-12-04T10:00:00.123Z",
        "catching up: false",
        "peers:       3",
    ] {
        assert!(text.contains(part), "{part}: {text}");
    }
    assert!(status_summary(&status, None).contains("peers:       ?"));
}

#[test]
fn a_refused_call_is_described_with_the_nodes_reason() {
    use jsonrpsee::core::ClientError;
    use jsonrpsee::types::ErrorObjectOwned;
    let refused = ClientError::Call(ErrorObjectOwned::owned(
        -32603,
        "Internal error",
        Some("height 99 must be less than or equal to the current blockchain height 12"),
    ));
    assert_eq!(
        describe(&refused),
        "Internal error (-32603): height 99 must be less than or equal to the current \
         blockchain height 12"
    );
    let bare = ClientError::Call(ErrorObjectOwned::owned(
        -32601,
        "Method not found",
        None::<()>,
    ));
    assert_eq!(describe(&bare), "Method not found (-32601)");
}
