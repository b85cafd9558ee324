//! The RPC as one typed API: the jsonrpsee traits [`Rpc`] and [`UnsafeRpc`], whose server side
//! the node implements and whose generated client ([`RpcClient`], [`UnsafeRpcClient`]) Weft's
//! CLI, `weft-testnet`, the benches and the tests call; the result types in [`types`]; and
//! CometBFT's encodings in [`encoding`].
//!
//! Params go by name (as CometBFT's clients send them) or by position in the order declared.
//! The WebSocket methods `subscribe`, `unsubscribe` and `unsubscribe_all` are not here: they
//! answer in CometBFT's event envelope, which is not JSON-RPC's subscription form (see
//! `rpc::ws`, and [`crate::rpc::events::EventStream`] for a client).

pub mod encoding;
pub mod openapi;
pub mod types;

use std::fmt;

use jsonrpsee::core::RpcResult;
use jsonrpsee::proc_macros::rpc;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use encoding::{HexBytes, Int};
use types::*;

/// Most block metas one `blockchain` returns (CometBFT's 20).
pub const BLOCKCHAIN_METAS_MAX: u64 = 20;
/// `per_page` when none is given (CometBFT's 30).
pub const PER_PAGE_DEFAULT: u64 = 30;
/// Most items one page holds (CometBFT's 100).
pub const PER_PAGE_MAX: u64 = 100;
/// Bytes of genesis JSON per `genesis_chunked` chunk (CometBFT's 16 MiB).
pub const GENESIS_CHUNK_BYTES: usize = 16 * 1024 * 1024;

/// A 32-byte hash as a param: 64 hex digits (either case, optional `0x`), or base64 (44
/// characters, as tendermint-rs sends `tx` and `block_by_hash` hashes). Sent as upper-case hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct HashParam(pub [u8; 32]);

impl fmt::Display for HashParam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode_upper(self.0))
    }
}

impl HashParam {
    pub fn parse(text: &str) -> Result<HashParam, String> {
        let digits = text
            .strip_prefix("0x")
            .or_else(|| text.strip_prefix("0X"))
            .unwrap_or(text);
        if digits.len() == 64 {
            return encoding::parse_hash(digits).map(HashParam);
        }
        if digits.len() == text.len() && (43..=44).contains(&text.len()) {
            let bytes = encoding::decode_base64(text)?;
            if let Ok(hash) = <[u8; 32]>::try_from(bytes.as_slice()) {
                return Ok(HashParam(hash));
            }
        }
        Err(format!(
            "a hash is 64 hex digits (or 32 bytes in base64); got {} characters",
            text.len()
        ))
    }
}

impl Serialize for HashParam {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HashParam {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        HashParam::parse(&text).map_err(D::Error::custom)
    }
}

/// A transaction's bytes as a param: base64 (CometBFT's form, and how it is sent), or hex with
/// `0x`. A string of an even number of hex digits without `0x` is read as hex too, as Weft
/// always has: the base64 of a real tx (over 100 bytes) is all hex digits with odds of about
/// (22/64)^130, so the two do not collide.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TxParam(pub Vec<u8>);

impl TxParam {
    pub fn parse(text: &str) -> Result<TxParam, String> {
        if text.is_empty() {
            return Err("tx is empty".into());
        }
        let digits = text
            .strip_prefix("0x")
            .or_else(|| text.strip_prefix("0X"))
            .unwrap_or(text);
        let looks_hex = text.len().is_multiple_of(2) && text.bytes().all(|b| b.is_ascii_hexdigit());
        if digits.len() != text.len() || looks_hex {
            return hex::decode(digits)
                .map(TxParam)
                .map_err(|e| format!("tx is not hex: {e}"));
        }
        encoding::decode_base64(text)
            .map(TxParam)
            .map_err(|e| format!("tx is neither 0x-hex nor base64: {e}"))
    }
}

impl Serialize for TxParam {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&encoding::encode_base64(&self.0))
    }
}

impl schemars::JsonSchema for HashParam {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "HashParam".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A 32-byte hash: 64 hex digits in either case with an optional 0x, \
                or its 32 bytes in base64 (43 or 44 characters, standard or URL-safe).",
            "type": "string",
            "pattern": "^((0[xX])?[0-9A-Fa-f]{64}|[A-Za-z0-9+/_-]{43}=?)$",
        })
    }
}

/// A tx param that does not decode is still answered with a result (code 1, malformed), as
/// CometBFT answers a tx its app refuses; so this keeps the text's verdict.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TxText(pub Result<Vec<u8>, String>);

impl From<Vec<u8>> for TxText {
    fn from(bytes: Vec<u8>) -> Self {
        TxText(Ok(bytes))
    }
}

impl Serialize for TxText {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Ok(bytes) => serializer.serialize_str(&encoding::encode_base64(bytes)),
            Err(text) => serializer.serialize_str(text),
        }
    }
}

