//! Transactions: their kinds, canonical encoding, signature and hash.
//!
//! Encoding, all integers little-endian:
//!
//! ```text
//! chain_id_len u8 | chain_id bytes | sender [32] | nonce u64 | kind u8 | payload | signature [64]
//!   kind 0 Transfer      payload: to [32] | amount u64
//!   kind 1 RegisterName  payload: name_len u8 | name bytes
//!   kind 2 PayName       payload: name_len u8 | name bytes | amount u64
//!   kind 3 Work          payload: slot_count u8 | slots u64 each, strictly ascending | rounds u32
//!   kind 4 ValidatorUpdate payload: validator ed25519 public key [32] | power u64
//! ```
//!
//! The signature covers [`TX_SIGN_DOMAIN`] followed by everything before the signature, so it
//! binds the chain id, the sender, the nonce and the payload. The tx hash is blake3 of the whole
//! encoding.

use std::fmt;

use ed25519_dalek::{Signer, SigningKey};

use crate::codec::{DecodeError, Reader, check_cap, put_u32, put_u64};

/// Largest encoded transaction. Checked before any decoding.
pub const TX_BYTES_MAX: usize = 512;
/// Longest chain id, in bytes.
pub const CHAIN_ID_BYTES_MAX: usize = 50;
/// Longest registry name, in bytes.
pub const NAME_BYTES_MAX: usize = 32;
/// Most state slots one work tx may hash over.
pub const WORK_SLOTS_MAX: usize = 8;
/// Most hashing rounds one work tx may ask for (about 100 µs of blake3 on this machine's cores).
pub const WORK_ROUNDS_MAX: u32 = 4_000;
/// Most validators a set may hold: as many as gossip accepts signers in one certificate.
pub const VALIDATOR_COUNT_MAX: u32 = 10_000;
/// Domain separation for transaction signatures.
pub const TX_SIGN_DOMAIN: &[u8] = b"weft/tx/v1";

const SIGNATURE_BYTES: usize = 64;

/// An account address: the sender's ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address(pub [u8; 32]);

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({})", short_hex(&self.0))
    }
}

impl From<&SigningKey> for Address {
    fn from(key: &SigningKey) -> Self {
        Address(key.verifying_key().to_bytes())
    }
}

/// A validator's consensus key: an ed25519 public key (a valid curve point; decoding checks).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ValidatorKey(pub [u8; 32]);

impl ValidatorKey {
    /// The key, if `bytes` are an ed25519 public key (a point on the curve; checked without
    /// allocating, as every decoder of outside bytes must).
    pub fn new(bytes: [u8; 32]) -> Result<Self, DecodeError> {
        match curve25519_dalek::edwards::CompressedEdwardsY(bytes).decompress() {
            Some(_) => Ok(ValidatorKey(bytes)),
            None => Err(DecodeError::Invalid {
                what: "validator key",
                reason: "not an ed25519 public key",
            }),
        }
    }
}

impl fmt::Debug for ValidatorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ValidatorKey({})", short_hex(&self.0))
    }
}

/// A transaction hash: blake3 of the canonical encoding.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TxHash(pub [u8; 32]);

impl fmt::Debug for TxHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TxHash({})", short_hex(&self.0))
    }
}

