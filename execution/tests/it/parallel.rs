//! Parallel execution equals serial execution, which equals the proposer's, on every thread
//! count; a failed tx changes no state; the root a block's changes produce equals the root of
//! the same state rebuilt from scratch.

use std::collections::BTreeMap;

use proptest::prelude::*;
use weft_execution::workload::{Workload, account_key, workload_name};
use weft_execution::{
    AccessMode, Account, Address, BlockOutcome, ChainId, Executor, MemoryState, Name, Payload,
    SerialExecutor, StateKey, StateValue, StateView, Transaction, TxCode, WorkSlots, propose,
    validate_block, verify_block,
};

use crate::support::{
    self, Block, THREADS, follow_up_block, live_mixed, mixed_case, parallel_executors, proposed,
    shaped_case,
};

/// Seeds that once failed (or that are worth keeping), rerun on every `cargo test`.
const REPLAY: &[u64] = &[0, 1, 2, 3, 42, u64::MAX];

/// Generates a block of `workload` and checks it with [`check_block`].
fn check_parallel_equals_serial(workload: &Workload, size: usize, seed: u64) -> BlockOutcome {
    check_block(&proposed(workload, size, seed))
}

/// Runs one block through the proposer, the serial executor and every parallel executor (twice
/// each, so schedules vary), and checks that they agree exactly. Returns the serial outcome.
fn check_block(block: &Block) -> BlockOutcome {
    let size = block.txs.len();
    let label = &block.label;
    let proposal = &block.proposal;
    let verified = verify_block(&block.txs, &proposal.access, &proposal.dag)
        .unwrap_or_else(|error| panic!("{label}: the honest DAG is rejected: {error}"));
    let serial = SerialExecutor
        .execute(&block.genesis, &verified)
        .unwrap_or_else(|error| panic!("{label}: serial execution fails: {error}"));
    assert!(!serial.ran_parallel, "{label}");
    assert!(!proposal.outcome.ran_parallel, "{label}");
    assert_same(&serial, &proposal.outcome, "serial vs proposer", label);
    assert_eq!(serial.results.len(), size, "{label}");
    for (executor, threads) in parallel_executors().iter().zip(THREADS) {
        for run in 0..2 {
            let parallel = executor
                .execute(&block.genesis, &verified)
                .unwrap_or_else(|error| panic!("{label}: {threads} threads fail: {error}"));
            let what = format!("{threads} threads (run {run}) vs serial");
            assert_same(&parallel, &serial, &what, label);
            assert_eq!(
                parallel.ran_parallel,
                threads >= 2,
                "{label}: {what}: ran_parallel"
            );
        }
        let validated = validate_block(
            executor,
            &block.genesis,
            &block.txs,
            &proposal.access,
            &proposal.dag,
            proposal.outcome.state_root,
        )
        .unwrap_or_else(|error| panic!("{label}: {threads} threads reject it: {error}"));
        assert_same(&validated, &serial, "validate_block vs serial", label);
    }
    check_roots(&block.genesis, &serial, label);
    serial
}

fn assert_same(got: &BlockOutcome, want: &BlockOutcome, what: &str, label: &str) {
    assert_same_items(
        &got.results,
        &want.results,
        &format!("{label}: {what}: results"),
    );
    assert_same_items(
        &got.changes.writes,
        &want.changes.writes,
        &format!("{label}: {what}: changed keys"),
    );
    assert_eq!(got.changes, want.changes, "{label}: {what}: changes");
    assert_eq!(got.state_root, want.state_root, "{label}: {what}: root");
    assert_eq!(got.stats, want.stats, "{label}: {what}: DAG stats");
}

/// Equal lists, or a message naming the first position where they differ.
fn assert_same_items<T: PartialEq + std::fmt::Debug>(got: &[T], want: &[T], what: &str) {
    if let Some(at) = (0..got.len().min(want.len())).find(|&i| got[i] != want[i]) {
        panic!(
            "{what}: first difference at {at}: {:?} vs {:?}",
            got[at], want[at]
        );
    }
    assert_eq!(got.len(), want.len(), "{what}: lengths");
}

