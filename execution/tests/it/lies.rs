//! Each proposer lie of DESIGN §4 is rejected with its own error, by the serial executor and by
//! the parallel one on every thread count alike, whether the lying DAG is handed over in memory
//! or decoded from the wire; the honest block is accepted.

use proptest::prelude::*;
use weft_execution::workload::Workload;
use weft_execution::{
    AccessMode, AccessSets, Address, BlockError, BlockOutcome, ConflictDag, DagError, Payload,
    SerialExecutor, StateKey, StateRoot, StateView, validate_block,
};

use crate::support::{self, Block, THREADS, parallel_executors, proposed};

/// Seeds that once failed (or that are worth keeping), rerun on every `cargo test`.
const REPLAY: &[u64] = &[0, 1, 7, u64::MAX];

/// How the proposer lies. Access-set lies re-derive the DAG from the lying sets, so the DAG
/// check passes and execution has to catch them.
#[derive(Clone, Debug)]
enum Lie {
    /// No lie at all.
    Honest,
    /// Replace tx `tx`'s predecessor list.
    Preds { tx: usize, preds: Vec<u32> },
    /// Drop tx `tx`'s last predecessor list.
    DropDagTx,
    /// Build the access sets over one tx fewer than the block has.
    DropAccessTx,
    /// Remove `key` from tx `tx`'s declared set.
    Undeclare { tx: usize, key: StateKey },
    /// Add (or change to) `mode` on `key` in tx `tx`'s declared set.
    Declare {
        tx: usize,
        key: StateKey,
        mode: AccessMode,
    },
    /// Replace (not merge) the mode of `key` in tx `tx`'s set.
    SetMode {
        tx: usize,
        key: StateKey,
        mode: AccessMode,
    },
    /// Announce this post-state root.
    Root(StateRoot),
}

/// The verdict every executor must reach. `wire` is the verdict when the DAG travels as bytes
/// and goes through `ConflictDag::decode`, where it differs from the in-memory one.
struct Expected {
    verdict: Result<(), BlockError>,
    wire: Option<Result<(), BlockError>>,
}

fn rejects(error: impl Into<BlockError>) -> Expected {
    Expected {
        verdict: Err(error.into()),
        wire: None,
    }
}

/// The block's (access sets, DAG, root) after `lie`.
fn tell(block: &Block, lie: &Lie) -> (AccessSets, ConflictDag, StateRoot) {
    let proposal = &block.proposal;
    let mut root = proposal.outcome.state_root;
    let mut per_tx: Vec<Vec<(StateKey, AccessMode)>> = (0..block.txs.len())
        .map(|tx| proposal.access.tx_keys(tx))
        .collect();
    let mut preds = proposal.dag.pred_lists();
    let mut rederive = false;
    match lie.clone() {
        Lie::Honest => {}
        Lie::Preds { tx, preds: list } => preds[tx] = list,
        Lie::DropDagTx => {
            preds.pop();
        }
        Lie::DropAccessTx => {
            per_tx.pop();
        }
        Lie::Undeclare { tx, key } => {
            let before = per_tx[tx].len();
            per_tx[tx].retain(|(k, _)| *k != key);
            assert_eq!(per_tx[tx].len() + 1, before, "{lie:?}: key not declared");
            rederive = true;
        }
        Lie::Declare { tx, key, mode } => {
            per_tx[tx].push((key, mode));
            rederive = true;
        }
        Lie::SetMode { tx, key, mode } => {
            let entry = per_tx[tx]
                .iter_mut()
                .find(|(k, _)| *k == key)
                .expect("key declared");
            assert_ne!(entry.1, mode, "{lie:?} changes nothing");
            entry.1 = mode;
            rederive = true;
        }
        Lie::Root(lie) => root = lie,
    }
    let access = AccessSets::from_per_tx(&per_tx);
    let dag = if rederive {
        ConflictDag::derive(&access)
    } else {
        ConflictDag::from_pred_lists_unchecked(&preds)
    };
    (access, dag, root)
}

