//! What each transaction kind does to the state. One function, [`apply_tx`], written against the
//! [`TxStore`] trait, serves the proposer, the serial executor and the parallel executor, so
//! their semantics cannot drift apart.
//!
//! A tx reads everything it needs before it writes anything, and writes only when it succeeds: a
//! failed tx changes no state, but the reads it made stay in its access set.

use crate::state::{Account, StateKey, StateValue};
use crate::tx::{Address, Payload, Transaction, VALIDATOR_COUNT_MAX, ValidatorKey};

/// The outcome code of one tx. Anything but `Ok` leaves the state untouched.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[repr(u8)]
pub enum TxCode {
    Ok = 0,
    /// The nonce is not the sender's next nonce.
    BadNonce = 1,
    /// The sender cannot cover the amount.
    InsufficientFunds = 2,
    /// `PayName` named a name nobody owns.
    UnknownName = 3,
    /// `RegisterName` named a name somebody owns.
    NameTaken = 4,
    /// The recipient's balance would overflow.
    BalanceOverflow = 5,
    /// A validator update from an account that is not the validator authority.
    NotAuthority = 6,
    /// A validator update removing (power 0) a key that is not a validator.
    UnknownValidator = 7,
    /// A validator update that would leave no validator.
    EmptyValidatorSet = 8,
    /// A validator update over the total power's limit, or past the most validators a set holds.
    ValidatorLimit = 9,
    /// A validator update moving more than a third of the total power (3 × |change| > total).
    PowerChangeTooLarge = 10,
    /// A validator update setting the power the validator already has: a duplicate.
    ValidatorUnchanged = 11,
}

/// The largest total validator power: CometBFT's, so priorities never overflow.
pub const VALIDATOR_TOTAL_POWER_MAX: u64 = (i64::MAX / 8) as u64;

/// The per-tx result executors return.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct TxResult {
    pub code: TxCode,
}

/// A tx touched the state outside the access set its block declared for it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AccessViolation {
    /// It read or wrote a key the declared set does not allow (the set was too small).
    Undeclared {
        key: StateKey,
        mode: crate::access::AccessMode,
    },
    /// A declared access never happened (the set was too large).
    Unused {
        key: StateKey,
        mode: crate::access::AccessMode,
    },
}

/// State access for one tx. Validators' stores check declared access sets and fail with an
/// [`AccessViolation`]; the proposer's store records accesses and fails only on storage errors.
pub trait TxStore {
    type Error;
    fn read(&mut self, key: &StateKey) -> Result<Option<StateValue>, Self::Error>;
    fn write(&mut self, key: &StateKey, value: StateValue) -> Result<(), Self::Error>;
}

fn read_account<S: TxStore>(store: &mut S, address: Address) -> Result<Account, S::Error> {
    match store.read(&StateKey::Account(address))? {
        None => Ok(Account::default()),
        Some(StateValue::Account(account)) => Ok(account),
        Some(other) => unreachable!("account key holds {other:?}; storage checks value types"),
    }
}

fn write_account<S: TxStore>(
    store: &mut S,
    address: Address,
    account: Account,
) -> Result<(), S::Error> {
    store.write(&StateKey::Account(address), StateValue::Account(account))
}

/// Executes one tx against `store`. `Err` only when the store fails; a tx that fails by the
/// rules returns its failure code.
pub fn apply_tx<S: TxStore>(tx: &Transaction, store: &mut S) -> Result<TxCode, S::Error> {
    let mut sender = read_account(store, tx.sender)?;
    // An exhausted nonce space fails like a wrong nonce, so `nonce + 1` below cannot overflow.
    if tx.nonce != sender.nonce || sender.nonce == u64::MAX {
        return Ok(TxCode::BadNonce);
    }
    match &tx.payload {
        Payload::Transfer { to, amount } => pay(store, tx.sender, sender, *to, *amount),
        Payload::RegisterName { name } => {
            let key = StateKey::Name(*name);
            if store.read(&key)?.is_some() {
                return Ok(TxCode::NameTaken);
            }
            sender.nonce += 1;
            write_account(store, tx.sender, sender)?;
            store.write(&key, StateValue::NameOwner(tx.sender))?;
            Ok(TxCode::Ok)
        }
        Payload::PayName { name, amount } => match store.read(&StateKey::Name(*name))? {
            None => Ok(TxCode::UnknownName),
            Some(StateValue::NameOwner(owner)) => pay(store, tx.sender, sender, owner, *amount),
            Some(other) => unreachable!("name key holds {other:?}; storage checks value types"),
        },
        Payload::Work { slots, rounds } => {
            let mut values = Vec::with_capacity(slots.as_slice().len());
            for slot in slots.as_slice() {
                values.push(match store.read(&StateKey::WorkSlot(*slot))? {
                    None => [0u8; 32],
                    Some(StateValue::WorkDigest(digest)) => digest,
                    Some(other) => unreachable!("work slot holds {other:?}"),
                });
            }
            let digest = work_digest(tx, &values, *rounds);
            sender.nonce += 1;
            write_account(store, tx.sender, sender)?;
            for slot in slots.as_slice() {
                store.write(&StateKey::WorkSlot(*slot), StateValue::WorkDigest(digest))?;
            }
            Ok(TxCode::Ok)
        }
        Payload::ValidatorUpdate { validator, power } => {
            update_validator(store, tx.sender, sender, *validator, *power)
        }
    }
}