/// Applying the changes gives the outcome's root, and so does rebuilding the final state from
/// its pairs alone. The changes are sorted by key, each key once, and each really changes it.
fn check_roots(before: &MemoryState, outcome: &BlockOutcome, label: &str) {
    let writes = &outcome.changes.writes;
    assert!(
        writes.windows(2).all(|pair| pair[0].0 < pair[1].0),
        "{label}: changes are not strictly sorted by key"
    );
    for (key, value) in writes {
        assert!(value.fits(key), "{label}: {value:?} under {key:?}");
        assert_ne!(
            before.get(key).expect("memory read").as_ref(),
            Some(value),
            "{label}: {key:?} is listed as changed but keeps its value"
        );
    }
    let mut after = before.clone();
    after.apply(&outcome.changes);
    assert_eq!(after.root(), outcome.state_root, "{label}: applied root");
    assert_eq!(outcome.changes.root(), outcome.state_root, "{label}");
    let rebuilt = MemoryState::from_pairs(after.sorted_pairs());
    assert_eq!(
        rebuilt.root(),
        after.root(),
        "{label}: the incremental root differs from the from-scratch root"
    );
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn mixed_blocks_run_the_same_on_every_thread_count(seed in any::<u64>()) {
        let (workload, size) = mixed_case(seed);
        check_parallel_equals_serial(&workload, size, seed);
    }

    #[test]
    fn shaped_blocks_run_the_same_on_every_thread_count(seed in any::<u64>()) {
        let (workload, size) = shaped_case(seed);
        check_parallel_equals_serial(&workload, size, seed);
    }

    #[test]
    fn live_mixed_blocks_run_the_same_on_every_thread_count(seed in any::<u64>()) {
        check_block(&live_mixed(seed));
    }
}

#[test]
fn replayed_seeds_run_the_same_on_every_thread_count() {
    for &seed in REPLAY {
        for (workload, size) in [mixed_case(seed), shaped_case(seed)] {
            check_parallel_equals_serial(&workload, size, seed);
        }
        check_block(&live_mixed(seed));
    }
}

/// Blocks whose whole shape is fixed: the corner cases of the scheduler.
#[test]
fn corner_blocks_run_the_same_on_every_thread_count() {
    let cases = [
        (Workload::Chain { accounts: 2 }, 1),
        (Workload::Chain { accounts: 3 }, 200),
        (
            Workload::Hot {
                accounts: 2,
                hot_percent: 100,
            },
            150,
        ),
        (Workload::Uniform { accounts: 1_000 }, 300),
        (
            Workload::Work {
                accounts: 4,
                rounds: 3,
                slots_per_tx: 8,
                slot_space: 8,
            },
            100,
        ),
        (
            Workload::Mixed {
                accounts: 2,
                names: 1,
            },
            250,
        ),
    ];
    for (seed, (workload, size)) in cases.into_iter().enumerate() {
        check_parallel_equals_serial(&workload, size, seed as u64);
    }
}

/// Across Mixed blocks, every failure code occurs; each tx, replayed alone against the state its
/// predecessors left, gives the same code, and a failed one declares no write and changes
/// nothing, its sender's nonce included.
#[test]
fn failed_txs_change_no_state() {
    let mut codes: BTreeMap<String, usize> = BTreeMap::new();
    for seed in 0..12u64 {
        let workload = Workload::Mixed {
            accounts: 8 + seed as u32,
            names: 4,
        };
        for block in [proposed(&workload, 200, seed), live_mixed(seed)] {
            check_failed_txs(&block, &mut codes);
        }
    }
    for code in [
        "Ok",
        "BadNonce",
        "InsufficientFunds",
        "UnknownName",
        "NameTaken",
    ] {
        assert!(
            codes.get(code).is_some_and(|n| *n > 0),
            "no {code}: {codes:?}"
        );
    }
}