impl<'de> Deserialize<'de> for TxText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(TxText(TxParam::parse(&text).map(|tx| tx.0)))
    }
}

impl schemars::JsonSchema for TxText {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TxText".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A transaction's bytes (its canonical encoding): base64 (standard or \
                URL-safe, padding optional), or hex with 0x. An even number of hex digits \
                without 0x is read as hex. Bytes that do not decode are answered with code 1 \
                (malformed), not a JSON-RPC error.",
            "type": "string",
            "minLength": 1,
            "pattern": "^(0[xX]([0-9A-Fa-f]{2})*|[A-Za-z0-9+/_-]+={0,2})$",
        })
    }
}

/// `asc` or `desc`.
#[derive(
    Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    #[default]
    Asc,
    Desc,
}

/// The read methods, the mempool and the node's state, as CometBFT v0.38 serves them, and
/// Weft's `account`.
#[rpc(server, client)]
pub trait Rpc {
    /// `{}` while the node runs.
    #[method(name = "health", param_kind = map)]
    async fn health(&self) -> RpcResult<Empty>;

    #[method(name = "status", param_kind = map)]
    async fn status(&self) -> RpcResult<StatusResult>;

    #[method(name = "net_info", param_kind = map)]
    async fn net_info(&self) -> RpcResult<NetInfoResult>;

    #[method(name = "genesis", param_kind = map)]
    async fn genesis(&self) -> RpcResult<GenesisResult>;

    #[method(name = "genesis_chunked", param_kind = map)]
    async fn genesis_chunked(&self, chunk: Option<Int>) -> RpcResult<GenesisChunkedResult>;

    #[method(name = "abci_info", param_kind = map)]
    async fn abci_info(&self) -> RpcResult<AbciInfoResult>;

    /// Paths `/account` (data: a 32-byte address) and `/name` (data: the name's bytes).
    #[method(name = "abci_query", param_kind = map)]
    async fn abci_query(
        &self,
        path: Option<String>,
        data: Option<HexBytes>,
        height: Option<Int>,
        prove: Option<bool>,
    ) -> RpcResult<AbciQueryResult>;

    #[method(name = "block", param_kind = map)]
    async fn block(&self, height: Option<Int>) -> RpcResult<BlockResult>;

    #[method(name = "block_by_hash", param_kind = map)]
    async fn block_by_hash(&self, hash: HashParam) -> RpcResult<BlockResult>;

    #[method(name = "header", param_kind = map)]
    async fn header(&self, height: Option<Int>) -> RpcResult<HeaderResult>;

    #[method(name = "header_by_hash", param_kind = map)]
    async fn header_by_hash(&self, hash: HashParam) -> RpcResult<HeaderResult>;

    #[method(name = "block_results", param_kind = map)]
    async fn block_results(&self, height: Option<Int>) -> RpcResult<BlockResultsResult>;

    #[method(name = "commit", param_kind = map)]
    async fn commit(&self, height: Option<Int>) -> RpcResult<CommitResult>;

    /// Metas of the blocks from `minHeight` to `maxHeight`, newest first, at most 20.
    #[method(name = "blockchain", param_kind = map)]
    async fn blockchain(
        &self,
        #[argument(rename = "minHeight")] min_height: Option<Int>,
        #[argument(rename = "maxHeight")] max_height: Option<Int>,
    ) -> RpcResult<BlockchainResult>;

    #[method(name = "validators", param_kind = map)]
    async fn validators(
        &self,
        height: Option<Int>,
        page: Option<Int>,
        per_page: Option<Int>,
    ) -> RpcResult<ValidatorsResult>;

    #[method(name = "consensus_params", param_kind = map)]
    async fn consensus_params(&self, height: Option<Int>) -> RpcResult<ConsensusParamsResult>;

    #[method(name = "consensus_state", param_kind = map)]
    async fn consensus_state(&self) -> RpcResult<ConsensusStateResult>;

    #[method(name = "dump_consensus_state", param_kind = map)]
    async fn dump_consensus_state(&self) -> RpcResult<DumpConsensusStateResult>;

    #[method(name = "tx", param_kind = map)]
    async fn tx(&self, hash: HashParam, prove: Option<bool>) -> RpcResult<TxResult>;

    /// Txs matching `query` (`tx.height`, `tx.hash`, comparisons, `AND`).
    #[method(name = "tx_search", param_kind = map)]
    async fn tx_search(
        &self,
        query: String,
        prove: Option<bool>,
        page: Option<Int>,
        per_page: Option<Int>,
        order_by: Option<Order>,
    ) -> RpcResult<TxSearchResult>;

    /// Blocks matching `query` (`block.height`, comparisons, `AND`).
    #[method(name = "block_search", param_kind = map)]
    async fn block_search(
        &self,
        query: String,
        page: Option<Int>,
        per_page: Option<Int>,
        order_by: Option<Order>,
    ) -> RpcResult<BlockSearchResult>;

