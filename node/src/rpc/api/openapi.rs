//! The RPC's OpenAPI 3.1 document, [`document`], built from the API's own types (their
//! `schemars::JsonSchema`) and committed as `docs/rpc/openapi.json`. A test keeps the two equal;
//! `WEFT_BLESS_OPENAPI=1 cargo test -p weft-node --lib openapi` rewrites the file.
//!
//! Each method is a path `/<method>` with a `get` operation: CometBFT's URI form, whose params
//! are query parameters and whose answer is the JSON-RPC envelope. JSON-RPC over `POST /` and
//! the WebSocket at `/websocket` carry many methods on one path, which OpenAPI cannot say per
//! method: the description and `components` (`JsonRpcRequest`, `EventEnvelope`, …) tell them.
//!
//! `METHODS` and `UNSAFE_METHODS` map each method to its result and params; tests check
//! them against [`super::ROUTES`], [`super::UNSAFE_ROUTES`] and the `#[method]`s of the traits.

use schemars::generate::{Contract, SchemaSettings};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Map, Value, json};

use super::encoding::{HexBytes, Int};
use super::types::*;
use super::{HashParam, Order, TxText};

/// Where the generated schemas live, and the prefix of every `$ref` to them.
const COMPONENTS_PATH: &str = "/components/schemas";

/// CometBFT's default RPC address.
const SERVER_URL: &str = "http://127.0.0.1:26657";

/// Adds `T`'s schema to the generator's components (once) and returns a `$ref` to it.
type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

fn schema<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

/// Who defines a method: the operation's tag.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Tag {
    CometBft,
    Weft,
    /// Served only with `rpc.unsafe`.
    Unsafe,
}

impl Tag {
    fn name(self) -> &'static str {
        match self {
            Tag::CometBft => "CometBFT",
            Tag::Weft => "Weft",
            Tag::Unsafe => "unsafe",
        }
    }
}

struct Param {
    name: &'static str,
    schema: SchemaFn,
    required: bool,
}

const fn required(name: &'static str, schema: SchemaFn) -> Param {
    Param {
        name,
        schema,
        required: true,
    }
}

const fn optional(name: &'static str, schema: SchemaFn) -> Param {
    Param {
        name,
        schema,
        required: false,
    }
}

/// A method: its result, and its params in positional order.
struct Method {
    name: &'static str,
    tag: Tag,
    summary: &'static str,
    result: SchemaFn,
    params: &'static [Param],
}

const HEIGHT: Param = optional("height", schema::<Int>);
const PAGE: Param = optional("page", schema::<Int>);
const PER_PAGE: Param = optional("per_page", schema::<Int>);
const PROVE: Param = optional("prove", schema::<bool>);
const ORDER_BY: Param = optional("order_by", schema::<Order>);
const TX: Param = required("tx", schema::<TxText>);
const HASH: Param = required("hash", schema::<HashParam>);

