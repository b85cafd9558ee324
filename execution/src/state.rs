//! State keys and values, the read interface executors use, and an in-memory state.
//!
//! The state is a map from [`StateKey`] to [`StateValue`]. The key decides the value's type: an
//! account holds an [`Account`], a name holds its owner, a work slot holds a digest. Ordering and
//! encodings are deterministic; nothing here uses floats or hash-map iteration order.

use rustc_hash::FxHashMap;

use crate::codec::{DecodeError, Reader, put_u64};
use crate::lattice::{LtHash, StateRoot};
use crate::storage::StorageError;
use crate::tx::{Address, Name, ValidatorKey};

/// A key in the state. The derived order is the canonical one used by access sets.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum StateKey {
    Account(Address),
    Name(Name),
    WorkSlot(u64),
    /// A validator's scheduled voting power (absent: not a validator).
    Validator(ValidatorKey),
    /// The scheduled validator set's total power and size.
    ValidatorTotals,
    /// The account allowed to change the validator set.
    ValidatorAuthority,
}

impl StateKey {
    /// The first byte of a [`StateKey::Validator`] key's encoding.
    pub const VALIDATOR_KIND: u8 = 3;

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            StateKey::Account(address) => {
                out.push(0);
                out.extend_from_slice(&address.0);
            }
            StateKey::Name(name) => {
                out.push(1);
                name.encode_into(out);
            }
            StateKey::WorkSlot(slot) => {
                out.push(2);
                out.extend_from_slice(&slot.to_be_bytes());
            }
            StateKey::Validator(key) => {
                out.push(3);
                out.extend_from_slice(&key.0);
            }
            StateKey::ValidatorTotals => out.push(4),
            StateKey::ValidatorAuthority => out.push(5),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(34);
        self.encode_into(&mut out);
        out
    }

    pub fn decode_from(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match reader.u8("state key kind")? {
            0 => Ok(StateKey::Account(Address(reader.array("account address")?))),
            1 => Ok(StateKey::Name(Name::decode_from(reader)?)),
            2 => Ok(StateKey::WorkSlot(u64::from_be_bytes(
                reader.array("work slot")?,
            ))),
            3 => Ok(StateKey::Validator(ValidatorKey::new(
                reader.array("validator key")?,
            )?)),
            4 => Ok(StateKey::ValidatorTotals),
            5 => Ok(StateKey::ValidatorAuthority),
            tag => Err(DecodeError::UnknownTag {
                what: "state key kind",
                tag,
            }),
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut reader = Reader::new(bytes);
        let key = Self::decode_from(&mut reader)?;
        reader.finish()?;
        Ok(key)
    }
}

/// An account's balance and next expected nonce.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Account {
    pub balance: u64,
    pub nonce: u64,
}

/// A value in the state. Small and `Copy`, so reads never allocate.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum StateValue {
    Account(Account),
    NameOwner(Address),
    WorkDigest([u8; 32]),
    ValidatorPower(u64),
    ValidatorTotals { total: u64, count: u32 },
    Authority(Address),
}

