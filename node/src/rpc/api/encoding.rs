//! CometBFT's JSON encodings (`libs/json`): 64-bit integers as decimal strings, hashes and
//! addresses as upper-case hex, bytes as base64, times as RFC 3339 in UTC, public keys as
//! `{"type": "tendermint/PubKeyEd25519", "value": <base64>}`.
//!
//! Each type writes CometBFT's form and reads it leniently, as Weft's own clients and CometBFT's
//! send it: integers as a string or a number, hex in either case with an optional `0x`.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Digest as _;

/// An unsigned 64-bit integer, written as a decimal string (`"12"`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Int(pub u64);

impl fmt::Debug for Int {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for Int {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<u64> for Int {
    fn from(value: u64) -> Self {
        Int(value)
    }
}

impl Serialize for Int {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::Number(n) => n
                .as_u64()
                .map(Int)
                .ok_or_else(|| D::Error::custom(format!("{n} is not a non-negative integer"))),
            serde_json::Value::String(s) => s
                .trim()
                .parse()
                .map(Int)
                .map_err(|_| D::Error::custom(format!("{s:?} is not a non-negative integer"))),
            other => Err(D::Error::custom(format!(
                "{other} is not an integer (expected a decimal string or a number)"
            ))),
        }
    }
}

/// A signed 64-bit integer (a proposer priority), written as a decimal string.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug)]
pub struct SignedInt(pub i64);

impl Serialize for SignedInt {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SignedInt {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::Number(n) => n
                .as_i64()
                .map(SignedInt)
                .ok_or_else(|| D::Error::custom(format!("{n} is not a 64-bit integer"))),
            serde_json::Value::String(s) => s
                .trim()
                .parse()
                .map(SignedInt)
                .map_err(|_| D::Error::custom(format!("{s:?} is not a 64-bit integer"))),
            other => Err(D::Error::custom(format!("{other} is not an integer"))),
        }
    }
}

/// Reads hex in either case with an optional `0x`.
fn decode_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    hex::decode(digits).map_err(|e| format!("{text:?} is not hex: {e}"))
}

/// Bytes written as upper-case hex (CometBFT's `HexBytes`): app hashes, addresses, tx data.
#[derive(Clone, PartialEq, Eq, Hash, Default, Debug)]
pub struct HexBytes(pub Vec<u8>);

impl Serialize for HexBytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode_upper(&self.0))
    }
}

impl<'de> Deserialize<'de> for HexBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        decode_hex(&text).map(HexBytes).map_err(D::Error::custom)
    }
}

/// A 32-byte hash written as 64 upper-case hex digits, or `""` for none (CometBFT writes an
/// absent hash as the empty string).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
pub struct Hash(pub Option<[u8; 32]>);

impl Hash {
    pub fn some(bytes: [u8; 32]) -> Hash {
        Hash(Some(bytes))
    }

    /// The hash, or an error naming `what` when it is absent.
    pub fn require(&self, what: &str) -> Result<[u8; 32], String> {
        self.0.ok_or_else(|| format!("{what} is empty"))
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(bytes) => f.write_str(&hex::encode_upper(bytes)),
            None => Ok(()),
        }
    }
}

impl Serialize for Hash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Option::<String>::deserialize(deserializer)?.unwrap_or_default();
        if text.is_empty() {
            return Ok(Hash(None));
        }
        parse_hash(&text).map(Hash::some).map_err(D::Error::custom)
    }
}

/// 32 bytes from 64 hex digits (either case, optional `0x`).
pub fn parse_hash(text: &str) -> Result<[u8; 32], String> {
    let bytes = decode_hex(text)?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        format!(
            "a hash is 32 bytes (64 hex digits), {text:?} is {} bytes",
            bytes.len()
        )
    })
}

/// Bytes written as standard base64 with padding (CometBFT's `[]byte`): txs, signatures, keys.
#[derive(Clone, PartialEq, Eq, Hash, Default, Debug)]
pub struct Base64(pub Vec<u8>);

impl Serialize for Base64 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&BASE64.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Base64 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Option::<String>::deserialize(deserializer)?.unwrap_or_default();
        decode_base64(&text).map(Base64).map_err(D::Error::custom)
    }
}

/// Standard or URL-safe base64, padding optional.
pub fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let trimmed = text.trim_end_matches('=');
    STANDARD_NO_PAD
        .decode(trimmed)
        .or_else(|_| URL_SAFE_NO_PAD.decode(trimmed))
        .map_err(|e| format!("not base64: {e}"))
}