/// `Workload::Mixed` is meant to give every kind of tx, about 1 in 20 with a deliberately bad
/// nonce. A tx that fails for another reason must not push its sender's later nonces out of
/// step, or every later tx of that sender fails with `BadNonce` and the block degenerates (as it
/// did before the generator drew each tx against the live state).
#[test]
fn mixed_workload_failures_do_not_lock_senders_out() {
    let size = 300;
    let (mut txs, mut bad_nonce) = (0usize, 0usize);
    let mut dead_second_halves = Vec::new();
    for seed in 0..8u64 {
        let workload = Workload::Mixed {
            accounts: 8,
            names: 4,
        };
        let block = proposed(&workload, size, seed);
        let codes: Vec<TxCode> = block
            .proposal
            .outcome
            .results
            .iter()
            .map(|r| r.code)
            .collect();
        txs += codes.len();
        bad_nonce += codes.iter().filter(|c| **c == TxCode::BadNonce).count();
        if !codes[size / 2..].contains(&TxCode::Ok) {
            dead_second_halves.push(block.label);
        }
    }
    assert!(
        bad_nonce * 100 <= txs * 15,
        "{bad_nonce} of {txs} Mixed txs fail with BadNonce; about 1 in 20 is meant to"
    );
    assert_eq!(
        dead_second_halves,
        Vec::<String>::new(),
        "blocks where no tx of the second half succeeds"
    );
}

fn check_failed_txs(block: &Block, codes: &mut BTreeMap<String, usize>) {
    let label = &block.label;
    let outcome = &block.proposal.outcome;
    let mut state = block.genesis.clone();
    for (index, tx) in block.txs.iter().enumerate() {
        let code = outcome.results[index].code;
        *codes.entry(format!("{code:?}")).or_default() += 1;
        let alone = propose(&state, std::slice::from_ref(tx)).expect("memory state");
        assert_eq!(alone.outcome.results[0].code, code, "{label}: tx {index}");
        if code != TxCode::Ok {
            assert_eq!(alone.outcome.changes.writes, vec![], "{label}: tx {index}");
            assert_eq!(
                alone.outcome.state_root,
                state.root(),
                "{label}: tx {index}"
            );
            let declared = block.proposal.access.tx_keys(index);
            assert!(
                declared.iter().all(|(_, mode)| *mode == AccessMode::Read),
                "{label}: failed tx {index} ({code:?}) declares a write: {declared:?}"
            );
        }
        let sender_before = support::account(&state, tx.sender);
        state.apply(&alone.outcome.changes);
        let sender_after = support::account(&state, tx.sender);
        let expected_nonce = sender_before.nonce + u64::from(code == TxCode::Ok);
        assert_eq!(sender_after.nonce, expected_nonce, "{label}: tx {index}");
    }
    assert_eq!(state.root(), outcome.state_root, "{label}: tx by tx");
}

/// A scenario: accounts 0..4 and one registered name at genesis, one tx, and what it must do.
struct Scenario {
    name: &'static str,
    genesis: Vec<(StateKey, StateValue)>,
    /// (sender index, nonce, payload)
    tx: (u32, u64, Payload),
    code: TxCode,
    /// The keys whose values the tx changes.
    changed: Vec<StateKey>,
}

fn address(index: u32) -> Address {
    Address::from(&account_key(9, index))
}

fn account_pair(index: u32, balance: u64, nonce: u64) -> (StateKey, StateValue) {
    (
        StateKey::Account(address(index)),
        StateValue::Account(Account { balance, nonce }),
    )
}

