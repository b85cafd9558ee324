//! The genesis file, `config/genesis.json`: the chain id, the start time and height, the
//! consensus parameters, the validators with their powers, and the initial accounts.
//!
//! ```json
//! {
//!   "chain_id": "weft-testnet-1",
//!   "genesis_time": "2026-11-27T00:00:00Z",
//!   "initial_height": 1,
//!   "consensus": {
//!     "timeout_propose_ms": 3000, "timeout_propose_delta_ms": 500,
//!     "timeout_prevote_ms": 1000, "timeout_prevote_delta_ms": 500,
//!     "timeout_precommit_ms": 1000, "timeout_precommit_delta_ms": 500,
//!     "timeout_commit_ms": 1000, "block_max_txs": 10000, "block_max_bytes": 4194304
//!   },
//!   "validators": [{ "name": "validator-0", "pub_key": "<64 hex>", "power": 10 }],
//!   "accounts": [{ "address": "<64 hex>", "balance": 1000000000 }]
//! }
//! ```
//!
//! `genesis_time` is RFC 3339 in UTC, `YYYY-MM-DDTHH:MM:SS[.fraction]Z` (1 to 9 fraction digits,
//! years 1970 to 9999), checked by hand so that no date crate is needed;
//! [`Genesis::genesis_time_ms`] gives unix milliseconds. Keys and addresses are ed25519 public
//! keys in hex, and each must be a valid curve point.
//!
//! Loading checks the size cap before reading, rejects unknown fields, then [`Genesis::validate`]s
//! everything; every error names the file. The conversions ([`Genesis::validator_set`] and the
//! rest) assume a validated genesis, which is what [`Genesis::load`], [`Genesis::from_json`] and
//! [`Genesis::new`] return; on one that is not, they panic.
//!
//! [`Genesis::hash`] is blake3 over a canonical byte encoding of the decoded values (below), so it
//! depends neither on the file's whitespace and field order, nor on hex case or the order of the
//! validator and account lists, nor on how the time is spelled; every value in it does count.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use weft_consensus::validators::TOTAL_VOTING_POWER_MAX;
use weft_consensus::{TimeoutParams, Validator, ValidatorId, ValidatorSet};
use weft_execution::access::BLOCK_TXS_MAX;
use weft_execution::tx::TX_BYTES_MAX;
use weft_execution::tx::ValidatorKey;
use weft_execution::{Account, Address, ChainId, DecodeError, MemoryState, StateKey, StateValue};

/// Largest genesis file read. [`VALIDATORS_MAX`] and [`ACCOUNTS_MAX`] keep a valid genesis,
/// pretty-printed, well below it.
pub const GENESIS_FILE_BYTES_MAX: u64 = 16 << 20;
/// Most validators, as CometBFT's `MaxVotesCount`.
pub const VALIDATORS_MAX: usize = 10_000;
/// Most initial accounts (about 120 bytes each pretty-printed, so at most ~12 MiB).
pub const ACCOUNTS_MAX: usize = 100_000;
/// Longest validator name, in bytes.
pub const VALIDATOR_NAME_BYTES_MAX: usize = 64;
/// Longest timeout or delta; anything longer is a typo (seconds for milliseconds).
pub const TIMEOUT_MS_MAX: u64 = 600_000;
/// Largest `block_max_bytes`: the one block cap, which block decoding and the gossip frame cap
/// derive from too. (It was once the most txs times the largest tx, 32 MiB, which no node
/// could decode.)
pub const BLOCK_BYTES_MAX: u64 = weft_execution::access::BLOCK_BYTES_MAX as u64;
/// `block_max_bytes` when genesis does not say.
pub const BLOCK_MAX_BYTES_DEFAULT: u64 = 4 << 20;
const _: () = assert!(
    TX_BYTES_MAX as u64 <= BLOCK_MAX_BYTES_DEFAULT && BLOCK_MAX_BYTES_DEFAULT <= BLOCK_BYTES_MAX,
    "the default block cap must be a valid one"
);
/// Domain separation for [`Genesis::hash`]; bump the version if the encoding changes.
pub const GENESIS_HASH_DOMAIN: &[u8] = b"weft/genesis/v1";