/// Standard base64 with padding.
pub fn encode_base64(bytes: &[u8]) -> String {
    BASE64.encode(bytes)
}

/// A time, held as unix milliseconds, written as RFC 3339 in UTC
/// (`2026-12-04T10:00:00.123Z`). CometBFT's zero time (`0001-01-01T00:00:00Z`, an absent
/// vote's timestamp) is [`Time::ZERO`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Time(pub i64);

impl Time {
    /// `0001-01-01T00:00:00Z` in unix milliseconds.
    pub const ZERO: Time = Time(-62_135_596_800_000);

    pub fn from_unix_ms(ms: u64) -> Time {
        Time(i64::try_from(ms).unwrap_or(i64::MAX))
    }

    /// Unix milliseconds, or 0 before 1970.
    pub fn unix_ms(&self) -> u64 {
        u64::try_from(self.0).unwrap_or(0)
    }

    pub fn parse(text: &str) -> Result<Time, String> {
        let timestamp: jiff::Timestamp = text
            .parse()
            .map_err(|e| format!("{text:?} is not an RFC 3339 time: {e}"))?;
        Ok(Time(timestamp.as_millisecond()))
    }
}

impl Default for Time {
    /// CometBFT's zero time.
    fn default() -> Self {
        Time::ZERO
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match jiff::Timestamp::from_millisecond(self.0) {
            Ok(timestamp) => write!(f, "{timestamp}"),
            // Past jiff's range (year 9999): the latest time it can write.
            Err(_) => write!(f, "{}", jiff::Timestamp::MAX),
        }
    }
}

impl Serialize for Time {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Time::parse(&text).map_err(D::Error::custom)
    }
}

/// The `type` of an ed25519 public key in CometBFT's amino JSON.
pub const ED25519_KEY_TYPE: &str = "tendermint/PubKeyEd25519";

/// A public key as CometBFT writes it: `{"type": "tendermint/PubKeyEd25519", "value": <base64>}`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PubKey {
    /// `tendermint/PubKeyEd25519`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The key's 32 bytes.
    pub value: Base64,
}

impl PubKey {
    pub fn ed25519(key: [u8; 32]) -> PubKey {
        PubKey {
            kind: ED25519_KEY_TYPE.to_owned(),
            value: Base64(key.to_vec()),
        }
    }

    /// The 32-byte ed25519 key, or why not.
    pub fn ed25519_bytes(&self) -> Result<[u8; 32], String> {
        if self.kind != ED25519_KEY_TYPE {
            return Err(format!(
                "key type {:?} is not {ED25519_KEY_TYPE}",
                self.kind
            ));
        }
        <[u8; 32]>::try_from(self.value.0.as_slice())
            .map_err(|_| format!("an ed25519 key is 32 bytes, not {}", self.value.0.len()))
    }
}

/// A CometBFT address: the first 20 bytes of the SHA-256 of an ed25519 public key (as
/// `crypto/ed25519.PubKey.Address`), written as upper-case hex.
pub fn address_of(key: &[u8; 32]) -> HexBytes {
    HexBytes(sha2::Sha256::digest(key)[..20].to_vec())
}

/// A CometBFT node id: the same 20 bytes as [`address_of`], in lower-case hex
/// (`p2p.PubKeyToID`).
pub fn node_id_of(key: &[u8; 32]) -> String {
    hex::encode(&sha2::Sha256::digest(key)[..20])
}

// --- JSON Schemas (the RPC's OpenAPI document, `super::openapi`) ---
//
// Written by hand: each type's serde form is a string whose shape the derive cannot see. Each
// schema says what the node writes; the lenient forms it also reads are in the description.

/// A [`schemars::JsonSchema`] for a type written as one JSON string, named `$name`.
macro_rules! string_schema {
    ($type:ty, $name:literal, $schema:tt) => {
        impl schemars::JsonSchema for $type {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                $name.into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!($schema)
            }
        }
    };
}

string_schema!(Int, "Int", {
    "description": "An unsigned 64-bit integer as a decimal string (CometBFT's int64/uint64 \
        encoding). Params accept a JSON number too.",
    "type": "string",
    "pattern": "^[0-9]+$",
    "examples": ["12"]
});

string_schema!(SignedInt, "SignedInt", {
    "description": "A signed 64-bit integer as a decimal string. Params accept a JSON number too.",
    "type": "string",
    "pattern": "^-?[0-9]+$",
    "examples": ["-5"]
});

