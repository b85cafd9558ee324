//! Crash safety of sled storage: a child process commits blocks and is SIGKILLed at a point the
//! parent picks; reopening must give exactly the state of some height at or after the last one
//! the child acknowledged, never a partial block.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use weft_execution::workload::Workload;
use weft_execution::{
    MemoryState, MemoryStorage, SledStorage, StateView, Storage, Transaction, propose,
};

const HEIGHTS: usize = 30;
const TXS_PER_BLOCK: usize = 40;
const KILL_ROUNDS: usize = 4;
const WORKLOAD_SEED: u64 = 11;
/// Set only in the child: the database directory to commit into.
const CHILD_DIR_VAR: &str = "WEFT_CRASH_CHILD_DIR";

/// The genesis state and the txs of each height, deterministic so parent and child agree.
fn chain() -> (MemoryState, Vec<Vec<Transaction>>) {
    let generated =
        Workload::Uniform { accounts: 64 }.generate(HEIGHTS * TXS_PER_BLOCK, WORKLOAD_SEED);
    let blocks = generated
        .txs
        .chunks(TXS_PER_BLOCK)
        .map(<[Transaction]>::to_vec)
        .collect();
    (generated.genesis, blocks)
}

/// Commits every height after the stored one, announcing each on stdout once it is durable.
fn commit_from_stored_height(dir: &Path) {
    let (genesis, blocks) = chain();
    let mut storage = SledStorage::open(dir, &genesis).expect("open sled");
    for height in storage.height() as usize + 1..=HEIGHTS {
        let proposal = propose(&storage, &blocks[height - 1]).expect("read state");
        storage
            .commit(height as u64, &proposal.outcome.changes)
            .expect("commit");
        println!("committed {height}");
    }
}

/// The state after each height, from memory storage.
fn expected_states() -> Vec<MemoryState> {
    let (genesis, blocks) = chain();
    let mut storage = MemoryStorage::new(genesis);
    let mut states = vec![storage.state().clone()];
    for (index, txs) in blocks.iter().enumerate() {
        let proposal = propose(&storage, txs).expect("memory state");
        storage
            .commit(index as u64 + 1, &proposal.outcome.changes)
            .expect("next height");
        states.push(storage.state().clone());
    }
    states
}

/// Runs the child until it has acknowledged `kill_after`, then SIGKILLs it. Returns the last
/// height the child acknowledged.
fn run_child_and_kill(dir: &Path, kill_after: usize) -> usize {
    let test_name = rusty_fork::rusty_fork_test_name!(committed_state_survives_sigkill);
    rusty_fork::fork(
        test_name,
        rusty_fork::rusty_fork_id!(),
        |command| {
            command.stdout(Stdio::piped()).env(CHILD_DIR_VAR, dir);
        },
        |child, _log| {
            let stdout = child.inner_mut().stdout.take().expect("piped stdout");
            let mut acknowledged = 0;
            // Blocking reads, no sleeps: the child either reaches the target or exits.
            for line in BufReader::new(stdout).lines() {
                let line = line.expect("child stdout");
                if let Some(height) = line.strip_prefix("committed ") {
                    acknowledged = height.parse().expect("height");
                    if acknowledged >= kill_after {
                        break;
                    }
                }
            }
            child.kill().expect("kill child");
            child.wait().expect("reap child");
            acknowledged
        },
        // The child re-runs the test, which sees CHILD_DIR_VAR and never reaches `fork`.
        || unreachable!("the child branches on {CHILD_DIR_VAR} first"),
    )
    .expect("fork child")
}

#[test]
fn committed_state_survives_sigkill() {
    if let Ok(dir) = std::env::var(CHILD_DIR_VAR) {
        // The child process: rusty-fork re-ran this one test with CHILD_DIR_VAR set.
        commit_from_stored_height(Path::new(&dir));
        return;
    }
    let seed: u64 = rand::random();
    println!("crash test seed {seed}");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let expected = expected_states();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut stored = 0;
    for round in 0..KILL_ROUNDS {
        let kill_after = (stored + rng.random_range(1..=5)).min(HEIGHTS);
        let acknowledged = run_child_and_kill(dir.path(), kill_after);
        let (genesis, _) = chain();
        let storage = SledStorage::open(dir.path(), &genesis).expect("reopen after SIGKILL");
        let height = storage.height() as usize;
        println!("round {round}: killed after height {acknowledged}, reopened at {height}");
        assert!(
            height >= acknowledged,
            "seed {seed} round {round}: height {height} lost acknowledged height {acknowledged}"
        );
        let want = &expected[height];
        assert_eq!(
            storage.pairs().expect("read pairs").len(),
            want.len(),
            "seed {seed} round {round}: key count at height {height}"
        );
        for (key, value) in want.sorted_pairs() {
            assert_eq!(
                storage.get(&key).expect("read"),
                Some(value),
                "seed {seed} round {round}: {key:?} at height {height}"
            );
        }
        assert_eq!(storage.root(), want.root(), "seed {seed} round {round}");
        storage.verify_integrity().expect("integrity after SIGKILL");
        stored = height;
    }
}