impl StateValue {
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            StateValue::Account(account) => {
                out.push(0);
                put_u64(out, account.balance);
                put_u64(out, account.nonce);
            }
            StateValue::NameOwner(owner) => {
                out.push(1);
                out.extend_from_slice(&owner.0);
            }
            StateValue::WorkDigest(digest) => {
                out.push(2);
                out.extend_from_slice(digest);
            }
            StateValue::ValidatorPower(power) => {
                out.push(3);
                put_u64(out, *power);
            }
            StateValue::ValidatorTotals { total, count } => {
                out.push(4);
                put_u64(out, *total);
                out.extend_from_slice(&count.to_le_bytes());
            }
            StateValue::Authority(address) => {
                out.push(5);
                out.extend_from_slice(&address.0);
            }
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(33);
        self.encode_into(&mut out);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut reader = Reader::new(bytes);
        let value = match reader.u8("state value kind")? {
            0 => StateValue::Account(Account {
                balance: reader.u64("balance")?,
                nonce: reader.u64("nonce")?,
            }),
            1 => StateValue::NameOwner(Address(reader.array("name owner")?)),
            2 => StateValue::WorkDigest(reader.array("work digest")?),
            3 => StateValue::ValidatorPower(reader.u64("validator power")?),
            4 => StateValue::ValidatorTotals {
                total: reader.u64("total power")?,
                count: u32::from_le_bytes(reader.array("validator count")?),
            },
            5 => StateValue::Authority(Address(reader.array("authority")?)),
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "state value kind",
                    tag,
                });
            }
        };
        reader.finish()?;
        Ok(value)
    }

    /// Whether this value has the type its key demands.
    pub fn fits(&self, key: &StateKey) -> bool {
        matches!(
            (key, self),
            (StateKey::Account(_), StateValue::Account(_))
                | (StateKey::Name(_), StateValue::NameOwner(_))
                | (StateKey::WorkSlot(_), StateValue::WorkDigest(_))
                | (StateKey::Validator(_), StateValue::ValidatorPower(_))
                | (
                    StateKey::ValidatorTotals,
                    StateValue::ValidatorTotals { .. }
                )
                | (StateKey::ValidatorAuthority, StateValue::Authority(_))
        )
    }
}

impl LtHash {
    /// Adds one state pair.
    pub fn add_state(&mut self, key: &StateKey, value: &StateValue) {
        self.add_pair(&key.encode(), &value.encode());
    }

    /// Removes one state pair.
    pub fn sub_state(&mut self, key: &StateKey, value: &StateValue) {
        self.sub_pair(&key.encode(), &value.encode());
    }
}

/// Read access to a committed state. Executors only read through this; they return their writes
/// as a [`ChangeSet`] for the caller to apply.
pub trait StateView: Sync {
    fn get(&self, key: &StateKey) -> Result<Option<StateValue>, StorageError>;
    /// The lattice hash of the whole state.
    fn lattice(&self) -> &LtHash;
    fn root(&self) -> StateRoot {
        self.lattice().root()
    }
}

/// The final value of every key a block changed, sorted by key, and the state's lattice hash
/// after the block.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ChangeSet {
    pub writes: Vec<(StateKey, StateValue)>,
    pub lattice: LtHash,
}

impl ChangeSet {
    pub fn root(&self) -> StateRoot {
        self.lattice.root()
    }
}

/// A state held in memory. Executors read it without locks; `apply` takes `&mut self`.
#[derive(Clone, Debug)]
pub struct MemoryState {
    map: FxHashMap<StateKey, StateValue>,
    lattice: LtHash,
}

impl Default for MemoryState {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryState {
    pub fn new() -> Self {
        MemoryState {
            map: FxHashMap::default(),
            lattice: LtHash::identity(),
        }
    }

    /// Builds a state from initial pairs (genesis). Later pairs for the same key win.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (StateKey, StateValue)>) -> Self {
        let mut state = Self::new();
        for (key, value) in pairs {
            state.insert(key, value);
        }
        state
    }

    /// Sets one key, keeping the lattice hash current.
    pub fn insert(&mut self, key: StateKey, value: StateValue) {
        assert!(value.fits(&key), "value {value:?} does not fit key {key:?}");
        if let Some(old) = self.map.insert(key, value) {
            self.lattice.sub_state(&key, &old);
        }
        self.lattice.add_state(&key, &value);
    }

    /// Applies a block's changes. The change set already carries the new lattice hash.
    pub fn apply(&mut self, changes: &ChangeSet) {
        for (key, value) in &changes.writes {
            self.map.insert(*key, *value);
        }
        self.lattice = changes.lattice.clone();
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every pair, sorted by key.
    pub fn sorted_pairs(&self) -> Vec<(StateKey, StateValue)> {
        let mut pairs: Vec<_> = self.map.iter().map(|(k, v)| (*k, *v)).collect();
        pairs.sort_unstable_by_key(|pair| pair.0);
        pairs
    }
}

impl StateView for MemoryState {
    fn get(&self, key: &StateKey) -> Result<Option<StateValue>, StorageError> {
        Ok(self.map.get(key).copied())
    }

    fn lattice(&self) -> &LtHash {
        &self.lattice
    }
}