const PUBLIC_KEY_HEX_CHARS: usize = 64;

/// Whether a genesis must be ready to start a chain, or may still be being assembled.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Completeness {
    /// Everything valid, but the validators may be missing.
    Draft,
    Complete,
}

/// A genesis file that could not be loaded or saved.
#[derive(Debug, Error)]
#[error("genesis file {}: {problem}", path.display())]
pub struct GenesisError {
    pub path: PathBuf,
    pub problem: GenesisProblem,
}

/// What is wrong with a genesis.
#[derive(Debug, Error)]
pub enum GenesisProblem {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{len} bytes is over the cap of {GENESIS_FILE_BYTES_MAX}")]
    TooLarge { len: u64 },
    #[error("malformed JSON: {0}")]
    Json(String),
    #[error("chain id {id:?}: {error}")]
    ChainId { id: String, error: DecodeError },
    #[error("genesis_time {time:?}: {reason}")]
    GenesisTime { time: String, reason: &'static str },
    #[error("initial_height is 0; heights start at 1")]
    InitialHeightZero,
    #[error("consensus.{field} is 0; a round cannot progress without it")]
    ZeroTimeout { field: &'static str },
    #[error("consensus.{field} is {value_ms} ms, over the limit of {TIMEOUT_MS_MAX}")]
    TimeoutTooLarge { field: &'static str, value_ms: u64 },
    #[error("consensus.{field} is 0; no block could hold a transaction")]
    ZeroBlockLimit { field: &'static str },
    #[error("consensus.{field} is {value}, outside {min} to {max}")]
    BlockLimitOutOfRange {
        field: &'static str,
        value: u64,
        min: u64,
        max: u64,
    },
    #[error("there are no validators (add them with `weft genesis add-validator`)")]
    NoValidators,
    #[error("{count} validators, over the limit of {VALIDATORS_MAX}")]
    TooManyValidators { count: usize },
    #[error("{count} accounts, over the limit of {ACCOUNTS_MAX}")]
    TooManyAccounts { count: usize },
    #[error("validator name {name:?}: {reason}")]
    ValidatorName { name: String, reason: &'static str },
    #[error("validator name {name:?} appears twice")]
    DuplicateValidatorName { name: String },
    #[error("validator {name:?}: pub_key {defect}")]
    MalformedValidatorKey { name: String, defect: KeyDefect },
    #[error("validators {first:?} and {second:?} have the same pub_key")]
    DuplicateValidatorKey { first: String, second: String },
    #[error("validator {name:?} has zero power")]
    ZeroPower { name: String },
    #[error(
        "validator {name:?}: its power takes the total voting power over {TOTAL_VOTING_POWER_MAX}"
    )]
    TotalPowerTooLarge { name: String },
    #[error("account {index}: address {defect}")]
    MalformedAddress { index: usize, defect: KeyDefect },
    #[error("account address {address} appears twice")]
    DuplicateAddress { address: String },
    #[error("the balances add up to more than {}", u64::MAX)]
    TotalBalanceTooLarge,
    #[error("validator_authority {defect}")]
    MalformedAuthority { defect: KeyDefect },
}

/// Why a hex public key (a validator's `pub_key`, an account's `address`) was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Error)]
pub enum KeyDefect {
    #[error("is {chars} characters, not {PUBLIC_KEY_HEX_CHARS} hex digits")]
    WrongLength { chars: usize },
    #[error("is not hex")]
    BadHex,
    #[error("is not a valid ed25519 point")]
    NotAPoint,
}

/// The consensus parameters: the timeouts (a base plus a per-round delta, and the commit delay)
/// and the block limits.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsensusParams {
    pub timeout_propose_ms: u64,
    pub timeout_propose_delta_ms: u64,
    pub timeout_prevote_ms: u64,
    pub timeout_prevote_delta_ms: u64,
    pub timeout_precommit_ms: u64,
    pub timeout_precommit_delta_ms: u64,
    /// How long a node waits after committing a block before it starts the next height.
    pub timeout_commit_ms: u64,
    pub block_max_txs: u64,
    pub block_max_bytes: u64,
}

impl Default for ConsensusParams {
    /// CometBFT's defaults: 3 s / 1 s / 1 s, each +0.5 s per round, a 1 s commit delay; blocks
    /// of at most 10 000 txs and 4 MiB.
    fn default() -> Self {
        ConsensusParams {
            timeout_propose_ms: 3_000,
            timeout_propose_delta_ms: 500,
            timeout_prevote_ms: 1_000,
            timeout_prevote_delta_ms: 500,
            timeout_precommit_ms: 1_000,
            timeout_precommit_delta_ms: 500,
            timeout_commit_ms: 1_000,
            block_max_txs: 10_000,
            block_max_bytes: BLOCK_MAX_BYTES_DEFAULT,
        }
    }
}

impl ConsensusParams {
    /// Short timeouts and no commit delay, for local testnets.
    pub fn fast() -> Self {
        ConsensusParams {
            timeout_propose_ms: 400,
            timeout_propose_delta_ms: 100,
            timeout_prevote_ms: 200,
            timeout_prevote_delta_ms: 100,
            timeout_precommit_ms: 200,
            timeout_precommit_delta_ms: 100,
            timeout_commit_ms: 0,
            ..ConsensusParams::default()
        }
    }

    pub fn validate(&self) -> Result<(), GenesisProblem> {
        // (field, value, whether 0 is refused): a round needs each base timeout to move on;
        // deltas and the commit delay may be 0.
        let timeouts = [
            ("timeout_propose_ms", self.timeout_propose_ms, true),
            (
                "timeout_propose_delta_ms",
                self.timeout_propose_delta_ms,
                false,
            ),
            ("timeout_prevote_ms", self.timeout_prevote_ms, true),
            (
                "timeout_prevote_delta_ms",
                self.timeout_prevote_delta_ms,
                false,
            ),
            ("timeout_precommit_ms", self.timeout_precommit_ms, true),
            (
                "timeout_precommit_delta_ms",
                self.timeout_precommit_delta_ms,
                false,
            ),
            ("timeout_commit_ms", self.timeout_commit_ms, false),
        ];
        for (field, value_ms, base) in timeouts {
            if base && value_ms == 0 {
                return Err(GenesisProblem::ZeroTimeout { field });
            }
            if value_ms > TIMEOUT_MS_MAX {
                return Err(GenesisProblem::TimeoutTooLarge { field, value_ms });
            }
        }
        // A block must hold at least one largest tx.
        let limits = [
            ("block_max_txs", self.block_max_txs, 1, BLOCK_TXS_MAX as u64),
            (
                "block_max_bytes",
                self.block_max_bytes,
                TX_BYTES_MAX as u64,
                BLOCK_BYTES_MAX,
            ),
        ];
        for (field, value, min, max) in limits {
            if value == 0 {
                return Err(GenesisProblem::ZeroBlockLimit { field });
            }
            if !(min..=max).contains(&value) {
                return Err(GenesisProblem::BlockLimitOutOfRange {
                    field,
                    value,
                    min,
                    max,
                });
            }
        }
        Ok(())
    }
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisValidator {
    pub name: String,
    /// The ed25519 public key in hex; also the validator's consensus id.
    pub pub_key: String,
    pub power: u64,
}

impl GenesisValidator {
    pub fn public_key(&self) -> Result<[u8; 32], KeyDefect> {
        decode_public_key(&self.pub_key)
    }
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisAccount {
    /// The owner's ed25519 public key in hex.
    pub address: String,
    pub balance: u64,
}

impl GenesisAccount {
    pub fn address(&self) -> Result<Address, KeyDefect> {
        decode_public_key(&self.address).map(Address)
    }
}

/// The genesis file, field for field.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    pub chain_id: String,
    /// RFC 3339, UTC: `YYYY-MM-DDTHH:MM:SS[.fraction]Z`.
    pub genesis_time: String,
    /// The first height this chain decides; at least 1.
    pub initial_height: u64,
    pub consensus: ConsensusParams,
    pub validators: Vec<GenesisValidator>,
    pub accounts: Vec<GenesisAccount>,
    /// The account (hex ed25519 public key) whose `ValidatorUpdate` txs change the validator
    /// set while the chain runs; without one the set stays as genesis made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validator_authority: Option<String>,
}

fn fail(path: &Path, problem: impl Into<GenesisProblem>) -> GenesisError {
    GenesisError {
        path: path.to_owned(),
        problem: problem.into(),
    }
}

impl Genesis {
    /// A validated genesis starting at height 1, for `weft init` and tests. The time is unix
    /// milliseconds, written as RFC 3339 (whole seconds, or with 3 fraction digits).
    pub fn new(
        chain_id: &str,
        genesis_time_ms: u64,
        validators: Vec<(String, [u8; 32], u64)>,
        accounts: Vec<([u8; 32], u64)>,
        consensus: ConsensusParams,
    ) -> Result<Genesis, GenesisProblem> {
        let genesis = Genesis {
            chain_id: chain_id.to_owned(),
            genesis_time: format_rfc3339_ms(genesis_time_ms),
            initial_height: 1,
            consensus,
            validators: validators
                .into_iter()
                .map(|(name, key, power)| GenesisValidator {
                    name,
                    pub_key: hex::encode(key),
                    power,
                })
                .collect(),
            accounts: accounts
                .into_iter()
                .map(|(address, balance)| GenesisAccount {
                    address: hex::encode(address),
                    balance,
                })
                .collect(),
            validator_authority: None,
        };
        genesis.validate()?;
        Ok(genesis)
    }

    /// Reads and validates a genesis file, refusing one over [`GENESIS_FILE_BYTES_MAX`] before
    /// reading it.
    pub fn load(path: &Path) -> Result<Genesis, GenesisError> {
        Self::load_checked(path, Completeness::Complete)
    }

    /// [`Genesis::load`] for a genesis being assembled, which may have no validators yet.
    pub fn load_draft(path: &Path) -> Result<Genesis, GenesisError> {
        Self::load_checked(path, Completeness::Draft)
    }

    fn load_checked(path: &Path, completeness: Completeness) -> Result<Genesis, GenesisError> {
        let file = fs::File::open(path).map_err(|e| fail(path, e))?;
        let len = file.metadata().map_err(|e| fail(path, e))?.len();
        if len > GENESIS_FILE_BYTES_MAX {
            return Err(fail(path, GenesisProblem::TooLarge { len }));
        }
        // The file may grow between the check and the read; never read past the cap.
        let mut bytes = Vec::with_capacity(len as usize);
        file.take(GENESIS_FILE_BYTES_MAX + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| fail(path, e))?;
        if bytes.len() as u64 > GENESIS_FILE_BYTES_MAX {
            let len = bytes.len() as u64;
            return Err(fail(path, GenesisProblem::TooLarge { len }));
        }
        Self::from_json_bytes(&bytes, completeness).map_err(|problem| fail(path, problem))
    }

    /// Parses and validates a genesis held in memory.
    pub fn from_json(text: &str) -> Result<Genesis, GenesisProblem> {
        Self::from_json_bytes(text.as_bytes(), Completeness::Complete)
    }

    fn from_json_bytes(
        bytes: &[u8],
        completeness: Completeness,
    ) -> Result<Genesis, GenesisProblem> {
        if bytes.len() as u64 > GENESIS_FILE_BYTES_MAX {
            let len = bytes.len() as u64;
            return Err(GenesisProblem::TooLarge { len });
        }
        let genesis: Genesis =
            serde_json::from_slice(bytes).map_err(|e| GenesisProblem::Json(e.to_string()))?;
        genesis.check(completeness)?;
        Ok(genesis)
    }

    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).expect("a genesis serialises")
    }

    /// Validates, then writes the file durably: a temporary file beside it, fsynced, renamed
    /// over `path`, and the directory fsynced. Overwrites an existing file.
    pub fn save(&self, path: &Path) -> Result<(), GenesisError> {
        self.save_checked(path, Completeness::Complete)
    }

    /// [`Genesis::save`] for a genesis being assembled, which may have no validators yet.
    pub fn save_draft(&self, path: &Path) -> Result<(), GenesisError> {
        self.save_checked(path, Completeness::Draft)
    }

    fn save_checked(&self, path: &Path, completeness: Completeness) -> Result<(), GenesisError> {
        self.check(completeness)
            .map_err(|problem| fail(path, problem))?;
        let mut text = self.to_json_pretty();
        text.push('\n');
        let file_name = path
            .file_name()
            .ok_or_else(|| fail(path, std::io::Error::other("the path names no file")))?;
        let mut tmp_name = file_name.to_owned();
        tmp_name.push(".tmp");
        let tmp = path.with_file_name(tmp_name);
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| fail(&tmp, e))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| fail(&tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| fail(path, e))?;
        let dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| fail(path, e))
    }

    /// Checks every field; the first problem found is returned.
    pub fn validate(&self) -> Result<(), GenesisProblem> {
        self.check(Completeness::Complete)
    }

    /// Checks every field of a genesis being assembled: as [`Genesis::validate`], except that
    /// it may have no validators yet.
    pub fn validate_draft(&self) -> Result<(), GenesisProblem> {
        self.check(Completeness::Draft)
    }

    fn check(&self, completeness: Completeness) -> Result<(), GenesisProblem> {
        ChainId::new(&self.chain_id).map_err(|error| GenesisProblem::ChainId {
            id: self.chain_id.clone(),
            error,
        })?;
        parse_rfc3339(&self.genesis_time).map_err(|reason| GenesisProblem::GenesisTime {
            time: self.genesis_time.clone(),
            reason,
        })?;
        if self.initial_height == 0 {
            return Err(GenesisProblem::InitialHeightZero);
        }
        self.consensus.validate()?;
        validate_validators(&self.validators, completeness)?;
        validate_accounts(&self.accounts)?;
        self.authority()
            .map(|_| ())
            .map_err(|defect| GenesisProblem::MalformedAuthority { defect })
    }

    /// The validator authority's address, if the genesis names one.
    pub fn authority(&self) -> Result<Option<Address>, KeyDefect> {
        self.validator_authority
            .as_deref()
            .map(|hex| decode_public_key(hex).map(Address))
            .transpose()
    }

    /// A genesis to assemble: no validators and no accounts yet, starting at `initial_height`.
    pub fn draft(
        chain_id: &str,
        genesis_time_ms: u64,
        initial_height: u64,
        consensus: ConsensusParams,
    ) -> Result<Genesis, GenesisProblem> {
        let genesis = Genesis {
            chain_id: chain_id.to_owned(),
            genesis_time: format_rfc3339_ms(genesis_time_ms),
            initial_height,
            consensus,
            validators: Vec::new(),
            accounts: Vec::new(),
            validator_authority: None,
        };
        genesis.validate_draft()?;
        Ok(genesis)
    }

    /// Names the account allowed to change the validator set (hex ed25519 public key), refusing
    /// a malformed one and leaving the genesis as it was.
    pub fn set_authority(&mut self, address_hex: &str) -> Result<(), GenesisProblem> {
        decode_public_key(address_hex)
            .map_err(|defect| GenesisProblem::MalformedAuthority { defect })?;
        self.validator_authority = Some(address_hex.to_ascii_lowercase());
        Ok(())
    }

    /// Adds a validator, refusing (and leaving the genesis as it was) a malformed key, a name or
    /// key already present, a zero power, or a power that takes the total over the limit.
    pub fn add_validator(
        &mut self,
        name: &str,
        pub_key_hex: &str,
        power: u64,
    ) -> Result<(), GenesisProblem> {
        self.validators.push(GenesisValidator {
            name: name.to_owned(),
            pub_key: pub_key_hex.to_ascii_lowercase(),
            power,
        });
        let checked = validate_validators(&self.validators, Completeness::Draft);
        if checked.is_err() {
            self.validators.pop();
        }
        checked
    }

    /// Adds a funded account, refusing (and leaving the genesis as it was) a malformed or
    /// repeated address, or a balance that takes the total supply over `u64::MAX`.
    pub fn add_account(&mut self, address_hex: &str, balance: u64) -> Result<(), GenesisProblem> {
        self.add_accounts([(address_hex.to_owned(), balance)])
    }

    /// [`Genesis::add_account`] for many at once, checked once: all are added, or none.
    pub fn add_accounts(
        &mut self,
        accounts: impl IntoIterator<Item = (String, u64)>,
    ) -> Result<(), GenesisProblem> {
        let before = self.accounts.len();
        self.accounts.extend(
            accounts
                .into_iter()
                .map(|(address, balance)| GenesisAccount {
                    address: address.to_ascii_lowercase(),
                    balance,
                }),
        );
        let checked = validate_accounts(&self.accounts);
        if checked.is_err() {
            self.accounts.truncate(before);
        }
        checked
    }

    /// The sum of the validators' powers (of a validated genesis, so it cannot overflow).
    pub fn total_power(&self) -> u64 {
        self.validators.iter().map(|v| v.power).sum()
    }

    /// The sum of the initial balances (of a validated genesis, so it cannot overflow).
    pub fn total_balance(&self) -> u64 {
        self.accounts.iter().map(|a| a.balance).sum()
    }

    /// blake3 over the canonical encoding, all integers little-endian, strings as a u64 length
    /// and their bytes:
    ///
    /// ```text
    /// GENESIS_HASH_DOMAIN | chain_id | time seconds u64 | time nanos u32 | initial_height u64
    ///   | the nine consensus parameters u64, in struct order
    ///   | validator count u64 | (pub_key [32] | name | power u64), sorted by pub_key
    ///   | account count u64 | (address [32] | balance u64), sorted by address
    /// ```
    pub fn hash(&self) -> [u8; 32] {
        let time = parse_rfc3339(&self.genesis_time).expect("a validated genesis time");
        let c = &self.consensus;
        let mut hasher = blake3::Hasher::new();
        hasher.update(GENESIS_HASH_DOMAIN);
        put_bytes(&mut hasher, self.chain_id.as_bytes());
        hasher.update(&time.seconds.to_le_bytes());
        hasher.update(&time.nanos.to_le_bytes());
        hasher.update(&self.initial_height.to_le_bytes());
        for value in [
            c.timeout_propose_ms,
            c.timeout_propose_delta_ms,
            c.timeout_prevote_ms,
            c.timeout_prevote_delta_ms,
            c.timeout_precommit_ms,
            c.timeout_precommit_delta_ms,
            c.timeout_commit_ms,
            c.block_max_txs,
            c.block_max_bytes,
        ] {
            hasher.update(&value.to_le_bytes());
        }
        let validators: BTreeMap<[u8; 32], &GenesisValidator> = self
            .validators
            .iter()
            .map(|v| (v.public_key().expect("a validated pub_key"), v))
            .collect();
        hasher.update(&(validators.len() as u64).to_le_bytes());
        for (key, validator) in &validators {
            hasher.update(key);
            put_bytes(&mut hasher, validator.name.as_bytes());
            hasher.update(&validator.power.to_le_bytes());
        }
        let accounts: BTreeMap<Address, u64> = self.account_pairs().collect();
        hasher.update(&(accounts.len() as u64).to_le_bytes());
        for (address, balance) in &accounts {
            hasher.update(&address.0);
            hasher.update(&balance.to_le_bytes());
        }
        // Appended only when present, so a genesis without one hashes as it always did.
        if let Some(authority) = self.authority().expect("a validated authority") {
            hasher.update(b"validator_authority");
            hasher.update(&authority.0);
        }
        *hasher.finalize().as_bytes()
    }

    /// Unix milliseconds of `genesis_time` (a fraction below a millisecond is dropped).
    pub fn genesis_time_ms(&self) -> u64 {
        let time = parse_rfc3339(&self.genesis_time).expect("a validated genesis time");
        time.seconds * 1_000 + u64::from(time.nanos / 1_000_000)
    }

    pub fn chain_id(&self) -> ChainId {
        ChainId::new(&self.chain_id).expect("a validated chain id")
    }

    /// The validators, each identified by its public key, all at priority 0.
    pub fn validator_set(&self) -> ValidatorSet {
        let validators = self.validators.iter().map(|v| Validator {
            id: ValidatorId(v.public_key().expect("a validated pub_key")),
            power: v.power,
        });
        ValidatorSet::new(validators).expect("a validated validator set")
    }

    pub fn timeout_params(&self) -> TimeoutParams {
        let c = &self.consensus;
        TimeoutParams {
            propose_ms: c.timeout_propose_ms,
            propose_delta_ms: c.timeout_propose_delta_ms,
            prevote_ms: c.timeout_prevote_ms,
            prevote_delta_ms: c.timeout_prevote_delta_ms,
            precommit_ms: c.timeout_precommit_ms,
            precommit_delta_ms: c.timeout_precommit_delta_ms,
        }
    }

    /// The state before the first block: each account with its balance and nonce 0.
    pub fn initial_state(&self) -> MemoryState {
        let accounts = self.account_pairs().map(|(address, balance)| {
            let account = Account { balance, nonce: 0 };
            (StateKey::Account(address), StateValue::Account(account))
        });
        // The scheduled validator set lives in the state, where `ValidatorUpdate` txs change it.
        let validators = self.validators.iter().map(|v| {
            let key = ValidatorKey(v.public_key().expect("a validated pub_key"));
            (
                StateKey::Validator(key),
                StateValue::ValidatorPower(v.power),
            )
        });
        let totals = (
            StateKey::ValidatorTotals,
            StateValue::ValidatorTotals {
                total: self.total_power(),
                count: self.validators.len() as u32,
            },
        );
        let authority = self
            .authority()
            .expect("a validated authority")
            .map(|address| (StateKey::ValidatorAuthority, StateValue::Authority(address)));
        MemoryState::from_pairs(accounts.chain(validators).chain([totals]).chain(authority))
    }

    fn account_pairs(&self) -> impl Iterator<Item = (Address, u64)> + '_ {
        self.accounts
            .iter()
            .map(|a| (a.address().expect("a validated address"), a.balance))
    }
}

