//! A damaged disk. A WAL (its entries and the blocks beside them) whose tail is torn or
//! overwritten is cut at its last good record and the node carries on. A chain database with
//! damaged bytes is refused with an error that names it, or, where the damage hit nothing the
//! node reads, used only after its checks pass: it never serves a block or state other than
//! the ones committed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use weft_node::rpc::RpcClient;

use crate::support::{DEADLINE, TestNode, WEFT, account_keys, committed_ok, transfer};

const CHAIN: &str = "weft-disk";

fn data_dir(node: &TestNode) -> PathBuf {
    node.home.root.join("data")
}

/// One node that committed a few txs, stopped cleanly: its height then, and its block hashes.
async fn committed_node(dir: &Path) -> (TestNode, u64, Vec<[u8; 32]>) {
    let mut node = TestNode::init(&dir.join("home"), CHAIN, "solo");
    node.configure(|config| config.consensus.timeout_commit_ms = Some(20));
    node.start();
    node.wait_height(2).await;
    let keys = account_keys(&node.home);
    for nonce in 0..4 {
        let tx = transfer(CHAIN, &keys[0], nonce, keys[1].public(), 5);
        let result = node.client().broadcast_tx_commit(tx.into()).await.unwrap();
        assert!(committed_ok(&result), "{result:?}");
    }
    let height = node.height().await.unwrap() + 3;
    node.wait_height(height).await;
    let hashes = block_hashes(&node, height).await;
    assert!(node.stop(), "{}", node.log_tail());
    (node, height, hashes)
}

/// The block hashes of heights 1..=top as the node serves them.
async fn block_hashes(node: &TestNode, top: u64) -> Vec<[u8; 32]> {
    let mut hashes = Vec::new();
    for h in 1..=top {
        hashes.push(node.block_hash(h).await);
    }
    hashes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_or_overwritten_wal_tail_is_cut_and_the_node_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let (mut node, height, before) = committed_node(dir.path()).await;
    let data = data_dir(&node);
    for (round, damage) in ["torn", "overwritten"].into_iter().enumerate() {
        for file in ["cs.wal"] {
            let path = data.join(file);
            let mut bytes = std::fs::read(&path).unwrap();
            match damage {
                // Half a record: a length that promises more than follows.
                "torn" => bytes.extend_from_slice(&[0xff, 0x00, 0x00, 0x00, 1, 2, 3]),
                // The last bytes of the last good record overwritten.
                _ => {
                    let n = bytes.len();
                    if n > 8 {
                        for b in &mut bytes[n - 4..] {
                            *b ^= 0x5a;
                        }
                    }
                }
            }
            std::fs::write(&path, bytes).unwrap();
        }
        node.start();
        node.wait_height(height + 2 + round as u64).await;
        assert_eq!(
            block_hashes(&node, height).await,
            before,
            "{damage}: committed blocks changed"
        );
        let log = std::fs::read_to_string(node.log_path()).unwrap();
        assert!(
            log.matches("WAL had a damaged tail").count() > round,
            "{damage}: the WAL's damage was not reported:\n{}",
            node.log_tail()
        );
        assert!(node.stop(), "{}", node.log_tail());
    }
}

/// Runs `weft start` on `home` until it exits or answers at `height`. `Err(log)` when it
/// refused to start.
async fn start_damaged(node: &mut TestNode, height: u64) -> Result<(), String> {
    node.start();
    let until = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = node.child.as_mut().unwrap().try_wait().unwrap() {
            node.child = None;
            assert!(!status.success(), "exited 0 without being asked to stop");
            return Err(std::fs::read_to_string(node.log_path()).unwrap());
        }
        if node.height().await.is_some_and(|h| h >= height) {
            return Ok(());
        }
        assert!(Instant::now() < until, "{}", node.log_tail());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn copy_dir(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

/// The largest regular file under `dir`.
fn largest_file(dir: &Path) -> PathBuf {
    let mut best: Option<(u64, PathBuf)> = None;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            } else if best.as_ref().is_none_or(|(len, _)| meta.len() > *len) {
                best = Some((meta.len(), entry.path()));
            }
        }
    }
    best.unwrap().1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_chain_database_is_refused_or_provably_intact() {
    let dir = tempfile::tempdir().unwrap();
    let (mut node, height, before) = committed_node(dir.path()).await;
    let pristine = dir.path().join("pristine");
    copy_dir(&node.home.root, &pristine);

    let db = data_dir(&node).join("chain").join("state.db");
    let damages: [(&str, Damage); 5] = [
        ("a flipped byte at 1/4 of the log", |db| flip(db, 1, 4)),
        ("a flipped byte at 1/2 of the log", |db| flip(db, 1, 2)),
        ("a flipped byte at 3/4 of the log", |db| flip(db, 3, 4)),
        ("the log truncated to half", |db| {
            let file = largest_file(db);
            let len = std::fs::metadata(&file).unwrap().len();
            std::fs::OpenOptions::new()
                .write(true)
                .open(&file)
                .unwrap()
                .set_len(len / 2)
                .unwrap();
        }),
        ("the config zeroed", |db| {
            let conf = db.join("conf");
            let len = std::fs::metadata(&conf).unwrap().len() as usize;
            std::fs::write(&conf, vec![0u8; len]).unwrap();
        }),
    ];
    let mut refused = 0;
    for (what, damage) in damages {
        std::fs::remove_dir_all(&node.home.root).unwrap();
        copy_dir(&pristine, &node.home.root);
        damage(&db);
        let _ = std::fs::remove_file(node.log_path());
        match start_damaged(&mut node, height).await {
            Err(log) => {
                eprintln!(
                    "{what}: refused: {}",
                    log.lines().last().unwrap_or_default()
                );
                assert!(!log.contains("panicked"), "{what}: a panic:\n{log}");
                let named = format!("chain database {}", db.parent().unwrap().display());
                assert!(
                    log.contains(&named),
                    "{what}: the error does not name the database:\n{log}"
                );
                refused += 1;
            }
            Ok(()) => {
                eprintln!("{what}: started, and holds the committed blocks");
                // Started: it must hold exactly what was committed.
                assert_eq!(
                    block_hashes(&node, height).await,
                    before,
                    "{what}: started on a database that serves other blocks"
                );
                assert!(node.stop(), "{what}: {}", node.log_tail());
            }
        }
    }
    assert!(refused >= 1, "no damage was detected");
}

/// One way to damage a database directory.
type Damage = fn(&Path);

/// Flips one byte at `num/den` of the database's largest file (its log).
fn flip(db: &Path, num: u64, den: u64) {
    let file = largest_file(db);
    let mut bytes = std::fs::read(&file).unwrap();
    let at = (bytes.len() as u64 * num / den) as usize;
    bytes[at] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
}

#[test]
fn the_crash_point_switch_refuses_an_unknown_value() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::init(&dir.path().join("home"), CHAIN, "solo");
    let output = Command::new(WEFT)
        .args(["start", "--home"])
        .arg(&node.home.root)
        .env("WEFT_CRASH_AT", "disk:1")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stderr).into_owned()
        + &String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("crash point \"disk:1\""), "{text}");
}