/// Tells `lie` about `block` and checks that the serial executor and every parallel executor
/// reach `expected`, with the DAG in memory and with the DAG decoded from its bytes.
fn check(block: &Block, name: &str, lie: Lie, expected: Expected) {
    let label = format!("{}: {name}: {lie:?}", block.label);
    let (access, dag, root) = tell(block, &lie);
    // The lying sets are expressible on the wire: they round-trip through their encoding.
    let access_bytes = access.encode();
    assert_eq!(
        AccessSets::decode(&access_bytes, access.tx_count()).as_ref(),
        Ok(&access),
        "{label}: access sets do not round-trip"
    );
    let honest = &block.proposal.outcome;
    let outcome = |result: Result<BlockOutcome, BlockError>| {
        result.map(|outcome| {
            assert_eq!(outcome.results, honest.results, "{label}");
            assert_eq!(outcome.changes, honest.changes, "{label}");
            assert_eq!(outcome.state_root, honest.state_root, "{label}");
        })
    };
    let txs = &block.txs;
    let state = &block.genesis;
    let serial = outcome(validate_block(
        &SerialExecutor,
        state,
        txs,
        &access,
        &dag,
        root,
    ));
    assert_eq!(serial, expected.verdict, "{label}: serial");
    for (executor, threads) in parallel_executors().iter().zip(THREADS) {
        let parallel = outcome(validate_block(executor, state, txs, &access, &dag, root));
        assert_eq!(parallel, expected.verdict, "{label}: {threads} threads");
    }
    let wire = match ConflictDag::decode(&dag.encode(), txs.len()) {
        Err(error) => Err(BlockError::Dag(error)),
        Ok(decoded) => {
            assert_eq!(
                decoded, dag,
                "{label}: a decoded DAG differs from the shipped one"
            );
            outcome(validate_block(
                &parallel_executors()[1],
                state,
                txs,
                &access,
                &decoded,
                root,
            ))
        }
    };
    let want = expected.wire.as_ref().unwrap_or(&expected.verdict);
    assert_eq!(&wire, want, "{label}: through the wire");
}

/// The honest blocks the lies are told about: conflicting blocks with every kind of tx.
fn honest_blocks() -> Vec<Block> {
    vec![
        proposed(
            &Workload::Mixed {
                accounts: 10,
                names: 5,
            },
            150,
            7,
        ),
        proposed(
            &Workload::Hot {
                accounts: 16,
                hot_percent: 50,
            },
            120,
            8,
        ),
        proposed(
            &Workload::Work {
                accounts: 6,
                rounds: 2,
                slots_per_tx: 3,
                slot_space: 12,
            },
            80,
            9,
        ),
    ]
}

/// (from, to) of every edge of the honest DAG.
fn edges(block: &Block) -> Vec<(u32, u32)> {
    let dag = &block.proposal.dag;
    (0..dag.tx_count())
        .flat_map(|to| dag.preds(to).iter().map(move |&from| (from, to as u32)))
        .collect()
}

fn with(list: &[u32], extra: u32) -> Vec<u32> {
    let mut list = list.to_vec();
    list.push(extra);
    list.sort_unstable();
    list
}

fn without(list: &[u32], gone: u32) -> Vec<u32> {
    list.iter().copied().filter(|&p| p != gone).collect()
}

/// A tx, one of its declared keys, and that key's mode, chosen by `pick`.
fn find_access(
    block: &Block,
    pick: impl Fn(usize, StateKey, AccessMode) -> bool,
) -> Option<(usize, StateKey, AccessMode)> {
    let access = &block.proposal.access;
    (0..block.txs.len())
        .rev()
        .flat_map(|tx| {
            access
                .tx_keys(tx)
                .into_iter()
                .map(move |(key, mode)| (tx, key, mode))
        })
        .find(|&(tx, key, mode)| pick(tx, key, mode))
}