/// Every method of [`super::ROUTES`], in its order.
const METHODS: &[Method] = &[
    Method {
        name: "abci_info",
        tag: Tag::CometBft,
        summary: "The application's version and last block.",
        result: schema::<AbciInfoResult>,
        params: &[],
    },
    Method {
        name: "abci_query",
        tag: Tag::CometBft,
        summary: "Queries the application: paths `/account` (data: a 32-byte address) and \
            `/name` (data: the name's bytes).",
        result: schema::<AbciQueryResult>,
        params: &[
            optional("path", schema::<String>),
            optional("data", schema::<HexBytes>),
            HEIGHT,
            PROVE,
        ],
    },
    Method {
        name: "account",
        tag: Tag::Weft,
        summary: "An account's balance and next nonce.",
        result: schema::<AccountResult>,
        params: &[required("address", schema::<HashParam>)],
    },
    Method {
        name: "block",
        tag: Tag::CometBft,
        summary: "The block at a height.",
        result: schema::<BlockResult>,
        params: &[HEIGHT],
    },
    Method {
        name: "block_by_hash",
        tag: Tag::CometBft,
        summary: "The block with a hash; `block` is null for an unknown hash.",
        result: schema::<BlockResult>,
        params: &[HASH],
    },
    Method {
        name: "block_results",
        tag: Tag::CometBft,
        summary: "The results of a block's txs.",
        result: schema::<BlockResultsResult>,
        params: &[HEIGHT],
    },
    Method {
        name: "block_search",
        tag: Tag::CometBft,
        summary: "Blocks matching `query` (`block.height`, comparisons, `AND`).",
        result: schema::<BlockSearchResult>,
        params: &[
            required("query", schema::<String>),
            PAGE,
            PER_PAGE,
            ORDER_BY,
        ],
    },
    Method {
        name: "blockchain",
        tag: Tag::CometBft,
        summary: "Metas of the blocks from `minHeight` to `maxHeight` (0: unbounded), newest \
            first, at most 20.",
        result: schema::<BlockchainResult>,
        params: &[
            optional("minHeight", schema::<Int>),
            optional("maxHeight", schema::<Int>),
        ],
    },
    Method {
        name: "broadcast_tx_async",
        tag: Tag::CometBft,
        summary: "Submits a tx and answers once it decodes, checking it in the background.",
        result: schema::<BroadcastResult>,
        params: &[TX],
    },
    Method {
        name: "broadcast_tx_commit",
        tag: Tag::CometBft,
        summary: "Submits a tx and answers once it commits (or the check refuses it).",
        result: schema::<BroadcastCommitResult>,
        params: &[TX],
    },
    Method {
        name: "broadcast_tx_sync",
        tag: Tag::CometBft,
        summary: "Submits a tx and answers the mempool's verdict.",
        result: schema::<BroadcastResult>,
        params: &[TX],
    },
    Method {
        name: "check_tx",
        tag: Tag::CometBft,
        summary: "The mempool's verdict on a tx, without admitting it.",
        result: schema::<CheckTxResult>,
        params: &[TX],
    },
    Method {
        name: "commit",
        tag: Tag::CometBft,
        summary: "The header and commit of a height.",
        result: schema::<CommitResult>,
        params: &[HEIGHT],
    },
    Method {
        name: "consensus_params",
        tag: Tag::CometBft,
        summary: "The consensus parameters at a height.",
        result: schema::<ConsensusParamsResult>,
        params: &[HEIGHT],
    },
    Method {
        name: "consensus_state",
        tag: Tag::CometBft,
        summary: "A summary of the round being decided.",
        result: schema::<ConsensusStateResult>,
        params: &[],
    },
    Method {
        name: "dump_consensus_state",
        tag: Tag::CometBft,
        summary: "The round state in full, and each peer's height and round.",
        result: schema::<DumpConsensusStateResult>,
        params: &[],
    },
    Method {
        name: "genesis",
        tag: Tag::CometBft,
        summary: "The genesis document.",
        result: schema::<GenesisResult>,
        params: &[],
    },
    Method {
        name: "genesis_chunked",
        tag: Tag::CometBft,
        summary: "One chunk (from 0) of the genesis document's JSON, 16 MiB a chunk.",
        result: schema::<GenesisChunkedResult>,
        params: &[optional("chunk", schema::<Int>)],
    },
    Method {
        name: "header",
        tag: Tag::CometBft,
        summary: "The header at a height.",
        result: schema::<HeaderResult>,
        params: &[HEIGHT],
    },
    Method {
        name: "header_by_hash",
        tag: Tag::CometBft,
        summary: "The header of the block with a hash.",
        result: schema::<HeaderResult>,
        params: &[HASH],
    },
    Method {
        name: "health",
        tag: Tag::CometBft,
        summary: "`{}` while the node runs.",
        result: schema::<Empty>,
        params: &[],
    },
    Method {
        name: "net_info",
        tag: Tag::CometBft,
        summary: "The node's listeners and connected peers.",
        result: schema::<NetInfoResult>,
        params: &[],
    },
    Method {
        name: "num_unconfirmed_txs",
        tag: Tag::CometBft,
        summary: "The mempool's size; `txs` is null.",
        result: schema::<UnconfirmedTxsResult>,
        params: &[],
    },
    Method {
        name: "status",
        tag: Tag::CometBft,
        summary: "The node's identity, sync state and validator key.",
        result: schema::<StatusResult>,
        params: &[],
    },
    Method {
        name: "tx",
        tag: Tag::CometBft,
        summary: "A committed tx by its hash.",
        result: schema::<TxResult>,
        params: &[HASH, PROVE],
    },
    Method {
        name: "tx_search",
        tag: Tag::CometBft,
        summary: "Committed txs matching `query` (`tx.height`, `tx.hash`, comparisons, `AND`).",
        result: schema::<TxSearchResult>,
        params: &[
            required("query", schema::<String>),
            PROVE,
            PAGE,
            PER_PAGE,
            ORDER_BY,
        ],
    },
    Method {
        name: "unconfirmed_txs",
        tag: Tag::CometBft,
        summary: "Pending txs, oldest first.",
        result: schema::<UnconfirmedTxsResult>,
        params: &[optional("limit", schema::<Int>)],
    },
    Method {
        name: "validators",
        tag: Tag::CometBft,
        summary: "The validator set of a height, a page at a time.",
        result: schema::<ValidatorsResult>,
        params: &[HEIGHT, PAGE, PER_PAGE],
    },
];