fn short_hex(bytes: &[u8]) -> String {
    bytes.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// A chain id: 1 to [`CHAIN_ID_BYTES_MAX`] bytes of `[A-Za-z0-9._-]`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChainId(String);

impl ChainId {
    pub fn new(id: &str) -> Result<Self, DecodeError> {
        let what = "chain id";
        if id.is_empty() || id.len() > CHAIN_ID_BYTES_MAX {
            return Err(DecodeError::Invalid {
                what,
                reason: "length must be 1 to 50 bytes",
            });
        }
        let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
        if !id.bytes().all(allowed) {
            return Err(DecodeError::Invalid {
                what,
                reason: "allowed characters are A-Z a-z 0-9 . _ -",
            });
        }
        Ok(ChainId(id.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainId({})", self.0)
    }
}

/// A registry name: 1 to [`NAME_BYTES_MAX`] bytes of `[a-z0-9-]`. Fixed-size so that state keys
/// are `Copy` and hash without touching the heap.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name {
    len: u8,
    bytes: [u8; NAME_BYTES_MAX],
}

impl Name {
    pub fn new(name: &str) -> Result<Self, DecodeError> {
        Self::from_bytes(name.as_bytes())
    }

    fn from_bytes(raw: &[u8]) -> Result<Self, DecodeError> {
        let what = "name";
        if raw.is_empty() || raw.len() > NAME_BYTES_MAX {
            return Err(DecodeError::Invalid {
                what,
                reason: "length must be 1 to 32 bytes",
            });
        }
        let allowed = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-';
        if !raw.iter().all(allowed) {
            return Err(DecodeError::Invalid {
                what,
                reason: "allowed characters are a-z 0-9 -",
            });
        }
        let mut bytes = [0u8; NAME_BYTES_MAX];
        bytes[..raw.len()].copy_from_slice(raw);
        Ok(Name {
            len: raw.len() as u8,
            bytes,
        })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII is ever admitted.
        std::str::from_utf8(self.as_bytes()).expect("names are ASCII")
    }

    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(self.len);
        out.extend_from_slice(self.as_bytes());
    }

    pub(crate) fn decode_from(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let len = reader.u8("name length")?;
        if usize::from(len) > NAME_BYTES_MAX {
            return Err(DecodeError::OverLimit {
                what: "name length",
                value: u64::from(len),
                limit: NAME_BYTES_MAX as u64,
            });
        }
        Name::from_bytes(reader.take(usize::from(len), "name")?)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Name({})", self.as_str())
    }
}

/// The state slots a work tx hashes over: 1 to [`WORK_SLOTS_MAX`] ids, strictly ascending.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct WorkSlots(Vec<u64>);

impl WorkSlots {
    pub fn new(mut slots: Vec<u64>) -> Result<Self, DecodeError> {
        slots.sort_unstable();
        slots.dedup();
        if slots.is_empty() || slots.len() > WORK_SLOTS_MAX {
            return Err(DecodeError::Invalid {
                what: "work slots",
                reason: "1 to 8 distinct slots",
            });
        }
        Ok(WorkSlots(slots))
    }

    pub fn as_slice(&self) -> &[u64] {
        &self.0
    }
}

/// What a transaction does.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Payload {
    /// Move `amount` from the sender to `to`.
    Transfer { to: Address, amount: u64 },
    /// Claim `name` for the sender. Fails if it is taken.
    RegisterName { name: Name },
    /// Pay `amount` to whoever owns `name` when the tx executes: the write set depends on state.
    PayName { name: Name, amount: u64 },
    /// Benchmark work: hash the slots' values for `rounds` rounds, then write the digest back.
    Work { slots: WorkSlots, rounds: u32 },
    /// Set `validator`'s voting power to `power` (0 removes it), from the height after next.
    /// Only the genesis's validator authority may send it.
    ValidatorUpdate { validator: ValidatorKey, power: u64 },
}

impl Payload {
    fn tag(&self) -> u8 {
        match self {
            Payload::Transfer { .. } => 0,
            Payload::RegisterName { .. } => 1,
            Payload::PayName { .. } => 2,
            Payload::Work { .. } => 3,
            Payload::ValidatorUpdate { .. } => 4,
        }
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(self.tag());
        match self {
            Payload::Transfer { to, amount } => {
                out.extend_from_slice(&to.0);
                put_u64(out, *amount);
            }
            Payload::RegisterName { name } => name.encode_into(out),
            Payload::PayName { name, amount } => {
                name.encode_into(out);
                put_u64(out, *amount);
            }
            Payload::Work { slots, rounds } => {
                out.push(slots.0.len() as u8);
                for slot in &slots.0 {
                    put_u64(out, *slot);
                }
                put_u32(out, *rounds);
            }
            Payload::ValidatorUpdate { validator, power } => {
                out.extend_from_slice(&validator.0);
                put_u64(out, *power);
            }
        }
    }

    fn decode_from(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let tag = reader.u8("payload kind")?;
        match tag {
            0 => Ok(Payload::Transfer {
                to: Address(reader.array("recipient")?),
                amount: reader.u64("amount")?,
            }),
            1 => Ok(Payload::RegisterName {
                name: Name::decode_from(reader)?,
            }),
            2 => Ok(Payload::PayName {
                name: Name::decode_from(reader)?,
                amount: reader.u64("amount")?,
            }),
            3 => decode_work(reader),
            4 => Ok(Payload::ValidatorUpdate {
                validator: ValidatorKey::new(reader.array("validator key")?)?,
                power: reader.u64("power")?,
            }),
            tag => Err(DecodeError::UnknownTag {
                what: "payload kind",
                tag,
            }),
        }
    }
}

fn decode_work(reader: &mut Reader<'_>) -> Result<Payload, DecodeError> {
    let count = reader.u8("work slot count")?;
    if count == 0 || usize::from(count) > WORK_SLOTS_MAX {
        return Err(DecodeError::OverLimit {
            what: "work slot count",
            value: u64::from(count),
            limit: WORK_SLOTS_MAX as u64,
        });
    }
    let mut slots = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let slot = reader.u64("work slot")?;
        if slots.last().is_some_and(|last| *last >= slot) {
            return Err(DecodeError::Invalid {
                what: "work slots",
                reason: "not strictly ascending",
            });
        }
        slots.push(slot);
    }
    let rounds = reader.u32("work rounds")?;
    if rounds > WORK_ROUNDS_MAX {
        return Err(DecodeError::OverLimit {
            what: "work rounds",
            value: u64::from(rounds),
            limit: u64::from(WORK_ROUNDS_MAX),
        });
    }
    Ok(Payload::Work {
        slots: WorkSlots(slots),
        rounds,
    })
}