fn lies_and_verdicts(block: &Block) -> Vec<(&'static str, Lie, Expected)> {
    let n = block.txs.len();
    let txs = n as u32;
    let dag = &block.proposal.dag;
    let edges = edges(block);
    assert!(edges.len() > 2, "{}: no conflicts", block.label);
    let (from, to) = edges[edges.len() / 2];
    let to_index = to as usize;
    // A forward pair that is not an edge: the first tx with predecessors, from tx 0 upward.
    let (gap_from, gap_to) = (1..n)
        .flat_map(|to| (0..to).map(move |from| (from as u32, to)))
        .find(|&(from, to)| !dag.preds(to).contains(&from))
        .expect("some forward pair is not an edge");
    let gap_list = dag.preds(gap_to);
    let gap_to = gap_to as u32;
    let preds = |tx: u32| dag.preds(tx as usize);
    let fresh = StateKey::Account(Address([0xee; 32]));
    let sender = |tx: usize| StateKey::Account(block.txs[tx].sender);
    let (write_tx, write_key, _) =
        find_access(block, |_, _, mode| mode == AccessMode::Write).expect("some tx writes");
    let (second_tx, second_key, _) = find_access(block, |tx, key, _| key != sender(tx))
        .expect("some tx touches a key besides its sender");
    // A key of the block that `to` does not declare: a false dependency in disguise.
    let foreign = block
        .proposal
        .access
        .keys()
        .iter()
        .copied()
        .find(|key| {
            !block
                .proposal
                .access
                .tx_keys(to_index)
                .iter()
                .any(|(k, _)| k == key)
        })
        .expect("the block touches keys tx `to` does not");
    let honest_root = block.proposal.outcome.state_root;
    let wrong_root = StateRoot([0x5a; 32]);
    let mut cases = vec![
        (
            "honest",
            Lie::Honest,
            Expected {
                verdict: Ok(()),
                wire: None,
            },
        ),
        (
            "extra edge",
            Lie::Preds {
                tx: gap_to as usize,
                preds: with(gap_list, gap_from),
            },
            rejects(DagError::ExtraEdge {
                from: gap_from,
                to: gap_to,
            }),
        ),
        (
            "missing edge",
            Lie::Preds {
                tx: to_index,
                preds: without(preds(to), from),
            },
            rejects(DagError::MissingEdge { from, to }),
        ),
        (
            "no edges at all into a tx",
            Lie::Preds {
                tx: to_index,
                preds: vec![],
            },
            rejects(DagError::MissingEdge {
                from: preds(to)[0],
                to,
            }),
        ),
        (
            "cycle: both from -> to and to -> from",
            Lie::Preds {
                tx: from as usize,
                preds: with(preds(from), to),
            },
            rejects(DagError::Cyclic { from: to, to: from }),
        ),
        (
            "self loop",
            Lie::Preds {
                tx: to_index,
                preds: with(preds(to), to),
            },
            rejects(DagError::Cyclic { from: to, to }),
        ),
        (
            "predecessor one past the block",
            Lie::Preds {
                tx: to_index,
                preds: with(preds(to), txs),
            },
            rejects(DagError::IndexOutOfRange {
                tx: to,
                pred: txs,
                txs,
            }),
        ),
        (
            "predecessor u32::MAX",
            Lie::Preds {
                tx: 0,
                preds: vec![u32::MAX],
            },
            rejects(DagError::IndexOutOfRange {
                tx: 0,
                pred: u32::MAX,
                txs,
            }),
        ),
        (
            "duplicate predecessor",
            Lie::Preds {
                tx: to_index,
                preds: {
                    let mut list = preds(to).to_vec();
                    list.push(from);
                    list
                },
            },
            Expected {
                verdict: Err(DagError::UnsortedPredecessors { tx: to }.into()),
                // The wire form cannot express a repeat: the gap wraps past u32::MAX.
                wire: Some(Err(DagError::IndexOutOfRange {
                    tx: to,
                    pred: u32::MAX,
                    txs,
                }
                .into())),
            },
        ),
        (
            "DAG over one tx fewer",
            Lie::DropDagTx,
            rejects(DagError::TxCountMismatch {
                dag: n - 1,
                block: n,
            }),
        ),
        (
            "access sets over one tx fewer",
            Lie::DropAccessTx,
            Expected {
                verdict: Err(BlockError::AccessCountMismatch {
                    access: n - 1,
                    txs: n,
                }),
                wire: None,
            },
        ),
        (
            "under-declared: the sender",
            Lie::Undeclare {
                tx: to_index,
                key: sender(to_index),
            },
            // Every tx kind reads a key before it writes it, so the first touch is a read.
            rejects(BlockError::UnderDeclared {
                tx: to,
                key: sender(to_index),
                mode: AccessMode::Read,
            }),
        ),
        (
            "under-declared: a key after the sender",
            Lie::Undeclare {
                tx: second_tx,
                key: second_key,
            },
            rejects(BlockError::UnderDeclared {
                tx: second_tx as u32,
                key: second_key,
                mode: AccessMode::Read,
            }),
        ),
        (
            "under-declared: a written key declared as read",
            Lie::SetMode {
                tx: write_tx,
                key: write_key,
                mode: AccessMode::Read,
            },
            rejects(BlockError::UnderDeclared {
                tx: write_tx as u32,
                key: write_key,
                mode: AccessMode::Write,
            }),
        ),
        (
            "over-declared: a fresh key written",
            Lie::Declare {
                tx: to_index,
                key: fresh,
                mode: AccessMode::Write,
            },
            rejects(BlockError::OverDeclared {
                tx: to,
                key: fresh,
                mode: AccessMode::Write,
            }),
        ),
        (
            "over-declared: a fresh key read",
            Lie::Declare {
                tx: 0,
                key: fresh,
                mode: AccessMode::Read,
            },
            rejects(BlockError::OverDeclared {
                tx: 0,
                key: fresh,
                mode: AccessMode::Read,
            }),
        ),
        (
            "over-declared: another tx's key written",
            Lie::Declare {
                tx: to_index,
                key: foreign,
                mode: AccessMode::Write,
            },
            rejects(BlockError::OverDeclared {
                tx: to,
                key: foreign,
                mode: AccessMode::Write,
            }),
        ),
        (
            "wrong state root",
            Lie::Root(wrong_root),
            rejects(BlockError::StateRootMismatch {
                declared: wrong_root,
                computed: honest_root,
            }),
        ),
        (
            "the genesis root",
            Lie::Root(block.genesis.root()),
            rejects(BlockError::StateRootMismatch {
                declared: block.genesis.root(),
                computed: honest_root,
            }),
        ),
    ];
    // Only blocks with failed txs or name payments have keys that a tx reads and does not write.
    if let Some((tx, key, _)) = find_access(block, |_, _, mode| mode == AccessMode::Read) {
        cases.push((
            "over-declared: a read key declared as written",
            Lie::SetMode {
                tx,
                key,
                mode: AccessMode::Write,
            },
            rejects(BlockError::OverDeclared {
                tx: tx as u32,
                key,
                mode: AccessMode::Write,
            }),
        ));
    }
    cases
}