string_schema!(HexBytes, "HexBytes", {
    "description": "Bytes as upper-case hex (CometBFT's HexBytes). Params accept either case, \
        with an optional 0x.",
    "type": "string",
    "pattern": "^([0-9A-F]{2})*$",
    "examples": ["5A3F"]
});

string_schema!(Hash, "Hash", {
    "description": "A 32-byte hash as 64 upper-case hex digits, or \"\" for none.",
    "type": "string",
    "pattern": "^([0-9A-F]{64})?$",
    "examples": ["0D2C8E6F0A55A1B9E1D0C3B8A7F6E5D4C3B2A1908F7E6D5C4B3A29180F7E6D5C"]
});

string_schema!(Base64, "Base64", {
    "description": "Bytes as standard base64 with padding (CometBFT's []byte). Params accept \
        URL-safe base64 and missing padding too.",
    "type": "string",
    "contentEncoding": "base64",
    "pattern": "^[A-Za-z0-9+/]*={0,2}$",
    "examples": ["d2VmdA=="]
});

string_schema!(Time, "Time", {
    "description": "A time as RFC 3339 in UTC, to the millisecond at most. \
        0001-01-01T00:00:00Z is CometBFT's zero time (none).",
    "type": "string",
    "format": "date-time",
    "examples": ["2026-12-04T10:00:00.123Z"]
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_strings_and_read_either_way() {
        assert_eq!(serde_json::to_string(&Int(12)).unwrap(), r#""12""#);
        assert_eq!(serde_json::from_str::<Int>(r#""12""#).unwrap(), Int(12));
        assert_eq!(serde_json::from_str::<Int>("12").unwrap(), Int(12));
        assert!(serde_json::from_str::<Int>(r#""-1""#).is_err());
        assert!(serde_json::from_str::<Int>("true").is_err());
        assert_eq!(serde_json::to_string(&SignedInt(-5)).unwrap(), r#""-5""#);
        assert_eq!(
            serde_json::from_str::<SignedInt>(r#""-5""#).unwrap(),
            SignedInt(-5)
        );
    }

    #[test]
    fn hashes_are_upper_hex_and_empty_means_none() {
        let hash = Hash::some([0xab; 32]);
        let text = serde_json::to_string(&hash).unwrap();
        assert_eq!(text, format!("\"{}\"", "AB".repeat(32)));
        assert_eq!(serde_json::from_str::<Hash>(&text).unwrap(), hash);
        let lower = format!("\"0x{}\"", "ab".repeat(32));
        assert_eq!(serde_json::from_str::<Hash>(&lower).unwrap(), hash);
        assert_eq!(serde_json::from_str::<Hash>(r#""""#).unwrap(), Hash(None));
        assert_eq!(serde_json::to_string(&Hash(None)).unwrap(), r#""""#);
        assert!(serde_json::from_str::<Hash>(r#""ABCD""#).is_err());
    }

    #[test]
    fn bytes_are_base64_and_times_rfc3339() {
        assert_eq!(
            serde_json::to_string(&Base64(b"weft".to_vec())).unwrap(),
            r#""d2VmdA==""#
        );
        assert_eq!(decode_base64("d2VmdA").unwrap(), b"weft");
        assert!(decode_base64("d2V*").is_err());
        let time = Time::from_unix_ms(1_700_000_000_123);
        assert_eq!(time.to_string(), "2023-11-14T22:13:20.123Z");
        assert_eq!(Time::parse("2023-11-14T22:13:20.123Z").unwrap(), time);
        assert_eq!(Time::ZERO.to_string(), "0001-01-01T00:00:00Z");
    }

    #[test]
    fn addresses_and_node_ids_are_cometbfts() {
        // CometBFT: the address of an ed25519 key is SHA-256(key)[..20].
        let key = [7u8; 32];
        let digest = sha2::Sha256::digest(key);
        assert_eq!(address_of(&key).0, digest[..20].to_vec());
        assert_eq!(node_id_of(&key), hex::encode(&digest[..20]));
        let pub_key = PubKey::ed25519(key);
        assert_eq!(
            serde_json::to_value(&pub_key).unwrap(),
            serde_json::json!({"type": ED25519_KEY_TYPE, "value": encode_base64(&key)})
        );
        assert_eq!(pub_key.ed25519_bytes().unwrap(), key);
    }
}