fn put_bytes(hasher: &mut blake3::Hasher, bytes: &[u8]) {
    hasher.update(&(bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}

fn validate_validators(
    validators: &[GenesisValidator],
    completeness: Completeness,
) -> Result<(), GenesisProblem> {
    if validators.is_empty() && completeness == Completeness::Complete {
        return Err(GenesisProblem::NoValidators);
    }
    if validators.len() > VALIDATORS_MAX {
        return Err(GenesisProblem::TooManyValidators {
            count: validators.len(),
        });
    }
    let mut names = BTreeSet::new();
    let mut keys: BTreeMap<[u8; 32], &str> = BTreeMap::new();
    let mut total: u64 = 0;
    for validator in validators {
        let name = &validator.name;
        check_validator_name(name).map_err(|reason| GenesisProblem::ValidatorName {
            name: name.clone(),
            reason,
        })?;
        if !names.insert(name.as_str()) {
            return Err(GenesisProblem::DuplicateValidatorName { name: name.clone() });
        }
        let key = validator.public_key().map_err(|defect| {
            let name = name.clone();
            GenesisProblem::MalformedValidatorKey { name, defect }
        })?;
        if let Some(first) = keys.insert(key, name) {
            return Err(GenesisProblem::DuplicateValidatorKey {
                first: first.to_owned(),
                second: name.clone(),
            });
        }
        if validator.power == 0 {
            return Err(GenesisProblem::ZeroPower { name: name.clone() });
        }
        total = total
            .checked_add(validator.power)
            .filter(|total| *total <= TOTAL_VOTING_POWER_MAX)
            .ok_or_else(|| GenesisProblem::TotalPowerTooLarge { name: name.clone() })?;
    }
    Ok(())
}

fn check_validator_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > VALIDATOR_NAME_BYTES_MAX {
        return Err("length must be 1 to 64 bytes");
    }
    if name.chars().any(char::is_control) {
        return Err("control characters are not allowed");
    }
    Ok(())
}

fn validate_accounts(accounts: &[GenesisAccount]) -> Result<(), GenesisProblem> {
    if accounts.len() > ACCOUNTS_MAX {
        return Err(GenesisProblem::TooManyAccounts {
            count: accounts.len(),
        });
    }
    let mut addresses = BTreeSet::new();
    // Bounding the total supply by u64::MAX means no balance can ever overflow.
    let mut total: u64 = 0;
    for (index, account) in accounts.iter().enumerate() {
        let address = account
            .address()
            .map_err(|defect| GenesisProblem::MalformedAddress { index, defect })?;
        if !addresses.insert(address) {
            return Err(GenesisProblem::DuplicateAddress {
                address: hex::encode(address.0),
            });
        }
        total = total
            .checked_add(account.balance)
            .ok_or(GenesisProblem::TotalBalanceTooLarge)?;
    }
    Ok(())
}

/// 64 hex digits (either case) that decode to a valid ed25519 point.
fn decode_public_key(text: &str) -> Result<[u8; 32], KeyDefect> {
    if text.len() != PUBLIC_KEY_HEX_CHARS {
        return Err(KeyDefect::WrongLength {
            chars: text.chars().count(),
        });
    }
    let mut key = [0u8; 32];
    hex::decode_to_slice(text, &mut key).map_err(|_| KeyDefect::BadHex)?;
    VerifyingKey::from_bytes(&key).map_err(|_| KeyDefect::NotAPoint)?;
    Ok(key)
}

/// A UTC instant since the unix epoch.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Timestamp {
    seconds: u64,
    nanos: u32,
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction]Z` with 1 to 9 fraction digits, from 1970 on. The
/// shape is checked here (a genesis has one spelling: no offsets, no lower-case `t`/`z`, no
/// leap second); the date and time by jiff.
fn parse_rfc3339(text: &str) -> Result<Timestamp, &'static str> {
    const SHAPE: &str = "not shaped like YYYY-MM-DDTHH:MM:SS[.fraction]Z";
    let bytes = text.as_bytes();
    let digits = |from: usize, to: usize| bytes[from..to].iter().all(u8::is_ascii_digit);
    let fraction = match bytes.get(19..bytes.len().saturating_sub(1)) {
        Some([]) => true,
        Some([b'.', rest @ ..]) => {
            (1..=9).contains(&rest.len()) && rest.iter().all(u8::is_ascii_digit)
        }
        _ => false,
    };
    if bytes.len() < 20
        || bytes.last() != Some(&b'Z')
        || [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')]
            .iter()
            .any(|&(at, byte)| bytes[at] != byte)
        || ![(0, 4), (5, 7), (8, 10), (11, 13), (14, 16), (17, 19)]
            .iter()
            .all(|&(from, to)| digits(from, to))
        || !fraction
    {
        return Err(SHAPE);
    }
    if &text[17..19] > "59" {
        return Err("no such time of day");
    }
    if &text[..4] < "1970" {
        return Err("the year must be 1970 to 9999");
    }
    // A civil date-time in UTC: jiff's timestamps stop a day short of 9999-12-31.
    let civil: jiff::civil::DateTime = text[..text.len() - 1]
        .parse()
        .map_err(|_| "no such date or time of day")?;
    let since = civil.duration_since(UNIX_EPOCH_CIVIL);
    Ok(Timestamp {
        seconds: u64::try_from(since.as_secs()).map_err(|_| "the year must be 1970 to 9999")?,
        nanos: since.subsec_nanos().unsigned_abs(),
    })
}

/// Unix milliseconds as RFC 3339 UTC: whole seconds bare, otherwise with 3 fraction digits.
/// Past 9999-12-31T23:59:59.999Z, a text that validation refuses.
fn format_rfc3339_ms(unix_ms: u64) -> String {
    let Some(time) = i64::try_from(unix_ms).ok().and_then(|ms| {
        UNIX_EPOCH_CIVIL
            .checked_add(jiff::SignedDuration::from_millis(ms))
            .ok()
    }) else {
        // Not a time validation accepts, and it says why.
        return format!("{unix_ms} ms is after 9999-12-31T23:59:59.999Z");
    };
    let format = if unix_ms.is_multiple_of(1_000) {
        "%Y-%m-%dT%H:%M:%SZ"
    } else {
        "%Y-%m-%dT%H:%M:%S%.3fZ"
    };
    time.strftime(format).to_string()
}

/// 1970-01-01T00:00:00, UTC's civil time at the unix epoch.
const UNIX_EPOCH_CIVIL: jiff::civil::DateTime = jiff::civil::datetime(1970, 1, 1, 0, 0, 0, 0);
