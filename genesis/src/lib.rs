//! Weft's genesis file and key files: generation, loading and validation.
//!
//! - [`genesis`]: `genesis.json` (chain id, start time and height, consensus parameters,
//!   validators, initial accounts): load, validate, save, hash, and conversions into the
//!   consensus and execution types.
//! - [`keys`]: the key file format shared by validator keys and node identities.
//!
//! Architecture invariant: this crate never talks to the network.

pub mod genesis;
pub mod keys;

pub use genesis::{
    ACCOUNTS_MAX, ConsensusParams, GENESIS_FILE_BYTES_MAX, Genesis, GenesisAccount, GenesisError,
    GenesisProblem, GenesisValidator, KeyDefect, VALIDATORS_MAX,
};
pub use keys::{KeyFileError, KeyProblem, SecretKey, read_key_file, write_key_file};