    #[method(name = "unconfirmed_txs", param_kind = map)]
    async fn unconfirmed_txs(&self, limit: Option<Int>) -> RpcResult<UnconfirmedTxsResult>;

    #[method(name = "num_unconfirmed_txs", param_kind = map)]
    async fn num_unconfirmed_txs(&self) -> RpcResult<UnconfirmedTxsResult>;

    /// The mempool's verdict on a tx, without admitting it.
    #[method(name = "check_tx", param_kind = map)]
    async fn check_tx(&self, tx: TxText) -> RpcResult<CheckTxResult>;

    #[method(name = "broadcast_tx_async", param_kind = map)]
    async fn broadcast_tx_async(&self, tx: TxText) -> RpcResult<BroadcastResult>;

    #[method(name = "broadcast_tx_sync", param_kind = map)]
    async fn broadcast_tx_sync(&self, tx: TxText) -> RpcResult<BroadcastResult>;

    #[method(name = "broadcast_tx_commit", param_kind = map)]
    async fn broadcast_tx_commit(&self, tx: TxText) -> RpcResult<BroadcastCommitResult>;

    /// Weft: an account's balance and next nonce.
    #[method(name = "account", param_kind = map)]
    async fn account(&self, address: HashParam) -> RpcResult<AccountResult>;
}

/// Methods that exist only with `rpc.unsafe` (CometBFT's precedent).
#[rpc(server, client)]
pub trait UnsafeRpc {
    /// Cuts the node off from every peer (`true`) or heals it (`false`).
    #[method(name = "unsafe_set_isolated", param_kind = map)]
    async fn unsafe_set_isolated(&self, isolated: bool) -> RpcResult<IsolatedResult>;
}

/// Every method with its params' names, for the route list at `GET /` and the OpenAPI
/// document. The WebSocket-only methods are last.
pub const ROUTES: &[(&str, &[&str])] = &[
    ("abci_info", &[]),
    ("abci_query", &["path", "data", "height", "prove"]),
    ("account", &["address"]),
    ("block", &["height"]),
    ("block_by_hash", &["hash"]),
    ("block_results", &["height"]),
    ("block_search", &["query", "page", "per_page", "order_by"]),
    ("blockchain", &["minHeight", "maxHeight"]),
    ("broadcast_tx_async", &["tx"]),
    ("broadcast_tx_commit", &["tx"]),
    ("broadcast_tx_sync", &["tx"]),
    ("check_tx", &["tx"]),
    ("commit", &["height"]),
    ("consensus_params", &["height"]),
    ("consensus_state", &[]),
    ("dump_consensus_state", &[]),
    ("genesis", &[]),
    ("genesis_chunked", &["chunk"]),
    ("header", &["height"]),
    ("header_by_hash", &["hash"]),
    ("health", &[]),
    ("net_info", &[]),
    ("num_unconfirmed_txs", &[]),
    ("status", &[]),
    ("tx", &["hash", "prove"]),
    (
        "tx_search",
        &["query", "prove", "page", "per_page", "order_by"],
    ),
    ("unconfirmed_txs", &["limit"]),
    ("validators", &["height", "page", "per_page"]),
];

/// The unsafe routes, listed only where `rpc.unsafe` is on.
pub const UNSAFE_ROUTES: &[(&str, &[&str])] = &[("unsafe_set_isolated", &["isolated"])];

/// The WebSocket-only methods.
pub const WEBSOCKET_ROUTES: &[(&str, &[&str])] = &[
    ("subscribe", &["query"]),
    ("unsubscribe", &["query"]),
    ("unsubscribe_all", &[]),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_params_read_hex_and_base64() {
        let hash = [0x5a; 32];
        let upper = hex::encode_upper(hash);
        assert_eq!(HashParam::parse(&upper).unwrap().0, hash);
        assert_eq!(
            HashParam::parse(&format!("0x{}", hex::encode(hash)))
                .unwrap()
                .0,
            hash
        );
        assert_eq!(
            HashParam::parse(&encoding::encode_base64(&hash)).unwrap().0,
            hash
        );
        assert!(HashParam::parse("ABCD").is_err());
        assert!(HashParam::parse(&"G".repeat(64)).is_err());
    }

    #[test]
    fn tx_params_read_base64_and_hex() {
        let tx = vec![0xff; 150];
        assert_eq!(TxParam::parse(&encoding::encode_base64(&tx)).unwrap().0, tx);
        assert_eq!(
            TxParam::parse(&format!("0x{}", hex::encode(&tx)))
                .unwrap()
                .0,
            tx
        );
        assert_eq!(TxParam::parse(&hex::encode(&tx)).unwrap().0, tx);
        assert!(TxParam::parse("").is_err());
        assert!(TxParam::parse("0xzz").is_err());
        assert!(TxParam::parse("***").is_err());
    }
}