/// A signed transaction.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Transaction {
    pub chain_id: ChainId,
    pub sender: Address,
    pub nonce: u64,
    pub payload: Payload,
    pub signature: [u8; SIGNATURE_BYTES],
}

impl Transaction {
    /// Builds and signs a transaction.
    pub fn sign(chain_id: ChainId, key: &SigningKey, nonce: u64, payload: Payload) -> Self {
        let mut tx = Transaction {
            chain_id,
            sender: Address::from(key),
            nonce,
            payload,
            signature: [0; SIGNATURE_BYTES],
        };
        tx.signature = key.sign(&tx.sign_bytes()).to_bytes();
        tx
    }

    /// The bytes the signature covers.
    pub fn sign_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(TX_SIGN_DOMAIN.len() + 128);
        self.write_sign_bytes(&mut out);
        out
    }

    /// Appends the signed bytes to `out`, so batch verification can reuse one buffer.
    pub fn write_sign_bytes(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(TX_SIGN_DOMAIN);
        self.encode_unsigned(out);
    }

    fn encode_unsigned(&self, out: &mut Vec<u8>) {
        out.push(self.chain_id.0.len() as u8);
        out.extend_from_slice(self.chain_id.0.as_bytes());
        out.extend_from_slice(&self.sender.0);
        put_u64(out, self.nonce);
        self.payload.encode_into(out);
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(160);
        self.encode_unsigned(&mut out);
        out.extend_from_slice(&self.signature);
        out
    }

    /// Decodes one canonical transaction. The size cap is checked first; trailing bytes and every
    /// non-canonical form are rejected.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        check_cap(bytes, TX_BYTES_MAX)?;
        let mut reader = Reader::new(bytes);
        let tx = Self::decode_from(&mut reader)?;
        reader.finish()?;
        Ok(tx)
    }

    pub(crate) fn decode_from(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let chain_id_len = reader.u8("chain id length")?;
        if usize::from(chain_id_len) > CHAIN_ID_BYTES_MAX {
            return Err(DecodeError::OverLimit {
                what: "chain id length",
                value: u64::from(chain_id_len),
                limit: CHAIN_ID_BYTES_MAX as u64,
            });
        }
        let raw = reader.take(usize::from(chain_id_len), "chain id")?;
        let chain_id = std::str::from_utf8(raw)
            .map_err(|_| DecodeError::Invalid {
                what: "chain id",
                reason: "not UTF-8",
            })
            .and_then(ChainId::new)?;
        Ok(Transaction {
            chain_id,
            sender: Address(reader.array("sender")?),
            nonce: reader.u64("nonce")?,
            payload: Payload::decode_from(reader)?,
            signature: reader.array("signature")?,
        })
    }

    pub fn hash(&self) -> TxHash {
        TxHash(*blake3::hash(&self.encode()).as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn every_kind_round_trips_byte_for_byte() {
        let chain = ChainId::new("weft-test").unwrap();
        let payloads = [
            Payload::Transfer {
                to: Address([7; 32]),
                amount: 5,
            },
            Payload::RegisterName {
                name: Name::new("alice").unwrap(),
            },
            Payload::PayName {
                name: Name::new("bob-2").unwrap(),
                amount: u64::MAX,
            },
            Payload::Work {
                slots: WorkSlots::new(vec![9, 1, 4]).unwrap(),
                rounds: 100,
            },
        ];
        for payload in payloads {
            let tx = Transaction::sign(chain.clone(), &key(1), 3, payload);
            let bytes = tx.encode();
            let decoded = Transaction::decode(&bytes).unwrap();
            assert_eq!(decoded, tx);
            assert_eq!(decoded.encode(), bytes);
        }
    }

    #[test]
    fn trailing_bytes_and_oversize_are_rejected() {
        let tx = Transaction::sign(
            ChainId::new("c").unwrap(),
            &key(2),
            0,
            Payload::Transfer {
                to: Address([1; 32]),
                amount: 1,
            },
        );
        let mut bytes = tx.encode();
        bytes.push(0);
        assert_eq!(
            Transaction::decode(&bytes),
            Err(DecodeError::TrailingBytes { count: 1 })
        );
        let huge = vec![0u8; TX_BYTES_MAX + 1];
        assert!(matches!(
            Transaction::decode(&huge),
            Err(DecodeError::TooLarge { .. })
        ));
    }
}
