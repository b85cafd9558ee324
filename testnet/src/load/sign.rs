//! What each tx of a run is, and signing it.
//!
//! Tx `i` of a run comes from account `i % accounts` with nonce `start[i % accounts] +
//! i / accounts`, so each account's nonces are contiguous in send order. Its recipient (or
//! name, or slot) is the `i`-th draw of one seeded RNG, so a (spec, seed, start nonces) triple
//! always gives the same bytes. Draws are sequential and cheap; signatures run on rayon.

use std::sync::Arc;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use weft_execution::{Address, ChainId, Name, Payload, Transaction, WorkSlots};

use super::sample::Sampler;
use crate::manifest::load_key;

/// Amount of every transfer and name payment.
pub const AMOUNT: u64 = 1;

/// A signed tx ready to send.
#[derive(Clone, Debug)]
pub struct SignedTx {
    /// Index of the sending load account.
    pub account: u32,
    pub hash: [u8; 32],
    /// `Transaction::encode`.
    pub bytes: Arc<[u8]>,
}

/// What the timed phase's txs carry besides their sender and nonce.
#[derive(Clone, Debug)]
pub enum Body {
    /// Pay the drawn account.
    Transfer,
    /// Pay the drawn name.
    PayName(Vec<Name>),
    /// Hash the drawn slot for `rounds` rounds.
    Work { rounds: u32 },
}

type SignFn = dyn Fn(usize, u64, Payload) -> Transaction + Send + Sync;

/// The first load accounts' keys, ready to sign. The ed25519 keys live inside a closure, so
/// this crate signs through `weft_genesis` and `weft_execution` without naming ed25519 types.
pub struct Signer {
    sign: Box<SignFn>,
    pub addresses: Vec<Address>,
}

impl Signer {
    /// Load accounts `first..first + accounts` of [`load_key`], derived in parallel; the
    /// signer numbers them from 0.
    pub fn load_accounts(chain_id: ChainId, first: usize, accounts: usize) -> Signer {
        let keys: Vec<_> = (first..first + accounts)
            .into_par_iter()
            .map(|i| load_key(i).signing_key())
            .collect();
        let addresses = keys
            .iter()
            .map(|key| Address(key.verifying_key().to_bytes()))
            .collect();
        Signer {
            sign: Box::new(move |account, nonce, payload| {
                Transaction::sign(chain_id.clone(), &keys[account], nonce, payload)
            }),
            addresses,
        }
    }

    pub fn accounts(&self) -> usize {
        self.addresses.len()
    }

    /// Account `account`'s tx with this nonce and payload.
    pub fn sign(&self, account: usize, nonce: u64, payload: Payload) -> SignedTx {
        let tx = (self.sign)(account, nonce, payload);
        SignedTx {
            account: account as u32,
            hash: tx.hash().0,
            bytes: tx.encode().into(),
        }
    }
}

/// Everything needed to sign tx `i` of a run.
pub struct Plan {
    pub signer: Signer,
    /// Each account's first nonce.
    pub nonces: Vec<u64>,
    pub body: Body,
    pub sampler: Sampler,
}

/// Draws the keys of a run's txs in order; the state carries over from chunk to chunk.
pub struct Draws {
    rng: ChaCha8Rng,
    next: u64,
}

impl Draws {
    pub fn new(seed: u64) -> Draws {
        Draws {
            rng: ChaCha8Rng::seed_from_u64(seed),
            next: 0,
        }
    }
}

impl Plan {
    /// The next `count` txs, signed in parallel.
    pub fn sign_next(&self, draws: &mut Draws, count: u64) -> Vec<SignedTx> {
        let first = draws.next;
        let keys: Vec<usize> = (0..count)
            .map(|_| self.sampler.sample(&mut draws.rng))
            .collect();
        draws.next += count;
        keys.into_par_iter()
            .enumerate()
            .map(|(offset, key)| self.sign(first + offset as u64, key))
            .collect()
    }

