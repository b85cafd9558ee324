//! Shared fixtures: executors built once, seeded blocks, and follow-up blocks with live nonces.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use weft_execution::workload::{GENESIS_BALANCE, Workload, account_key, workload_name};
use weft_execution::{
    Account, Address, ChainId, ExecutorConfig, LtHash, MemoryState, Name, ParallelExecutor,
    Payload, Proposal, StateKey, StateValue, StateView, StorageError, Transaction, WorkSlots,
    propose,
};

/// Thread counts every parallel check runs on.
pub const THREADS: [usize; 4] = [1, 2, 4, 8];

/// One parallel executor per entry of [`THREADS`], configured so that the parallel path runs on
/// every block, however small or narrow. Built once for the whole binary: pools are costly.
pub fn parallel_executors() -> &'static [ParallelExecutor] {
    static EXECUTORS: OnceLock<Vec<ParallelExecutor>> = OnceLock::new();
    EXECUTORS.get_or_init(|| {
        THREADS
            .iter()
            .map(|&threads| {
                ParallelExecutor::new(ExecutorConfig {
                    threads,
                    parallel_txs_min: 0,
                    parallelism_percent_min: 0,
                    tx_cost_ns_min: 0,
                })
                .expect("thread pool builds")
            })
            .collect()
    })
}

/// A generated block and what the proposer made of it.
pub struct Block {
    /// The workload, size and seed, for failure messages.
    pub label: String,
    pub genesis: MemoryState,
    pub txs: Vec<Transaction>,
    pub proposal: Proposal,
}

impl Block {
    /// Runs the proposer over `txs`.
    pub fn new(label: String, genesis: MemoryState, txs: Vec<Transaction>) -> Self {
        let proposal = propose(&genesis, &txs).expect("memory state never fails");
        Block {
            label,
            genesis,
            txs,
            proposal,
        }
    }
}

/// Generates `size` txs of `workload` under `seed` and runs the proposer over them.
pub fn proposed(workload: &Workload, size: usize, seed: u64) -> Block {
    let generated = workload.generate(size, seed);
    let label = format!("seed {seed}: {workload:?}, {size} txs");
    Block::new(label, generated.genesis, generated.txs)
}

/// A seeded rng for choices a test derives from its seed.
pub fn rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// A `Mixed` workload with few accounts and names (so there are hot keys and failing txs), and a
/// block size of 1 to 300, all drawn from `seed`.
pub fn mixed_case(seed: u64) -> (Workload, usize) {
    let mut rng = rng(seed, 1);
    let workload = Workload::Mixed {
        accounts: rng.random_range(8..40),
        names: rng.random_range(4..16),
    };
    (workload, rng.random_range(1..300))
}

/// One of the other workload shapes, small, with a block size of 1 to 300, drawn from `seed`.
pub fn shaped_case(seed: u64) -> (Workload, usize) {
    let mut rng = rng(seed, 2);
    let workload = match rng.random_range(0..6) {
        0 => Workload::Hot {
            accounts: rng.random_range(2..40),
            hot_percent: rng.random_range(0..=100),
        },
        1 => Workload::PayName {
            accounts: rng.random_range(2..40),
            names: rng.random_range(1..16),
        },
        2 => Workload::Work {
            accounts: rng.random_range(2..32),
            rounds: rng.random_range(0..8),
            slots_per_tx: rng.random_range(1..5),
            slot_space: rng.random_range(1..64),
        },
        3 => Workload::Chain {
            accounts: rng.random_range(2..16),
        },
        4 => Workload::Uniform {
            accounts: rng.random_range(2..64),
        },
        _ => Workload::Zipf {
            accounts: rng.random_range(2..64),
            s: rng.random_range(0.5..2.0),
        },
    };
    (workload, rng.random_range(1..300))
}

/// The chain id `Workload::generate` signs with.
pub fn workload_chain() -> ChainId {
    ChainId::new("weft-workload").expect("valid chain id")
}