/// Every method of [`super::UNSAFE_ROUTES`].
const UNSAFE_METHODS: &[Method] = &[Method {
    name: "unsafe_set_isolated",
    tag: Tag::Unsafe,
    summary: "Cuts the node off from every peer (`true`) or heals it (`false`).",
    result: schema::<IsolatedResult>,
    params: &[required("isolated", schema::<bool>)],
}];

/// What a param means beyond its schema, where its name says less than it could.
fn param_description(name: &str) -> Option<String> {
    use super::{PER_PAGE_DEFAULT, PER_PAGE_MAX};
    use crate::rpc::{UNCONFIRMED_TXS_DEFAULT, UNCONFIRMED_TXS_MAX};
    let text = match name {
        "height" => "A height; the latest when absent.".to_owned(),
        "page" => "The page, from 1 (the default).".to_owned(),
        "per_page" => {
            format!("Items per page: {PER_PAGE_DEFAULT} by default, at most {PER_PAGE_MAX}.")
        }
        "prove" => "Accepted and ignored: Weft answers no proofs.".to_owned(),
        "order_by" => "By height: `asc` (the default) or `desc`.".to_owned(),
        "limit" => format!(
            "Most txs listed: {UNCONFIRMED_TXS_DEFAULT} by default, at most {UNCONFIRMED_TXS_MAX}."
        ),
        "query" => "A CometBFT event query, e.g. `tx.height>5 AND tx.height<=9`.".to_owned(),
        "address" => "The account's ed25519 public key (Weft's address).".to_owned(),
        "chunk" => "The chunk, from 0 (the default).".to_owned(),
        "minHeight" | "maxHeight" => "0 or absent: unbounded.".to_owned(),
        "isolated" => "`true` cuts the node off from its peers, `false` heals it.".to_owned(),
        _ => return None,
    };
    Some(text)
}

/// The OpenAPI 3.1 document of the RPC.
pub fn document() -> Value {
    let settings = SchemaSettings::draft2020_12().with(|settings| {
        settings.definitions_path = COMPONENTS_PATH.into();
        settings.meta_schema = None;
        // The results are what the node writes; params are hand-written schemas either way.
        settings.contract = Contract::Serialize;
    });
    let mut generator = settings.into_generator();
    let mut paths = Map::new();
    paths.insert("/".into(), root_path());
    for method in METHODS.iter().chain(UNSAFE_METHODS) {
        paths.insert(
            format!("/{}", method.name),
            method_path(method, &mut generator),
        );
    }
    paths.insert("/websocket".into(), websocket_path());
    for event in [
        schema::<EventEnvelope>,
        schema::<NewBlockEvent>,
        schema::<NewBlockHeaderEvent>,
        schema::<TxEvent>,
        schema::<NewRoundEvent>,
        schema::<VoteEvent>,
    ] {
        event(&mut generator);
    }
    let mut schemas = generator.take_definitions(true);
    schemas.extend(json_rpc_schemas());
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Weft RPC",
            "version": env!("CARGO_PKG_VERSION"),
            "description": description(),
        },
        "servers": [{"url": SERVER_URL}],
        "tags": [
            {"name": Tag::CometBft.name(), "description": "CometBFT v0.38's methods."},
            {"name": Tag::Weft.name(), "description": "Weft's own methods."},
            {"name": Tag::Unsafe.name(), "description": "Served only with `rpc.unsafe`."},
        ],
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