#[test]
fn each_lie_is_rejected_with_its_own_error() {
    let mut told = std::collections::BTreeSet::new();
    for block in honest_blocks() {
        for (name, lie, expected) in lies_and_verdicts(&block) {
            check(&block, name, lie, expected);
            told.insert(name);
        }
    }
    assert!(told.contains("over-declared: a read key declared as written"));
}

/// A pay-to-name tx that pays the registered owner, told with the owner hidden: the write set
/// depends on state, so only execution can catch it.
#[test]
fn hiding_the_resolved_recipient_of_a_name_payment_is_caught() {
    let block = proposed(
        &Workload::PayName {
            accounts: 6,
            names: 3,
        },
        60,
        11,
    );
    let (tx, owner) = block
        .txs
        .iter()
        .enumerate()
        .zip(&block.proposal.outcome.results)
        .find_map(|((index, tx), result)| match tx.payload {
            Payload::PayName { name, .. } if result.code == weft_execution::TxCode::Ok => {
                match block.genesis.get(&StateKey::Name(name)).expect("memory") {
                    Some(weft_execution::StateValue::NameOwner(owner)) if owner != tx.sender => {
                        Some((index, owner))
                    }
                    _ => None,
                }
            }
            _ => None,
        })
        .expect("some payment to another account's name succeeds");
    let key = StateKey::Account(owner);
    check(
        &block,
        "hidden name owner",
        Lie::Undeclare { tx, key },
        rejects(BlockError::UnderDeclared {
            tx: tx as u32,
            key,
            mode: AccessMode::Read,
        }),
    );
}

