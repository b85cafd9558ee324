//! Seeded, deterministic blocks for benchmarks and tests: a funded genesis state and a block of
//! signed txs drawn from a named distribution. The same (workload, size, seed) always gives the
//! same bytes.

use ed25519_dalek::SigningKey;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Zipf};
use rayon::prelude::*;
use rustc_hash::FxHashMap;

use crate::exec::propose;
use crate::state::{Account, MemoryState, StateKey, StateValue, StateView};
use crate::tx::{Address, ChainId, Name, Payload, Transaction, WORK_ROUNDS_MAX, WorkSlots};

/// Nanoseconds per work round (one blake3 of a 32-byte digest, what a `Work` tx loops over)
/// on this machine: the fastest of three timed runs, measured once per process.
pub fn work_round_ns() -> f64 {
    static ROUND_NS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *ROUND_NS.get_or_init(|| {
        const ROUNDS: u32 = 50_000;
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            let mut digest = [0u8; 32];
            let start = std::time::Instant::now();
            for _ in 0..ROUNDS {
                digest = *blake3::hash(&digest).as_bytes();
            }
            std::hint::black_box(digest);
            best = best.min(start.elapsed().as_nanos() as f64 / f64::from(ROUNDS));
        }
        best.max(1.0)
    })
}

/// Rounds for a work tx of about `micros` µs on this machine ([`work_round_ns`]), rounded and
/// capped at [`WORK_ROUNDS_MAX`] (a tx asking for more is malformed). A tx's whole execution
/// adds a few µs of state reads and writes on top.
pub fn work_rounds(micros: u32) -> u32 {
    let rounds = (f64::from(micros) * 1_000.0 / work_round_ns()).round();
    (rounds as u32).min(WORK_ROUNDS_MAX)
}

/// Balance every genesis account starts with.
pub const GENESIS_BALANCE: u64 = 1_000_000_000;

/// The shape of a generated block.
#[derive(Clone, Debug, PartialEq)]
pub enum Workload {
    /// Transfers between accounts drawn uniformly.
    Uniform { accounts: u32 },
    /// Transfers whose sender and recipient follow a Zipf law with exponent `s`.
    Zipf { accounts: u32, s: f64 },
    /// Transfers from uniform senders; `hot_percent` of them pay one hot account.
    Hot { accounts: u32, hot_percent: u32 },
    /// One sender, consecutive nonces: every tx depends on the one before.
    Chain { accounts: u32 },
    /// Payments to registered names, resolved at execution time.
    PayName { accounts: u32, names: u32 },
    /// Work txs over `slots_per_tx` slots drawn uniformly from `slot_space`.
    Work {
        accounts: u32,
        rounds: u32,
        slots_per_tx: u32,
        slot_space: u64,
    },
    /// Every kind, including txs that fail (bad nonce, insufficient funds, unknown or taken
    /// names), over a small hot account set. For property tests.
    Mixed { accounts: u32, names: u32 },
}

/// A generated genesis state and block.
pub struct GeneratedBlock {
    pub chain_id: ChainId,
    pub genesis: MemoryState,
    pub txs: Vec<Transaction>,
}

/// The signing key of account `index` under `seed`.
pub fn account_key(seed: u64, index: u32) -> SigningKey {
    let mut hasher = blake3::Hasher::new_derive_key("weft/workload-account/v1");
    hasher.update(&seed.to_le_bytes());
    hasher.update(&index.to_le_bytes());
    SigningKey::from_bytes(hasher.finalize().as_bytes())
}

/// The name `index` of a workload's registry.
pub fn workload_name(index: u32) -> Name {
    Name::new(&format!("name-{index}")).expect("generated names are valid")
}

/// The unsigned content of one tx, before signing.
struct Draft {
    sender: u32,
    nonce: u64,
    payload: Payload,
}

struct Generator<'a> {
    rng: ChaCha8Rng,
    workload: &'a Workload,
    addresses: &'a [Address],
    next_nonce: FxHashMap<u32, u64>,
}

