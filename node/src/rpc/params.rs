//! Methods' params: by name or position, heights, hashes, txs (hex or base64), queries.

use super::*;

/// Parses a method's params (`raw` is their JSON, `None` when absent) by name or position.
pub(super) fn parse_params<T: DeserializeOwned>(raw: Option<&str>) -> Result<T, ErrorObjectOwned> {
    serde_json::from_str(raw.unwrap_or("{}"))
        .map_err(|e| invalid_params(format!("invalid params: {e}")))
}

#[derive(Deserialize, Default, Debug, PartialEq)]
#[serde(default)]
pub(super) struct HeightParams {
    #[serde(deserialize_with = "optional_u64")]
    pub(super) height: Option<u64>,
}

#[derive(Deserialize, Default, Debug, PartialEq)]
#[serde(default)]
pub(super) struct LimitParams {
    #[serde(deserialize_with = "optional_u64")]
    pub(super) limit: Option<u64>,
}

#[derive(Deserialize, Debug, PartialEq)]
pub(super) struct HashParams {
    pub(super) hash: String,
}

#[derive(Deserialize, Debug, PartialEq)]
pub(super) struct AddressParams {
    pub(super) address: String,
}

#[derive(Deserialize, Debug, PartialEq)]
pub(super) struct TxParams {
    pub(super) tx: String,
}

#[derive(Deserialize, Debug, PartialEq)]
pub(super) struct QueryParams {
    pub(super) query: String,
}

#[derive(Deserialize, Debug, PartialEq)]
pub(super) struct IsolatedParams {
    pub(super) isolated: bool,
}

/// A non-negative integer given as a JSON number or a decimal string, or absent/null.
pub(super) fn optional_u64<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u64>, D::Error> {
    match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("{n} is not a non-negative integer"))),
        Some(Value::String(s)) => s
            .parse()
            .map(Some)
            .map_err(|_| D::Error::custom(format!("{s:?} is not a non-negative integer"))),
        Some(other) => Err(D::Error::custom(format!("{other} is not an integer"))),
    }
}

/// 32 bytes from 64 hex characters (either case, optional `0x`); `what` names the param.
pub(super) fn parse_hash32(what: &str, text: &str) -> Result<[u8; 32], String> {
    let digits = strip_0x(text);
    if digits.len() != 64 {
        return Err(format!(
            "{what} must be 64 hex characters, got {}",
            digits.len()
        ));
    }
    let mut out = [0; 32];
    hex::decode_to_slice(digits, &mut out).map_err(|e| format!("{what} is not hex: {e}"))?;
    Ok(out)
}

pub(super) fn strip_0x(text: &str) -> &str {
    text.strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text)
}

/// A tx's bytes from hex (optionally `0x`-prefixed) or, failing the look of hex, base64.
pub(super) fn decode_tx_text(text: &str) -> Result<Vec<u8>, String> {
    if text.is_empty() {
        return Err("tx is empty".into());
    }
    let prefixed = strip_0x(text);
    let looks_hex = text.len().is_multiple_of(2) && text.bytes().all(|b| b.is_ascii_hexdigit());
    if prefixed.len() != text.len() || looks_hex {
        return hex::decode(prefixed).map_err(|e| format!("tx is not hex: {e}"));
    }
    decode_base64(text)
}

/// Standard or URL-safe base64, padding optional.
pub(super) fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    let data = text.trim_end_matches('=');
    if text.len() - data.len() > 2 || data.len() % 4 == 1 {
        return Err("tx is neither hex nor well-formed base64".into());
    }
    let mut out = Vec::with_capacity(data.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for (index, byte) in data.bytes().enumerate() {
        let sextet = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => {
                return Err(format!(
                    "tx is neither hex nor base64: character {:?} at {index}",
                    char::from(byte)
                ));
            }
        };
        acc = (acc << 6) | u32::from(sextet);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

/// The height a `block`-like method reads: `requested`, or the latest, if a block is there. A
/// height below `earliest` (pruned, or before a state-synced node's snapshot) is answered as
/// CometBFT answers it: `height X is not available, lowest height is Y`.
pub(super) fn resolve_height(
    requested: Option<u64>,
    latest: Height,
    initial: u64,
    earliest: Height,
) -> Result<Height, ErrorObjectOwned> {
    if latest.0 < initial {
        return Err(not_found("no block has been committed yet"));
    }
    match requested {
        None => Ok(latest),
        Some(h) if h > latest.0 => Err(not_found(format!(
            "height {h} is above the latest height {}",
            latest.0
        ))),
        Some(h) if h < initial => Err(not_found(format!(
            "height {h} is below the initial height {initial}"
        ))),
        Some(h) if h < earliest.0 => Err(not_found(format!(
            "height {h} is not available, lowest height is {}",
            earliest.0
        ))),
        Some(h) => Ok(Height(h)),
    }
}

pub(super) fn chain_height(
    chain: &Chain,
    requested: Option<u64>,
) -> Result<Height, ErrorObjectOwned> {
    resolve_height(
        requested,
        chain.height(),
        chain.genesis().initial_height,
        chain.earliest_height(),
    )
}

/// Which events a subscription wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Query {
    NewBlock,
    Tx,
}

/// `tm.event='NewBlock'` (spaces and either quote allowed) or the bare name.
pub(super) fn parse_query(query: &str) -> Result<Query, String> {
    let compact: String = query.chars().filter(|c| !c.is_whitespace()).collect();
    let name = compact
        .strip_prefix("tm.event=")
        .map(|v| v.trim_matches(|c| c == '\'' || c == '"'))
        .unwrap_or(&compact);
    match name {
        "NewBlock" => Ok(Query::NewBlock),
        "Tx" => Ok(Query::Tx),
        _ => Err(format!(
            "query {query:?} is not supported; use tm.event='NewBlock' or tm.event='Tx'"
        )),
    }
}
