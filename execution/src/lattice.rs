//! The state commitment: a lattice hash over every (key, value) pair, and the root derived from
//! it.
//!
//! A lattice hash maps each pair to a vector of 1024 `u16` lanes (blake3 in XOF mode) and sums
//! the vectors lane-wise with wrapping arithmetic. Adding and removing pairs commutes, so a block
//! updates the commitment with two hashes per changed key: its cost follows the block's writes,
//! never the size of the state, and the per-key work can be spread across threads in any order
//! with the same result. The root is blake3 of the lanes. See docs/adr/0003-state-commitment.md
//! for why this and not a Merkle tree.

use std::fmt;
use std::sync::LazyLock;

const LANES: usize = 1024;
const DOMAIN: &str = "weft/state-lattice/v1";

/// blake3 in XOF mode over the length-prefixed key and the value: 2048 bytes, read as lanes.
fn pair_bytes(key: &[u8], value: &[u8]) -> [u8; LANES * 2] {
    // Deriving the key from the context string costs a compression; do it once.
    static DOMAIN_HASHER: LazyLock<blake3::Hasher> =
        LazyLock::new(|| blake3::Hasher::new_derive_key(DOMAIN));
    let mut hasher = DOMAIN_HASHER.clone();
    hasher.update(&(key.len() as u32).to_le_bytes());
    hasher.update(key);
    hasher.update(value);
    let mut bytes = [0u8; LANES * 2];
    hasher.finalize_xof().fill(&mut bytes);
    bytes
}

/// A lattice hash accumulator (2 KiB).
#[derive(Clone, PartialEq, Eq)]
pub struct LtHash(Box<[u16; LANES]>);

impl LtHash {
    /// The hash of the empty set.
    pub fn identity() -> Self {
        LtHash(Box::new([0; LANES]))
    }

    /// The lattice element of one encoded (key, value) pair.
    pub fn of_pair(key: &[u8], value: &[u8]) -> Self {
        let mut element = LtHash::identity();
        element.add_pair(key, value);
        element
    }

    /// Adds the element of one encoded (key, value) pair, without materialising it.
    pub fn add_pair(&mut self, key: &[u8], value: &[u8]) {
        let bytes = pair_bytes(key, value);
        for (lane, pair) in self.0.iter_mut().zip(bytes.chunks_exact(2)) {
            *lane = lane.wrapping_add(u16::from_le_bytes([pair[0], pair[1]]));
        }
    }

    /// Removes the element of one encoded (key, value) pair.
    pub fn sub_pair(&mut self, key: &[u8], value: &[u8]) {
        let bytes = pair_bytes(key, value);
        for (lane, pair) in self.0.iter_mut().zip(bytes.chunks_exact(2)) {
            *lane = lane.wrapping_sub(u16::from_le_bytes([pair[0], pair[1]]));
        }
    }

    pub fn add(&mut self, other: &LtHash) {
        for (lane, other) in self.0.iter_mut().zip(other.0.iter()) {
            *lane = lane.wrapping_add(*other);
        }
    }

    pub fn sub(&mut self, other: &LtHash) {
        for (lane, other) in self.0.iter_mut().zip(other.0.iter()) {
            *lane = lane.wrapping_sub(*other);
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.iter().flat_map(|lane| lane.to_le_bytes()).collect()
    }

    /// Decodes the 2048-byte form written by [`LtHash::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != LANES * 2 {
            return None;
        }
        let mut lanes = Box::new([0u16; LANES]);
        for (lane, pair) in lanes.iter_mut().zip(bytes.chunks_exact(2)) {
            *lane = u16::from_le_bytes([pair[0], pair[1]]);
        }
        Some(LtHash(lanes))
    }

    pub fn root(&self) -> StateRoot {
        StateRoot(*blake3::hash(&self.to_bytes()).as_bytes())
    }
}

impl fmt::Debug for LtHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LtHash(root {:?})", self.root())
    }
}

/// The post-execution state root carried in a block header.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StateRoot(pub [u8; 32]);

impl fmt::Debug for StateRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex: String = self.0.iter().take(8).map(|b| format!("{b:02x}")).collect();
        write!(f, "StateRoot({hex})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adding_and_removing_commutes() {
        let a = LtHash::of_pair(b"a", b"1");
        let b = LtHash::of_pair(b"b", b"2");
        let mut ab = LtHash::identity();
        ab.add(&a);
        ab.add(&b);
        let mut ba = LtHash::identity();
        ba.add(&b);
        ba.add(&a);
        assert_eq!(ab, ba);
        ab.sub(&a);
        ab.sub(&b);
        assert_eq!(ab, LtHash::identity());
    }

    #[test]
    fn pair_boundaries_are_unambiguous() {
        assert_ne!(LtHash::of_pair(b"ab", b"c"), LtHash::of_pair(b"a", b"bc"));
    }
}