impl Generator<'_> {
    fn nonce(&mut self, sender: u32) -> u64 {
        let nonce = self.next_nonce.entry(sender).or_insert(0);
        *nonce += 1;
        *nonce - 1
    }

    fn other_than(&mut self, sender: u32, accounts: u32) -> u32 {
        let pick = self.rng.random_range(0..accounts - 1);
        if pick >= sender { pick + 1 } else { pick }
    }

    fn transfer(&mut self, sender: u32, recipient: u32) -> Draft {
        let amount = self.rng.random_range(1..100);
        Draft {
            sender,
            nonce: self.nonce(sender),
            payload: Payload::Transfer {
                to: self.addresses[recipient as usize],
                amount,
            },
        }
    }

    fn draft(&mut self, zipf: Option<&Zipf<f64>>) -> Draft {
        match *self.workload {
            Workload::Uniform { accounts } => {
                let sender = self.rng.random_range(0..accounts);
                let recipient = self.other_than(sender, accounts);
                self.transfer(sender, recipient)
            }
            Workload::Zipf { accounts, .. } => {
                let zipf = zipf.expect("zipf distribution built for this workload");
                let sender = zipf.sample(&mut self.rng) as u32 - 1;
                let mut recipient = zipf.sample(&mut self.rng) as u32 - 1;
                if recipient == sender {
                    recipient = self.other_than(sender, accounts);
                }
                self.transfer(sender, recipient)
            }
            Workload::Hot {
                accounts,
                hot_percent,
            } => {
                let sender = self.rng.random_range(1..accounts);
                let recipient = if self.rng.random_range(0..100) < hot_percent {
                    0
                } else {
                    self.other_than(sender, accounts)
                };
                self.transfer(sender, recipient)
            }
            Workload::Chain { accounts } => {
                let recipient = self.rng.random_range(1..accounts);
                self.transfer(0, recipient)
            }
            Workload::PayName { accounts, names } => {
                let sender = self.rng.random_range(0..accounts);
                let name = workload_name(self.rng.random_range(0..names));
                let amount = self.rng.random_range(1..100);
                Draft {
                    sender,
                    nonce: self.nonce(sender),
                    payload: Payload::PayName { name, amount },
                }
            }
            Workload::Work {
                accounts,
                rounds,
                slots_per_tx,
                slot_space,
            } => {
                let sender = self.rng.random_range(0..accounts);
                let slots = (0..slots_per_tx)
                    .map(|_| self.rng.random_range(0..slot_space))
                    .collect();
                Draft {
                    sender,
                    nonce: self.nonce(sender),
                    payload: Payload::Work {
                        slots: WorkSlots::new(slots).expect("1 to 8 slots"),
                        rounds,
                    },
                }
            }
            Workload::Mixed { .. } => unreachable!("Mixed is drawn against a live state"),
        }
    }

    /// One tx of the `Mixed` workload against `state`, the state after every tx drawn so far:
    /// its nonce is the sender's live nonce (or, 1 time in 20, a wrong one), so a tx that fails
    /// does not lock its sender out of the rest of the block.
    fn mixed(&mut self, state: &MemoryState, accounts: u32, names: u32) -> Draft {
        let sender = self.rng.random_range(0..accounts);
        let mut nonce = match state.get(&StateKey::Account(self.addresses[sender as usize])) {
            Ok(Some(StateValue::Account(account))) => account.nonce,
            _ => 0,
        };
        if self.rng.random_range(0..20) == 0 {
            nonce = nonce.wrapping_add(self.rng.random_range(1..3));
        }
        // Names 0..names are registered at genesis; the generator also asks for names beyond.
        let name = workload_name(self.rng.random_range(0..names * 2));
        let amount = if self.rng.random_range(0..10) == 0 {
            GENESIS_BALANCE * 2
        } else {
            self.rng.random_range(1..1_000)
        };
        let payload = match self.rng.random_range(0..5) {
            0 | 1 => Payload::Transfer {
                to: self.addresses[self.rng.random_range(0..accounts) as usize],
                amount,
            },
            2 => Payload::RegisterName { name },
            3 => Payload::PayName { name, amount },
            _ => {
                let slots = (0..self.rng.random_range(1..4))
                    .map(|_| self.rng.random_range(0..16))
                    .collect();
                Payload::Work {
                    slots: WorkSlots::new(slots).expect("1 to 3 slots"),
                    rounds: self.rng.random_range(0..4),
                }
            }
        };
        Draft {
            sender,
            nonce,
            payload,
        }
    }
}