/// Runs one scenario through the proposer and every executor.
fn check(scenario: Scenario) {
    let Scenario {
        name,
        genesis,
        tx: (sender, nonce, payload),
        code,
        changed,
    } = scenario;
    let genesis = MemoryState::from_pairs(genesis);
    let chain = ChainId::new("weft-test").expect("valid");
    let txs = vec![Transaction::sign(
        chain,
        &account_key(9, sender),
        nonce,
        payload,
    )];
    let proposal = propose(&genesis, &txs).expect("memory state");
    assert_eq!(proposal.outcome.results[0].code, code, "{name}");
    let keys: Vec<StateKey> = proposal
        .outcome
        .changes
        .writes
        .iter()
        .map(|(key, _)| *key)
        .collect();
    let mut want = changed;
    want.sort();
    assert_eq!(keys, want, "{name}: changed keys");
    let verified = verify_block(&txs, &proposal.access, &proposal.dag).expect(name);
    let serial = SerialExecutor.execute(&genesis, &verified).expect(name);
    assert_same(&serial, &proposal.outcome, "serial vs proposer", name);
    for executor in parallel_executors() {
        let parallel = executor.execute(&genesis, &verified).expect(name);
        assert_same(&parallel, &serial, "parallel vs serial", name);
    }
    check_roots(&genesis, &serial, name);
}

#[test]
fn each_tx_code_does_what_it_says() {
    let name = |text: &str| Name::new(text).expect("valid name");
    let base = || {
        vec![
            account_pair(0, 1_000, 0),
            account_pair(1, 50, 3),
            account_pair(2, u64::MAX, 0),
            account_pair(3, 10, u64::MAX),
            (
                StateKey::Name(workload_name(0)),
                StateValue::NameOwner(address(1)),
            ),
        ]
    };
    let acct = |index| StateKey::Account(address(index));
    let transfer = |to, amount| Payload::Transfer {
        to: address(to),
        amount,
    };
    let scenarios = vec![
        Scenario {
            name: "transfer",
            genesis: base(),
            tx: (0, 0, transfer(1, 10)),
            code: TxCode::Ok,
            changed: vec![acct(0), acct(1)],
        },
        Scenario {
            name: "transfer of everything",
            genesis: base(),
            tx: (0, 0, transfer(1, 1_000)),
            code: TxCode::Ok,
            changed: vec![acct(0), acct(1)],
        },
        Scenario {
            name: "transfer to a new account",
            genesis: base(),
            tx: (0, 0, transfer(7, 0)),
            code: TxCode::Ok,
            changed: vec![acct(0), acct(7)],
        },
        Scenario {
            name: "transfer to oneself bumps only the nonce",
            genesis: base(),
            tx: (0, 0, transfer(0, 5)),
            code: TxCode::Ok,
            changed: vec![acct(0)],
        },
        Scenario {
            name: "future nonce",
            genesis: base(),
            tx: (1, 4, transfer(0, 1)),
            code: TxCode::BadNonce,
            changed: vec![],
        },
        Scenario {
            name: "stale nonce",
            genesis: base(),
            tx: (1, 2, transfer(0, 1)),
            code: TxCode::BadNonce,
            changed: vec![],
        },
        Scenario {
            name: "exhausted nonce space",
            genesis: base(),
            tx: (3, u64::MAX, transfer(0, 1)),
            code: TxCode::BadNonce,
            changed: vec![],
        },
        Scenario {
            name: "sender without an account",
            genesis: base(),
            tx: (5, 0, transfer(0, 1)),
            code: TxCode::InsufficientFunds,
            changed: vec![],
        },
        Scenario {
            name: "one more than the balance",
            genesis: base(),
            tx: (1, 3, transfer(0, 51)),
            code: TxCode::InsufficientFunds,
            changed: vec![],
        },
        Scenario {
            name: "one more than the balance, to oneself",
            genesis: base(),
            tx: (1, 3, transfer(1, 51)),
            code: TxCode::InsufficientFunds,
            changed: vec![],
        },
        Scenario {
            name: "recipient balance would overflow",
            genesis: base(),
            tx: (0, 0, transfer(2, 1)),
            code: TxCode::BalanceOverflow,
            changed: vec![],
        },
        Scenario {
            name: "register a free name",
            genesis: base(),
            tx: (
                0,
                0,
                Payload::RegisterName {
                    name: name("fresh"),
                },
            ),
            code: TxCode::Ok,
            changed: vec![acct(0), StateKey::Name(name("fresh"))],
        },
        Scenario {
            name: "register a taken name",
            genesis: base(),
            tx: (
                0,
                0,
                Payload::RegisterName {
                    name: workload_name(0),
                },
            ),
            code: TxCode::NameTaken,
            changed: vec![],
        },
        Scenario {
            name: "pay a registered name",
            genesis: base(),
            tx: (
                0,
                0,
                Payload::PayName {
                    name: workload_name(0),
                    amount: 7,
                },
            ),
            code: TxCode::Ok,
            changed: vec![acct(0), acct(1)],
        },
        Scenario {
            name: "pay an unknown name",
            genesis: base(),
            tx: (
                0,
                0,
                Payload::PayName {
                    name: name("nobody"),
                    amount: 7,
                },
            ),
            code: TxCode::UnknownName,
            changed: vec![],
        },
        Scenario {
            name: "pay a name more than the balance",
            genesis: base(),
            tx: (
                1,
                3,
                Payload::PayName {
                    name: workload_name(0),
                    amount: 51,
                },
            ),
            code: TxCode::InsufficientFunds,
            changed: vec![],
        },
        Scenario {
            name: "work over three slots",
            genesis: base(),
            tx: (
                0,
                0,
                Payload::Work {
                    slots: WorkSlots::new(vec![3, 1, 2]).expect("valid"),
                    rounds: 5,
                },
            ),
            code: TxCode::Ok,
            changed: vec![
                acct(0),
                StateKey::WorkSlot(1),
                StateKey::WorkSlot(2),
                StateKey::WorkSlot(3),
            ],
        },
        Scenario {
            name: "work with a bad nonce",
            genesis: base(),
            tx: (
                0,
                1,
                Payload::Work {
                    slots: WorkSlots::new(vec![1]).expect("valid"),
                    rounds: 0,
                },
            ),
            code: TxCode::BadNonce,
            changed: vec![],
        },
    ];
    for scenario in scenarios {
        check(scenario);
    }
}