    fn sign(&self, index: u64, key: usize) -> SignedTx {
        let accounts = self.signer.accounts() as u64;
        let account = (index % accounts) as usize;
        let nonce = self.nonces[account] + index / accounts;
        let payload = match &self.body {
            Body::Transfer => Payload::Transfer {
                to: self.signer.addresses[key],
                amount: AMOUNT,
            },
            Body::PayName(names) => Payload::PayName {
                name: names[key],
                amount: AMOUNT,
            },
            Body::Work { rounds } => Payload::Work {
                slots: WorkSlots::new(vec![key as u64]).expect("one slot is a valid slot set"),
                rounds: *rounds,
            },
        };
        self.signer.sign(account, nonce, payload)
    }
}

pub use weft_execution::workload::{work_round_ns, work_rounds};

#[cfg(test)]
mod tests {
    use weft_execution::Transaction;

    use weft_execution::tx::WORK_ROUNDS_MAX;

    use super::*;
    use crate::load::Distribution;

    fn plan(body: Body, accounts: usize, nonces: Vec<u64>) -> Plan {
        Plan {
            signer: Signer::load_accounts(ChainId::new("weft-test").unwrap(), 0, accounts),
            nonces,
            body,
            sampler: Sampler::new(&Distribution::Uniform, accounts).unwrap(),
        }
    }

    #[test]
    fn txs_go_round_robin_with_contiguous_nonces_and_chunks_continue() {
        let plan = plan(Body::Transfer, 3, vec![10, 0, 5]);
        let mut draws = Draws::new(7);
        let mut txs = plan.sign_next(&mut draws, 4);
        txs.extend(plan.sign_next(&mut draws, 3));
        let decoded: Vec<(u32, u64)> = txs
            .iter()
            .map(|tx| {
                let decoded = Transaction::decode(&tx.bytes).unwrap();
                assert_eq!(decoded.hash().0, tx.hash);
                assert_eq!(decoded.sender, plan.signer.addresses[tx.account as usize]);
                assert_eq!(decoded.sender.0, load_key(tx.account as usize).public());
                (tx.account, decoded.nonce)
            })
            .collect();
        assert_eq!(
            decoded,
            [(0, 10), (1, 0), (2, 5), (0, 11), (1, 1), (2, 6), (0, 12)]
        );
        let mut again = Draws::new(7);
        let whole = plan.sign_next(&mut again, 7);
        let hashes = |txs: &[SignedTx]| txs.iter().map(|t| t.hash).collect::<Vec<_>>();
        assert_eq!(
            hashes(&whole),
            hashes(&txs),
            "chunking does not change the txs"
        );
    }

    #[test]
    fn bodies_become_their_payloads() {
        let names = vec![Name::new("load-0").unwrap(), Name::new("load-1").unwrap()];
        let mut pay = plan(Body::PayName(names.clone()), 2, vec![0, 0]);
        pay.sampler = Sampler::new(&Distribution::Hot(100.0), 2).unwrap();
        let tx = &pay.sign_next(&mut Draws::new(1), 1)[0];
        assert!(matches!(
            Transaction::decode(&tx.bytes).unwrap().payload,
            Payload::PayName { name, amount: AMOUNT } if name == names[0]
        ));
        let work = plan(Body::Work { rounds: 7 }, 2, vec![0, 0]);
        let tx = &work.sign_next(&mut Draws::new(1), 1)[0];
        assert!(matches!(
            Transaction::decode(&tx.bytes).unwrap().payload,
            Payload::Work { rounds: 7, ref slots } if slots.as_slice().len() == 1
        ));
    }

    #[test]
    fn work_rounds_grow_with_micros_and_stop_at_the_cap() {
        assert_eq!(work_rounds(0), 0);
        assert!(work_rounds(20) <= work_rounds(40));
        assert_eq!(work_rounds(u32::MAX / 1_000), WORK_ROUNDS_MAX);
    }
}