/// `GET /<method>`: the method in CometBFT's URI form.
fn method_path(method: &Method, generator: &mut SchemaGenerator) -> Value {
    let parameters: Vec<Value> = method
        .params
        .iter()
        .map(|param| {
            let mut parameter = json!({
                "name": param.name,
                "in": "query",
                "required": param.required,
                "schema": (param.schema)(generator),
            });
            if let Some(description) = param_description(param.name) {
                parameter["description"] = description.into();
            }
            parameter
        })
        .collect();
    let answer = json!({
        "type": "object",
        "required": ["jsonrpc", "id", "result"],
        "properties": {
            "jsonrpc": {"const": "2.0"},
            "id": {"const": -1},
            "result": (method.result)(generator),
        },
    });
    let mut operation = json!({
        "operationId": method.name,
        "tags": [method.tag.name()],
        "summary": method.summary,
        "parameters": parameters,
        "responses": {
            "200": {
                "description": "The JSON-RPC answer, with CometBFT's id -1: the result, or an \
                    error.",
                "content": {"application/json": {"schema": {
                    "oneOf": [answer, reference("JsonRpcErrorResponse")],
                }}},
            },
            "default": http_refusal(),
        },
    });
    if method.tag == Tag::Unsafe {
        operation["description"] = "Only with `rpc.unsafe`; otherwise -32601 (method not \
            found), and absent from `GET /`."
            .into();
    }
    json!({"get": operation})
}

/// `GET /` (the route list) and `POST /` (JSON-RPC, any method).
fn root_path() -> Value {
    json!({
        "get": {
            "operationId": "routes",
            "summary": "The route list, as CometBFT's HTML page.",
            "responses": {"200": {
                "description": "Links to every method's URI form.",
                "content": {"text/html": {"schema": {"type": "string"}}},
            }},
        },
        "post": {
            "operationId": "json_rpc",
            "summary": "JSON-RPC 2.0: one request, or a batch.",
            "description": "Any method of a `GET /<method>` path, its params by name or by \
                position; the result is that path's `result`.",
            "requestBody": {
                "required": true,
                "content": {"application/json": {"schema": {"oneOf": [
                    reference("JsonRpcRequest"),
                    {"type": "array", "items": reference("JsonRpcRequest")},
                ]}}},
            },
            "responses": {
                "200": {
                    "description": "The answer, or an array of answers for a batch.",
                    "content": {"application/json": {"schema": {"oneOf": [
                        reference("JsonRpcResponse"),
                        {"type": "array", "items": reference("JsonRpcResponse")},
                    ]}}},
                },
                "default": http_refusal(),
            },
        },
    })
}

/// `GET /websocket`: the upgrade. What flows after it is in the description.
fn websocket_path() -> Value {
    json!({"get": {
        "operationId": "websocket",
        "summary": "The WebSocket: JSON-RPC requests and `subscribe`d events as text messages.",
        "description": "OpenAPI cannot describe the messages of a WebSocket: see the document's \
            description, `JsonRpcRequest` and `WebSocketEvent`.",
        "responses": {
            "101": {"description": "Switching protocols."},
            "default": http_refusal(),
        },
    }})
}

fn http_refusal() -> Value {
    json!({
        "description": "An HTTP-level refusal: 408 when a request body did not arrive within \
            `rpc.body_read_timeout_ms`, 503 past `rpc.max_connections`, 500 when the answer \
            could not be read.",
    })
}

fn reference(name: &str) -> Value {
    json!({"$ref": format!("#{COMPONENTS_PATH}/{name}")})
}

