//! Weft's genesis file and key files: generation, loading and validation.
//!
//! Empty until the genesis issue lands.
//!
//! Architecture invariant: this crate never talks to the network.