/// A block for a state that has moved past genesis: txs from the `accounts` accounts of a
/// workload generated under `seed`. The mix has transfers, registrations (some of taken names),
/// payments to names (some unknown), work txs, and txs that fail (about 1 in 20 with a wrong
/// nonce, 1 in 10 unaffordable). Each tx is run as it is drawn, so a sender's next nonce
/// advances only when its tx succeeds: failures do not lock senders out of the rest of the
/// block.
pub fn follow_up_block(
    state: &impl StateView,
    seed: u64,
    accounts: u32,
    height: u64,
    size: usize,
) -> Vec<Transaction> {
    let mut rng = rng(seed, 100 + height);
    let keys: Vec<_> = (0..accounts).map(|i| account_key(seed, i)).collect();
    let addresses: Vec<Address> = keys.iter().map(Address::from).collect();
    let chain = workload_chain();
    let mut overlay = Overlay {
        base: state,
        writes: BTreeMap::new(),
        lattice: LtHash::identity(),
    };
    let mut txs = Vec::with_capacity(size);
    for _ in 0..size {
        let sender = rng.random_range(0..accounts);
        let nonce = account(&overlay, addresses[sender as usize]).nonce;
        let nonce = if rng.random_range(0..20) == 0 {
            nonce + rng.random_range(1..3)
        } else {
            nonce
        };
        let amount = if rng.random_range(0..10) == 0 {
            GENESIS_BALANCE * 3
        } else {
            rng.random_range(1..1_000)
        };
        let name = if rng.random_bool(0.5) {
            workload_name(rng.random_range(0..8))
        } else {
            Name::new(&format!("late-{}", rng.random_range(0..12))).expect("valid name")
        };
        let payload = match rng.random_range(0..4) {
            0 => Payload::Transfer {
                to: addresses[rng.random_range(0..accounts) as usize],
                amount,
            },
            1 => Payload::RegisterName { name },
            2 => Payload::PayName { name, amount },
            _ => Payload::Work {
                slots: WorkSlots::new(
                    (0..rng.random_range(1..4))
                        .map(|_| rng.random_range(0..24))
                        .collect(),
                )
                .expect("1 to 3 slots"),
                rounds: rng.random_range(0..4),
            },
        };
        let tx = Transaction::sign(chain.clone(), &keys[sender as usize], nonce, payload);
        let ran = propose(&overlay, std::slice::from_ref(&tx)).expect("state reads");
        overlay.writes.extend(ran.outcome.changes.writes);
        txs.push(tx);
    }
    txs
}

/// A state with some writes on top, for running a block as it is drawn. Its lattice is a
/// placeholder: only values matter here.
struct Overlay<'a, S> {
    base: &'a S,
    writes: BTreeMap<StateKey, StateValue>,
    lattice: LtHash,
}

impl<S: StateView> StateView for Overlay<'_, S> {
    fn get(&self, key: &StateKey) -> Result<Option<StateValue>, StorageError> {
        match self.writes.get(key) {
            Some(value) => Ok(Some(*value)),
            None => self.base.get(key),
        }
    }

    fn lattice(&self) -> &LtHash {
        &self.lattice
    }
}

/// A Mixed genesis (8 to 40 accounts, 4 to 16 names) and a follow-up block of 1 to 300 txs on
/// it, all drawn from `seed`: every kind of tx and every failure, with live nonces.
pub fn live_mixed(seed: u64) -> Block {
    let mut rng = rng(seed, 4);
    let accounts = rng.random_range(8..40);
    let names = rng.random_range(4..16);
    let size = rng.random_range(1..300);
    let genesis = Workload::Mixed { accounts, names }
        .generate(0, seed)
        .genesis;
    let txs = follow_up_block(&genesis, seed, accounts, 1, size);
    let label =
        format!("seed {seed}: live Mixed {{ accounts: {accounts}, names: {names} }}, {size} txs");
    Block::new(label, genesis, txs)
}

/// The account stored under `address`, or the default for an absent one.
pub fn account(state: &impl StateView, address: Address) -> Account {
    match state.get(&StateKey::Account(address)).expect("state read") {
        Some(StateValue::Account(account)) => account,
        None => Account::default(),
        Some(other) => panic!("account key holds {other:?}"),
    }
}
