//! Weft's genesis file and key files: generation, loading and validation.
//!
//! So far: [`keys`], the key file format shared by validator keys and node identities. The
//! genesis file arrives with the genesis issue.
//!
//! Architecture invariant: this crate never talks to the network.

pub mod keys;

pub use keys::{KeyFileError, KeyProblem, SecretKey, read_key_file, write_key_file};
