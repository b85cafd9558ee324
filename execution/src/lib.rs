//! Weft's execution engine.
//!
//! Transactions and their canonical encoding ([`tx`]), the key-value state and its commitment
//! ([`state`], [`lattice`]), per-tx access sets ([`access`]), the canonical conflict DAG
//! ([`dag`]), what each tx kind does ([`logic`]), the proposer path and the serial and parallel
//! executors ([`exec`]), batched signature verification ([`sig`]), and durable storage
//! ([`storage`]). [`probe`] is test support: an allocation probe for fuzz harnesses.
//!
//! Architecture invariant: this crate depends on no other Weft crate and never on tokio or
//! libp2p. It works on data it is handed; the only threads it uses are its own rayon pools.

pub mod access;
pub mod codec;
pub mod dag;
pub mod exec;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod lattice;
pub mod logic;
pub mod probe;
pub mod sig;
pub mod snapshot;
pub mod state;
pub mod storage;
pub mod tx;
pub mod workload;

pub use access::{Access, AccessMode, AccessSets};
pub use codec::DecodeError;
pub use dag::{ConflictDag, DagError, DagStats};
pub use exec::{
    BlockError, BlockOutcome, Executor, ExecutorConfig, ParallelExecutor, Proposal, SerialExecutor,
    VerifiedBlock, propose, validate_block, verify_block,
};
pub use lattice::{LtHash, StateRoot};
pub use logic::{TxCode, TxResult};
pub use sig::{SignatureError, verify_signature, verify_signatures};
pub use state::{Account, ChangeSet, MemoryState, StateKey, StateValue, StateView};
pub use storage::{MemoryStorage, SledStorage, SnapshotReader, Storage, StorageError};
pub use tx::{Address, ChainId, Name, Payload, Transaction, TxHash, WorkSlots};