/// Several blocks in a row, each on the state the last one left: the root carried forward by
/// change sets equals the root of the state rebuilt from scratch after every block.
fn check_chain_of_blocks(seed: u64) {
    let accounts = 12;
    let workload = Workload::Mixed { accounts, names: 6 };
    let first = proposed(&workload, 1 + (seed % 120) as usize, seed);
    let mut state = first.genesis.clone();
    let mut outcome = first.proposal.outcome.clone();
    let executor = &parallel_executors()[2];
    let mut succeeded = 0;
    for height in 2..=5u64 {
        let label = format!("seed {seed}: height {height}");
        check_roots(&state, &outcome, &label);
        state.apply(&outcome.changes);
        let size = 1 + ((seed >> 8) as usize + height as usize * 37) % 150;
        let txs = follow_up_block(&state, seed, accounts, height, size);
        let proposal = propose(&state, &txs).expect("memory state");
        let validated = validate_block(
            executor,
            &state,
            &txs,
            &proposal.access,
            &proposal.dag,
            proposal.outcome.state_root,
        )
        .unwrap_or_else(|error| panic!("{label}: rejected: {error}"));
        assert_same(
            &validated,
            &proposal.outcome,
            "parallel vs proposer",
            &label,
        );
        succeeded += validated
            .results
            .iter()
            .filter(|r| r.code == TxCode::Ok)
            .count();
        outcome = validated;
    }
    assert!(succeeded > 0, "seed {seed}: no follow-up tx succeeded");
    state.apply(&outcome.changes);
    assert_eq!(
        MemoryState::from_pairs(state.sorted_pairs()).root(),
        state.root(),
        "seed {seed}: final state"
    );
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 16,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn incremental_root_equals_from_scratch_root_over_blocks(seed in any::<u64>()) {
        check_chain_of_blocks(seed);
    }
}

#[test]
fn replayed_chains_of_blocks() {
    for &seed in REPLAY {
        check_chain_of_blocks(seed);
    }
}
