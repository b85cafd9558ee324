//! The genesis ceremony as operators run it, with the `weft` CLI only. Four operators make
//! their homes apart and each sends the coordinator a card of public values; the coordinator
//! assembles the genesis from the cards (a secret key file sent by mistake is refused); every
//! operator checks the genesis hash and starts. Later a fifth operator joins as a full node
//! (its key in no genesis), names its peers by DNS, catches up and follows without signing.
//! Nodes of another genesis, or of another chain id, are refused, and the logs say which
//! differs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use weft_node::config::Home;
use weft_node::guard::SignGuard;
use weft_node::rpc::RpcClient;

use crate::support::{TestNode, WEFT, free_port};

const CHAIN: &str = "weft-ceremony";

fn weft(args: &[&str]) -> Output {
    let output = Command::new(WEFT).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "weft {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn weft_refuses(args: &[&str]) -> String {
    let output = Command::new(WEFT).args(args).output().unwrap();
    assert!(
        !output.status.success(),
        "weft {} succeeded",
        args.join(" ")
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// An operator's `weft init` (no genesis, p2p on loopback at a free port), then its RPC and
/// metrics ports; the node is not started.
fn operator(dir: &Path, name: &str, init_flags: &[&str]) -> TestNode {
    let root = dir.join(name);
    let p2p_port = free_port();
    let listen = format!("/ip4/127.0.0.1/tcp/{p2p_port}");
    let mut args = vec!["init", "--home", path(&root), "--moniker", name];
    args.extend_from_slice(&["--p2p-listen", &listen]);
    args.extend_from_slice(init_flags);
    weft(&args);
    let node = TestNode {
        home: Home::new(&root),
        rpc_port: free_port(),
        p2p_port,
        child: None,
        env: Vec::new(),
    };
    let (rpc, metrics) = (node.rpc_port, free_port());
    node.configure(|config| {
        config.rpc.laddr = format!("127.0.0.1:{rpc}");
        config.metrics.laddr = format!("127.0.0.1:{metrics}");
        config.execution.threads = 1;
    });
    node
}

/// What the operator sends: `weft keys show --home H --host 127.0.0.1 --json`.
fn card(node: &TestNode, dir: &Path) -> (PathBuf, Value) {
    let out = weft(&[
        "keys",
        "show",
        "--home",
        path(&node.home.root),
        "--host",
        "127.0.0.1",
        "--json",
    ]);
    let card: Value = serde_json::from_slice(&out.stdout).unwrap();
    let file = dir.join(format!("{}.card.json", card["name"].as_str().unwrap()));
    std::fs::write(&file, &out.stdout).unwrap();
    (file, card)
}

/// The coordinator's genesis, from the cards.
fn assemble(dir: &Path, cards: &[PathBuf], account_card: &Path) -> (PathBuf, String) {
    let genesis = dir.join("genesis.json");
    let g = path(&genesis);
    weft(&[
        "genesis",
        "new",
        "--genesis",
        g,
        "--chain-id",
        CHAIN,
        "--timeouts",
        "fast",
    ]);
    for card in cards {
        weft(&[
            "genesis",
            "add-validator",
            "--genesis",
            g,
            "--from",
            path(card),
        ]);
    }
    weft(&[
        "genesis",
        "add-account",
        "--genesis",
        g,
        "--from",
        path(account_card),
        "--balance",
        "1000000",
    ]);
    let valid = text(&weft(&["genesis", "validate", "--genesis", g]));
    assert!(valid.contains("4 validators (total power 40)"), "{valid}");
    let hash = text(&weft(&["genesis", "hash", "--genesis", g]))
        .trim()
        .to_owned();
    (genesis, hash)
}

/// Puts the coordinator's genesis in a home, checks its hash as an operator would, and lists
/// the peers.
fn install(node: &TestNode, genesis: &Path, hash: &str, peers: Vec<String>) {
    std::fs::copy(genesis, node.home.genesis()).unwrap();
    let got = text(&weft(&["genesis", "hash", "--home", path(&node.home.root)]));
    assert_eq!(got.trim(), hash);
    node.configure(|config| config.p2p.persistent_peers = peers);
}

fn log(node: &TestNode) -> String {
    std::fs::read_to_string(node.log_path()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_form_a_network_from_public_keys_and_a_full_node_joins_later() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let mut nodes: Vec<TestNode> = (0..4)
        .map(|i| {
            operator(
                dir,
                &format!("op{i}"),
                if i == 0 { &["--accounts", "1"] } else { &[] },
            )
        })
        .collect();
    for node in &nodes {
        assert!(!node.home.genesis().exists(), "init wrote a genesis");
    }
    let cards: Vec<(PathBuf, Value)> = nodes.iter().map(|n| card(n, dir)).collect();
    // op0's account, as a card of its public key.
    let account = nodes[0].home.config_dir().join("account-0.json");
    let account_card = dir.join("account.card.json");
    let out = weft(&["keys", "show", "--key", path(&account), "--json"]);
    std::fs::write(&account_card, &out.stdout).unwrap();

    // A key file with its secret, sent where a card belongs, is refused by name.
    let scratch = dir.join("scratch.json");
    weft(&[
        "genesis",
        "new",
        "--genesis",
        path(&scratch),
        "--chain-id",
        CHAIN,
    ]);
    let secret = path(&nodes[1].home.validator_key()).to_owned();
    let refused = weft_refuses(&[
        "genesis",
        "add-validator",
        "--genesis",
        path(&scratch),
        "--from",
        &secret,
    ]);
    assert!(refused.contains("secret"), "{refused}");

    let card_files: Vec<PathBuf> = cards.iter().map(|(file, _)| file.clone()).collect();
    let (genesis, hash) = assemble(dir, &card_files, &account_card);
    let entries: Vec<String> = cards
        .iter()
        .map(|(_, card)| card["persistent_peer"].as_str().unwrap().to_owned())
        .collect();
    for (i, node) in nodes.iter().enumerate() {
        let peers = entries
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .map(|(_, e)| e.clone())
            .collect();
        install(node, &genesis, &hash, peers);
    }
    for node in &mut nodes {
        node.start();
    }
    for node in &nodes {
        node.wait_height(3).await;
        assert!(
            log(node).contains("running as a validator"),
            "{}",
            node.log_tail()
        );
    }

    // A transfer, signed by the CLI on the client side, commits.
    let recipient = cards[1].1["pub_key"].as_str().unwrap();
    let rpc = format!("http://127.0.0.1:{}", nodes[0].rpc_port);
    let sent = text(&weft(&[
        "tx",
        "transfer",
        "--key",
        path(&account),
        "--to",
        recipient,
        "--amount",
        "5",
        "--rpc",
        &rpc,
    ]));
    assert!(sent.contains("tx_result: code 0"), "{sent}");

    // A full node joins later: its own init, the same genesis, peers named by DNS.
    let mut full = operator(dir, "follower", &[]);
    let by_name: Vec<String> = entries[..2]
        .iter()
        .map(|e| e.replace("/ip4/127.0.0.1/", "/dns4/localhost/"))
        .collect();
    install(&full, &genesis, &hash, by_name);
    let target = nodes[0].height().await.unwrap() + 5;
    full.start();
    full.wait_height(target).await;
    assert!(
        log(&full).contains("running as a full node"),
        "{}",
        full.log_tail()
    );
    let status = full.client().status().await.unwrap();
    assert_eq!(status.validator_info.voting_power.0, 0, "{status:?}");
    for height in [1, target] {
        let theirs = nodes[0].block(height).await;
        let ours = full.block(height).await;
        assert_eq!(ours.block_id, theirs.block_id, "height {height}");
    }
    // It follows: new heights reach it as the validators decide them.
    full.wait_height(nodes[0].height().await.unwrap() + 3).await;

    // Nodes of another genesis (same chain id) and of another chain id dial op0: refused,
    // and each side's log says which differs.
    let mut strangers = Vec::new();
    for (name, chain) in [("other-genesis", CHAIN), ("other-chain", "weft-elsewhere")] {
        let stranger = operator(dir, name, &["--single-validator", "--chain-id", chain]);
        stranger.configure(|config| config.p2p.persistent_peers = vec![entries[0].clone()]);
        strangers.push(stranger);
    }
    for stranger in &mut strangers {
        stranger.start();
        stranger.wait_height(1).await;
    }
    for (stranger, says) in strangers.iter().zip(["genesis hash is", "chain id is"]) {
        let until = std::time::Instant::now() + crate::support::DEADLINE;
        while !log(stranger).contains(says) || !log(&nodes[0]).contains(says) {
            assert!(
                std::time::Instant::now() < until,
                "no {says:?} in the logs:\n{}",
                stranger.log_tail()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    let peers = nodes[0].client().net_info().await.unwrap();
    assert_eq!(
        peers.n_peers.0, 4,
        "3 validators and the full node: {peers:?}"
    );

    // The full node never signed anything.
    assert!(full.stop(), "the full node did not stop cleanly");
    let guard = SignGuard::open(full.home.root.join("data").join("last_signed")).unwrap();
    assert!(
        guard.last().is_none(),
        "the full node signed {:?}",
        guard.last()
    );
}