/// JSON-RPC's envelopes, which no Rust type of the API spells out.
fn json_rpc_schemas() -> Map<String, Value> {
    let methods: Vec<&str> = super::ROUTES
        .iter()
        .chain(super::UNSAFE_ROUTES)
        .chain(super::WEBSOCKET_ROUTES)
        .map(|(name, _)| *name)
        .collect();
    let schemas = json!({
        "JsonRpcId": {
            "description": "A request's id, echoed in its answer. A request without one is a \
                notification and gets no answer. Answers to `GET /<method>` have id -1.",
            "type": ["integer", "string", "null"],
        },
        "JsonRpcRequest": {
            "description": "A JSON-RPC 2.0 request: the body of `POST /` (or an array of them, \
                a batch of at most `rpc.max_batch`), or a WebSocket text message. `params` go \
                by name in an object, or by position in an array in the order the method's \
                `GET` operation lists them; unknown named params are ignored.",
            "type": "object",
            "required": ["jsonrpc", "method"],
            "properties": {
                "jsonrpc": {"const": "2.0"},
                "id": reference("JsonRpcId"),
                "method": {
                    "description": "`subscribe`, `unsubscribe` and `unsubscribe_all` only over \
                        the WebSocket.",
                    "enum": methods,
                },
                "params": {"type": ["object", "array"]},
            },
        },
        "JsonRpcError": {
            "description": "A failed call: the codes are in the document's description.",
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "integer"},
                "message": {"type": "string"},
                "data": {"description": "What went wrong, usually a string."},
            },
        },
        "JsonRpcErrorResponse": {
            "type": "object",
            "required": ["jsonrpc", "id", "error"],
            "properties": {
                "jsonrpc": {"const": "2.0"},
                "id": reference("JsonRpcId"),
                "error": reference("JsonRpcError"),
            },
        },
        "JsonRpcResponse": {
            "description": "The answer to a `JsonRpcRequest`: `result` is as in the method's \
                `GET` operation.",
            "oneOf": [
                {
                    "type": "object",
                    "required": ["jsonrpc", "id", "result"],
                    "properties": {
                        "jsonrpc": {"const": "2.0"},
                        "id": reference("JsonRpcId"),
                        "result": {},
                    },
                },
                reference("JsonRpcErrorResponse"),
            ],
        },
        "WebSocketEvent": {
            "description": "An event for a `subscribe`d query, as a WebSocket text message: the \
                id is the `subscribe`'s.",
            "type": "object",
            "required": ["jsonrpc", "id", "result"],
            "properties": {
                "jsonrpc": {"const": "2.0"},
                "id": reference("JsonRpcId"),
                "result": reference("EventEnvelope"),
            },
        },
    });
    match schemas {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// The document's description: the transports, the encodings, the WebSocket and the errors.
fn description() -> String {
    let websocket_methods: Vec<String> = super::WEBSOCKET_ROUTES
        .iter()
        .map(|(name, params)| format!("`{name}` ({})", params_text(params)))
        .collect();
    format!(
        "{INTRO}\n\n{ENCODINGS}\n\n## WebSocket\nConnect to `/websocket`. Requests are \
         `JsonRpcRequest`s as text messages, answered as over HTTP. The WebSocket-only methods \
         are {}: `subscribe` answers `{{}}` and then sends each event whose attributes match \
         its query as a `WebSocketEvent` (an `EventEnvelope` under the `subscribe`'s id). \
         `data.type` names the event and the schema of `data.value`:\n\n{EVENTS}\n\n## Errors\n\
         {}\n",
        websocket_methods.join(", "),
        error_table(),
    )
}

fn params_text(params: &[&str]) -> String {
    if params.is_empty() {
        return "no params".to_owned();
    }
    let names: Vec<String> = params.iter().map(|name| format!("`{name}`")).collect();
    names.join(", ")
}

const INTRO: &str = "\
CometBFT v0.38's JSON-RPC, shape for shape, with Weft's own fields beside CometBFT's, and \
Weft's `account`.

## Transports
All on one port (`rpc.laddr`):
- `POST /`: JSON-RPC 2.0 (`JsonRpcRequest`, answered with `JsonRpcResponse`), one request or a \
batch.
- `GET /<method>?<param>=<value>&…`: CometBFT's URI form, documented per method below; the \
answer has id -1. A value in double quotes is a JSON string with JSON's escapes; `true` and \
`false` are booleans; anything else is a string as sent; an empty value is left out. \
Percent-encode `+` (`%2B`) in base64.
- `GET /`: the route list.
- `/websocket`: JSON-RPC and event subscriptions (below).

Methods tagged `unsafe` exist only with `rpc.unsafe`.";

const ENCODINGS: &str = "\
## Encodings
CometBFT's: 64-bit integers as decimal strings (`Int`, `SignedInt`); hashes as 64 upper-case \
hex digits, `\"\"` for none (`Hash`); addresses and app hashes as upper-case hex (`HexBytes`); \
txs, signatures and other bytes as standard base64 (`Base64`); times as RFC 3339 in UTC \
(`Time`); public keys as `{\"type\": \"tendermint/PubKeyEd25519\", \"value\": <base64>}` \
(`PubKey`). Params are read leniently: integers as strings or numbers, hex in either case \
with an optional `0x`, hashes as hex or base64 (`HashParam`), txs as base64 or `0x` hex \
(`TxText`).";

const EVENTS: &str = "\
| `data.type` | `data.value` |
|---|---|
| `tendermint/event/NewBlock` | `NewBlockEvent` |
| `tendermint/event/NewBlockHeader` | `NewBlockHeaderEvent` |
| `tendermint/event/Tx` | `TxEvent` |
| `tendermint/event/NewRound` | `NewRoundEvent` |
| `tendermint/event/Vote` | `VoteEvent` |";

/// The `# Errors` table of `rpc`'s module docs, as Markdown: one source for both.
fn error_table() -> String {
    const RPC_MODULE_SOURCE: &str = include_str!("../mod.rs");
    let rows: Vec<String> = RPC_MODULE_SOURCE
        .lines()
        .skip_while(|line| line.trim() != "//! # Errors")
        .skip(1)
        .take_while(|line| line.starts_with("//! |"))
        .map(|line| without_doc_links(line.trim_start_matches("//! ")))
        .collect();
    rows.join("\n")
}

/// `[`X`]` (a rustdoc link) as `` `X` ``.
fn without_doc_links(line: &str) -> String {
    line.replace("[`", "`").replace("`]", "`")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::PathBuf;

    use super::super::{ROUTES, UNSAFE_ROUTES};
    use super::*;

    const BLESS_VAR: &str = "WEFT_BLESS_OPENAPI";

    /// `docs/rpc/openapi.json` at the workspace's root, which holds this crate.
    fn committed_path() -> PathBuf {
        let node = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        node.parent().unwrap().join("docs/rpc/openapi.json")
    }

    #[test]
    fn the_committed_document_is_the_generated_one() {
        let generated = serde_json::to_string_pretty(&document()).unwrap() + "\n";
        let path = committed_path();
        if std::env::var_os(BLESS_VAR).is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &generated).unwrap();
            return;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{} is not the generated OpenAPI document: run \
             `{BLESS_VAR}=1 cargo test -p weft-node --lib openapi` to rewrite it, and commit it",
            path.display(),
        );
    }

    fn names(methods: &[Method]) -> BTreeSet<&'static str> {
        methods.iter().map(|method| method.name).collect()
    }

    fn route_names(routes: &[(&'static str, &[&str])]) -> BTreeSet<&'static str> {
        routes.iter().map(|(name, _)| *name).collect()
    }

    #[test]
    fn the_table_has_every_route_and_nothing_else() {
        assert_eq!(names(METHODS), route_names(ROUTES));
        assert_eq!(names(UNSAFE_METHODS), route_names(UNSAFE_ROUTES));
        let routes = ROUTES.iter().chain(UNSAFE_ROUTES);
        for (name, route_params) in routes {
            let method = METHODS
                .iter()
                .chain(UNSAFE_METHODS)
                .find(|method| method.name == *name)
                .unwrap();
            let params: Vec<&str> = method.params.iter().map(|param| param.name).collect();
            assert_eq!(&params, route_params, "the params of {name}");
        }
        assert!(METHODS.iter().all(|method| method.tag != Tag::Unsafe));
        assert!(
            UNSAFE_METHODS
                .iter()
                .all(|method| method.tag == Tag::Unsafe)
        );
    }

    /// The `#[method(name = "…")]`s of the `Rpc` and `UnsafeRpc` traits, read from their source.
    fn trait_methods() -> (BTreeSet<String>, BTreeSet<String>) {
        const API_SOURCE: &str = include_str!("mod.rs");
        let (safe, unsafe_part) = API_SOURCE.split_once("pub trait UnsafeRpc").unwrap();
        let declared = |text: &str| -> BTreeSet<String> {
            text.split("#[method(name = \"")
                .skip(1)
                .map(|rest| rest.split('"').next().unwrap().to_owned())
                .collect()
        };
        (declared(safe), declared(unsafe_part))
    }

    #[test]
    fn the_routes_are_the_methods_the_traits_declare() {
        let (safe, unsafe_methods) = trait_methods();
        assert!(safe.len() > 20, "the parse found {safe:?}");
        let owned = |set: BTreeSet<&str>| -> BTreeSet<String> {
            set.into_iter().map(str::to_owned).collect()
        };
        assert_eq!(owned(route_names(ROUTES)), safe);
        assert_eq!(owned(route_names(UNSAFE_ROUTES)), unsafe_methods);
        assert_eq!(owned(names(METHODS)), safe);
        assert_eq!(owned(names(UNSAFE_METHODS)), unsafe_methods);
    }

    /// Every `$ref` under `value`.
    fn refs<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(target)) = map.get("$ref") {
                    found.push(target);
                }
                map.values().for_each(|child| refs(child, found));
            }
            Value::Array(items) => items.iter().for_each(|child| refs(child, found)),
            _ => {}
        }
    }

    #[test]
    fn every_result_and_every_ref_resolves_in_the_components() {
        let document = document();
        let resolves = |target: &str| {
            target
                .strip_prefix('#')
                .and_then(|pointer| document.pointer(pointer))
                .is_some()
        };
        for method in METHODS.iter().chain(UNSAFE_METHODS) {
            let pointer = format!(
                "/paths/~1{}/get/responses/200/content/application~1json/schema/oneOf/0/\
                 properties/result/$ref",
                method.name
            );
            let target = document.pointer(&pointer).and_then(Value::as_str);
            let target = target.unwrap_or_else(|| panic!("{} has no result $ref", method.name));
            assert!(
                target.starts_with(&format!("#{COMPONENTS_PATH}/")) && resolves(target),
                "{}'s result {target} does not resolve",
                method.name
            );
        }
        let mut found = Vec::new();
        refs(&document, &mut found);
        assert!(found.len() > 100, "only {} refs", found.len());
        for target in found {
            assert!(resolves(target), "{target} does not resolve");
        }
    }

    #[test]
    fn the_document_names_its_parts() {
        let document = document();
        assert_eq!(document["openapi"], "3.1.0");
        assert_eq!(document["info"]["version"], env!("CARGO_PKG_VERSION"));
        let schemas = &document["components"]["schemas"];
        for name in [
            "JsonRpcRequest",
            "JsonRpcError",
            "EventEnvelope",
            "NewBlockEvent",
            "NewBlockHeaderEvent",
            "TxEvent",
            "NewRoundEvent",
            "VoteEvent",
        ] {
            assert!(schemas.get(name).is_some(), "no component {name}");
        }
        assert_eq!(schemas["Int"]["pattern"], "^[0-9]+$");
        assert_eq!(schemas["Hash"]["pattern"], "^([0-9A-F]{64})?$");
        assert_eq!(schemas["Time"]["format"], "date-time");
        let description = document["info"]["description"].as_str().unwrap();
        for needle in [
            "| -32601 |",
            "`subscribe` (`query`)",
            "tendermint/event/Vote",
        ] {
            assert!(
                description.contains(needle),
                "the description lacks {needle}"
            );
        }
        let isolated = &document["paths"]["/unsafe_set_isolated"]["get"];
        assert_eq!(isolated["tags"][0], "unsafe");
        assert!(
            isolated["description"]
                .as_str()
                .unwrap()
                .contains("rpc.unsafe")
        );
        let tx_param = &document["paths"]["/tx"]["get"]["parameters"][0];
        assert_eq!(tx_param["name"], "hash");
        assert_eq!(tx_param["required"], true);
    }
}