/// One random lie about a random honest block: an edge added or removed, an access dropped, an
/// access added, or a mode flipped. The block is always rejected, with the error naming it.
fn check_random_lie(seed: u64) {
    use rand::RngExt;
    let mut rng = support::rng(seed, 3);
    let (workload, size) = support::mixed_case(seed);
    let size = size.max(2);
    let block = proposed(&workload, size, seed);
    let access = &block.proposal.access;
    let dag = &block.proposal.dag;
    let (name, lie, expected) = match rng.random_range(0..4) {
        0 => {
            let to = rng.random_range(1..size);
            let from = rng.random_range(0..to) as u32;
            let list = dag.preds(to);
            let to = to as u32;
            if list.contains(&from) {
                let lie = Lie::Preds {
                    tx: to as usize,
                    preds: without(list, from),
                };
                (
                    "remove an edge",
                    lie,
                    DagError::MissingEdge { from, to }.into(),
                )
            } else {
                let lie = Lie::Preds {
                    tx: to as usize,
                    preds: with(list, from),
                };
                ("add an edge", lie, DagError::ExtraEdge { from, to }.into())
            }
        }
        1 => {
            let tx = rng.random_range(0..size);
            let keys = access.tx_keys(tx);
            let (key, _) = keys[rng.random_range(0..keys.len())];
            let error = BlockError::UnderDeclared {
                tx: tx as u32,
                key,
                mode: AccessMode::Read,
            };
            ("drop an access", Lie::Undeclare { tx, key }, error)
        }
        2 => {
            let tx = rng.random_range(0..size);
            let declared = access.tx_keys(tx);
            let table = access.keys();
            let candidates: Vec<StateKey> = table
                .iter()
                .copied()
                .filter(|key| !declared.iter().any(|(k, _)| k == key))
                .chain([StateKey::WorkSlot(u64::MAX)])
                .collect();
            let key = candidates[rng.random_range(0..candidates.len())];
            let mode = if rng.random_bool(0.5) {
                AccessMode::Write
            } else {
                AccessMode::Read
            };
            let error = BlockError::OverDeclared {
                tx: tx as u32,
                key,
                mode,
            };
            ("add an access", Lie::Declare { tx, key, mode }, error)
        }
        _ => {
            let tx = rng.random_range(0..size);
            let keys = access.tx_keys(tx);
            let (key, mode) = keys[rng.random_range(0..keys.len())];
            let (mode, error) = match mode {
                AccessMode::Read => (
                    AccessMode::Write,
                    BlockError::OverDeclared {
                        tx: tx as u32,
                        key,
                        mode: AccessMode::Write,
                    },
                ),
                AccessMode::Write => (
                    AccessMode::Read,
                    BlockError::UnderDeclared {
                        tx: tx as u32,
                        key,
                        mode: AccessMode::Write,
                    },
                ),
            };
            ("flip a mode", Lie::SetMode { tx, key, mode }, error)
        }
    };
    check(&block, name, lie, rejects(expected));
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_random_lie_is_always_rejected(seed in any::<u64>()) {
        check_random_lie(seed);
    }
}

#[test]
fn replayed_random_lies() {
    for &seed in REPLAY {
        check_random_lie(seed);
    }
}