/// Sets a validator's scheduled power. The checks a single update can fail: the authority, an
/// unknown removal, an empty set, the limits, the one-third bound against the scheduled total,
/// and a no-op. (That one block carries at most one update, so one height's change stays within
/// the bound, is the chain's rule: a block's validity, not a tx's outcome.)
fn update_validator<S: TxStore>(
    store: &mut S,
    from: Address,
    mut sender: Account,
    validator: ValidatorKey,
    power: u64,
) -> Result<TxCode, S::Error> {
    let authority = match store.read(&StateKey::ValidatorAuthority)? {
        Some(StateValue::Authority(authority)) => Some(authority),
        None => None,
        Some(other) => unreachable!("authority key holds {other:?}"),
    };
    if authority != Some(from) {
        return Ok(TxCode::NotAuthority);
    }
    let key = StateKey::Validator(validator);
    // The state has no deletions: a removed validator keeps its key at power 0.
    let old = match store.read(&key)? {
        Some(StateValue::ValidatorPower(0)) | None => None,
        Some(StateValue::ValidatorPower(power)) => Some(power),
        Some(other) => unreachable!("validator key holds {other:?}"),
    };
    let (total, count) = match store.read(&StateKey::ValidatorTotals)? {
        Some(StateValue::ValidatorTotals { total, count }) => (total, count),
        None => (0, 0),
        Some(other) => unreachable!("validator totals key holds {other:?}"),
    };
    let code = match (old, power) {
        (None, 0) => Some(TxCode::UnknownValidator),
        (Some(old), new) if old == new => Some(TxCode::ValidatorUnchanged),
        (Some(_), 0) if count <= 1 => Some(TxCode::EmptyValidatorSet),
        (None, _) if count >= VALIDATOR_COUNT_MAX => Some(TxCode::ValidatorLimit),
        _ => None,
    };
    if let Some(code) = code {
        return Ok(code);
    }
    let old_power = old.unwrap_or(0);
    let new_total = u128::from(total) + u128::from(power) - u128::from(old_power);
    if new_total > u128::from(VALIDATOR_TOTAL_POWER_MAX) {
        return Ok(TxCode::ValidatorLimit);
    }
    if u128::from(old_power.abs_diff(power)) * 3 > u128::from(total) {
        return Ok(TxCode::PowerChangeTooLarge);
    }
    let count = match (old, power) {
        (None, _) => count + 1,
        (Some(_), 0) => count - 1,
        _ => count,
    };
    sender.nonce += 1;
    write_account(store, from, sender)?;
    store.write(&key, StateValue::ValidatorPower(power))?;
    store.write(
        &StateKey::ValidatorTotals,
        StateValue::ValidatorTotals {
            total: new_total as u64,
            count,
        },
    )?;
    Ok(TxCode::Ok)
}

/// Moves `amount` from `from` (already read as `sender`) to `to`, bumping the sender's nonce.
fn pay<S: TxStore>(
    store: &mut S,
    from: Address,
    mut sender: Account,
    to: Address,
    amount: u64,
) -> Result<TxCode, S::Error> {
    if sender.balance < amount {
        return Ok(TxCode::InsufficientFunds);
    }
    sender.nonce += 1;
    if to == from {
        write_account(store, from, sender)?;
        return Ok(TxCode::Ok);
    }
    let mut recipient = read_account(store, to)?;
    let Some(credited) = recipient.balance.checked_add(amount) else {
        return Ok(TxCode::BalanceOverflow);
    };
    recipient.balance = credited;
    sender.balance -= amount;
    write_account(store, from, sender)?;
    write_account(store, to, recipient)?;
    Ok(TxCode::Ok)
}

/// Deterministic benchmark work: blake3 over the tx's identity and the slots' values, then
/// `rounds` more rounds of blake3 over the previous digest.
pub fn work_digest(tx: &Transaction, values: &[[u8; 32]], rounds: u32) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_derive_key("weft/work/v1");
    hasher.update(&tx.sender.0);
    hasher.update(&tx.nonce.to_le_bytes());
    for value in values {
        hasher.update(value);
    }
    let mut digest = *hasher.finalize().as_bytes();
    for _ in 0..rounds {
        digest = *blake3::hash(&digest).as_bytes();
    }
    digest
}