impl Generator<'_> {
    /// Draws `Mixed` txs one at a time, running each on a scratch state as it is drawn.
    fn mixed_block(
        &mut self,
        genesis: &MemoryState,
        keys: &[SigningKey],
        chain_id: &ChainId,
        tx_count: usize,
        accounts: u32,
        names: u32,
    ) -> Vec<Transaction> {
        let mut state = genesis.clone();
        let mut txs = Vec::with_capacity(tx_count);
        for _ in 0..tx_count {
            let draft = self.mixed(&state, accounts, names);
            let key = &keys[draft.sender as usize];
            let tx = Transaction::sign(chain_id.clone(), key, draft.nonce, draft.payload);
            let ran = propose(&state, std::slice::from_ref(&tx)).expect("memory state");
            state.apply(&ran.outcome.changes);
            txs.push(tx);
        }
        txs
    }
}

impl Workload {
    fn accounts(&self) -> u32 {
        match *self {
            Workload::Uniform { accounts }
            | Workload::Zipf { accounts, .. }
            | Workload::Hot { accounts, .. }
            | Workload::Chain { accounts }
            | Workload::PayName { accounts, .. }
            | Workload::Work { accounts, .. }
            | Workload::Mixed { accounts, .. } => accounts,
        }
    }

    fn registered_names(&self) -> u32 {
        match *self {
            Workload::PayName { names, .. } | Workload::Mixed { names, .. } => names,
            _ => 0,
        }
    }

    /// Generates the genesis state and a block of `tx_count` signed txs.
    pub fn generate(&self, tx_count: usize, seed: u64) -> GeneratedBlock {
        let accounts = self.accounts();
        assert!(accounts >= 2, "a workload needs at least two accounts");
        let keys: Vec<SigningKey> = (0..accounts)
            .into_par_iter()
            .map(|index| account_key(seed, index))
            .collect();
        let addresses: Vec<Address> = keys.par_iter().map(Address::from).collect();
        let genesis = self.genesis(&addresses);
        let zipf = match *self {
            Workload::Zipf { accounts, s } => {
                Some(Zipf::new(f64::from(accounts), s).expect("valid zipf parameters"))
            }
            _ => None,
        };
        let mut generator = Generator {
            rng: ChaCha8Rng::seed_from_u64(seed),
            workload: self,
            addresses: &addresses,
            next_nonce: FxHashMap::default(),
        };
        let chain_id = ChainId::new("weft-workload").expect("valid chain id");
        let txs = match *self {
            Workload::Mixed { accounts, names } => {
                generator.mixed_block(&genesis, &keys, &chain_id, tx_count, accounts, names)
            }
            _ => {
                let drafts: Vec<Draft> = (0..tx_count)
                    .map(|_| generator.draft(zipf.as_ref()))
                    .collect();
                drafts
                    .into_par_iter()
                    .map(|draft| {
                        let key = &keys[draft.sender as usize];
                        Transaction::sign(chain_id.clone(), key, draft.nonce, draft.payload)
                    })
                    .collect()
            }
        };
        GeneratedBlock {
            chain_id,
            genesis,
            txs,
        }
    }

    fn genesis(&self, addresses: &[Address]) -> MemoryState {
        let funded = addresses.iter().map(|address| {
            let account = Account {
                balance: GENESIS_BALANCE,
                nonce: 0,
            };
            (StateKey::Account(*address), StateValue::Account(account))
        });
        let names = (0..self.registered_names()).map(|index| {
            let owner = addresses[index as usize % addresses.len()];
            (
                StateKey::Name(workload_name(index)),
                StateValue::NameOwner(owner),
            )
        });
        MemoryState::from_pairs(funded.chain(names))
    }
}
