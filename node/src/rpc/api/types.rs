//! The RPC's results, shape for shape as CometBFT v0.38 answers them (`rpc/core/types`), with
//! Weft's own fields beside CometBFT's where Weft has more to say. Every field a CometBFT client
//! reads is here under CometBFT's name and in its encoding ([`super::encoding`]).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::encoding::{Base64, Hash, HexBytes, Int, PubKey, SignedInt, Time};

// --- Blocks ---

/// CometBFT's part-set header. Weft gossips a block whole, so a block is one part whose hash is
/// the block's hash; an absent block id has `{total: 0, hash: ""}`.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize, JsonSchema)]
pub struct PartSetHeader {
    pub total: u32,
    pub hash: Hash,
}

#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize, JsonSchema)]
pub struct BlockId {
    pub hash: Hash,
    pub parts: PartSetHeader,
}

impl BlockId {
    /// The id of a block with this hash.
    pub fn of(hash: [u8; 32]) -> BlockId {
        BlockId {
            hash: Hash::some(hash),
            parts: PartSetHeader {
                total: 1,
                hash: Hash::some(hash),
            },
        }
    }
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct Version {
    pub block: Int,
    pub app: Int,
}

/// A block header in CometBFT's shape. The mapping from Weft's header:
/// `data_hash` is Weft's tx root, `app_hash` its state root (after this block's txs; CometBFT's
/// is after the previous block's), `last_block_id` its previous hash, `proposer_address` the
/// CometBFT address of its proposer's key. `consensus_hash` is the hash of the genesis's
/// consensus parameters, `last_results_hash` is empty (Weft's state root covers results).
/// Weft's own fields: `dag_root` (the conflict DAG and access sets), `proposer_pub_key`.
/// Weft's block hash is its own (blake3 of its canonical header encoding), not CometBFT's.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct Header {
    pub version: Version,
    pub chain_id: String,
    pub height: Int,
    pub time: Time,
    pub last_block_id: BlockId,
    pub last_commit_hash: Hash,
    pub data_hash: Hash,
    pub validators_hash: Hash,
    pub next_validators_hash: Hash,
    pub consensus_hash: Hash,
    pub app_hash: HexBytes,
    pub last_results_hash: Hash,
    pub evidence_hash: Hash,
    pub proposer_address: HexBytes,
    /// Weft: the root of the block's access sets and conflict DAG.
    #[serde(default)]
    pub dag_root: Hash,
    /// Weft: the proposer's ed25519 public key (its validator id), upper-case hex.
    #[serde(default)]
    pub proposer_pub_key: HexBytes,
}

/// One signature of a commit. `block_id_flag` is 1 (absent: no address, zero time, no
/// signature) or 2 (committed). Weft's votes carry no time of their own: a signature's
/// `timestamp` is the committed block's time.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct CommitSig {
    pub block_id_flag: u8,
    pub validator_address: HexBytes,
    pub timestamp: Time,
    pub signature: Option<Base64>,
}

/// The absent and committed `block_id_flag`s.
pub const BLOCK_ID_FLAG_ABSENT: u8 = 1;
pub const BLOCK_ID_FLAG_COMMIT: u8 = 2;

/// A commit certificate in CometBFT's shape: one signature per validator of its height, in the
/// set's order.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct Commit {
    pub height: Int,
    pub round: u32,
    pub block_id: BlockId,
    pub signatures: Vec<CommitSig>,
}

#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize, JsonSchema)]
pub struct Data {
    pub txs: Vec<Base64>,
}

/// A block's evidence. `evidence` holds what maps onto CometBFT's `DuplicateVoteEvidence`;
/// `weft` holds every item in Weft's own form (duplicate votes and duplicate proposals).
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize, JsonSchema)]
pub struct EvidenceList {
    pub evidence: Vec<serde_json::Value>,
    #[serde(default)]
    pub weft: Vec<WeftEvidence>,
}

/// Equivocation evidence in Weft's form.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct WeftEvidence {
    /// `duplicate_vote` or `duplicate_proposal`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The equivocator's CometBFT address and public key.
    pub validator_address: HexBytes,
    pub validator_pub_key: HexBytes,
    pub height: Int,
    pub round: u32,
    /// `prevote` or `precommit` for a duplicate vote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vote_type: Option<String>,
    /// The two values it signed (`""` for a nil vote).
    pub first_value: Hash,
    pub second_value: Hash,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct Block {
    pub header: Header,
    pub data: Data,
    pub evidence: EvidenceList,
    /// The previous height's commit; `null` at the initial height.
    pub last_commit: Option<Commit>,
}

/// `block` and `block_by_hash`; `block_by_hash` answers `block: null` for an unknown hash, as
/// CometBFT does.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct BlockResult {
    pub block_id: BlockId,
    pub block: Option<Block>,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct HeaderResult {
    pub header: Option<Header>,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct SignedHeader {
    pub header: Header,
    pub commit: Commit,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct CommitResult {
    pub signed_header: SignedHeader,
    /// True: the commit is the certificate stored for the height (Weft has no other kind).
    pub canonical: bool,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct BlockMeta {
    pub block_id: BlockId,
    pub block_size: Int,
    pub header: Header,
    pub num_txs: Int,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct BlockchainResult {
    pub last_height: Int,
    /// Newest first, at most [`super::BLOCKCHAIN_METAS_MAX`].
    pub block_metas: Vec<BlockMeta>,
}

// --- Results of txs ---

/// An event attribute, CometBFT v0.38 style: plain strings.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct EventAttribute {
    pub key: String,
    pub value: String,
    pub index: bool,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: String,
    pub attributes: Vec<EventAttribute>,
}

/// A committed tx's result (CometBFT's `ExecTxResult`). `log` is the execution code's name;
/// Weft has no gas: both gas fields are 0.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize, JsonSchema)]
pub struct ExecTxResult {
    pub code: u32,
    pub data: Base64,
    pub log: String,
    pub info: String,
    pub gas_wanted: Int,
    pub gas_used: Int,
    pub events: Vec<Event>,
    pub codespace: String,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct ValidatorUpdate {
    pub pub_key: PubKey,
    pub power: Int,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct BlockResultsResult {
    pub height: Int,
    pub txs_results: Vec<ExecTxResult>,
    pub finalize_block_events: Vec<Event>,
    pub validator_updates: Vec<ValidatorUpdate>,
    pub consensus_param_updates: Option<serde_json::Value>,
    /// The state root after the block, base64 (CometBFT's `app_hash` here is bytes).
    pub app_hash: Base64,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct TxResult {
    pub hash: Hash,
    pub height: Int,
    pub index: u32,
    pub tx_result: ExecTxResult,
    pub tx: Base64,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct TxSearchResult {
    pub txs: Vec<TxResult>,
    pub total_count: Int,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct BlockSearchResult {
    pub blocks: Vec<BlockResult>,
    pub total_count: Int,
}

// --- The mempool ---

/// `check_tx`'s result, and `broadcast_tx_commit`'s `check_tx` (CometBFT's `ResponseCheckTx`,
/// whose fields, as Weft fills them, are `ExecTxResult`'s: the mempool's code and message).
pub type CheckTxResult = ExecTxResult;

/// `broadcast_tx_async` and `broadcast_tx_sync`. `hash` is Weft's tx hash (blake3 of the tx's
/// bytes, also for bytes that are not a tx).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct BroadcastResult {
    pub code: u32,
    /// Upper-case hex (CometBFT's `HexBytes` here); always empty.
    pub data: HexBytes,
    pub log: String,
    pub codespace: String,
    pub hash: Hash,
}

/// `broadcast_tx_commit`: `tx_result` is empty and `height` 0 when the check refused the tx.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct BroadcastCommitResult {
    pub check_tx: CheckTxResult,
    pub tx_result: ExecTxResult,
    pub hash: Hash,
    pub height: Int,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct UnconfirmedTxsResult {
    pub n_txs: Int,
    pub total: Int,
    pub total_bytes: Int,
    /// `null` for `num_unconfirmed_txs`.
    pub txs: Option<Vec<Base64>>,
}

// --- The node ---

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct ProtocolVersion {
    pub p2p: Int,
    pub block: Int,
    pub app: Int,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct NodeInfoOther {
    pub tx_index: String,
    pub rpc_address: String,
}

/// Who a node is. `id` is CometBFT's node id (hex of the first 20 bytes of the SHA-256 of the
/// node's ed25519 key); `peer_id` is the same key as a libp2p peer id, which Weft's own peers
/// dial. `listen_addr` is `tcp://ip:port` where the p2p address has that form; `listen_multiaddr`
/// is the address as libp2p writes it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct NodeInfo {
    pub protocol_version: ProtocolVersion,
    pub id: String,
    pub listen_addr: String,
    pub network: String,
    pub version: String,
    pub channels: String,
    pub moniker: String,
    pub other: NodeInfoOther,
    #[serde(default)]
    pub peer_id: String,
    #[serde(default)]
    pub listen_multiaddr: String,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct SyncInfo {
    pub latest_block_hash: Hash,
    pub latest_app_hash: HexBytes,
    pub latest_block_height: Int,
    pub latest_block_time: Time,
    pub earliest_block_hash: Hash,
    pub earliest_app_hash: HexBytes,
    pub earliest_block_height: Int,
    pub earliest_block_time: Time,
    pub catching_up: bool,
}

/// A validator as CometBFT lists one.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct ValidatorInfo {
    pub address: HexBytes,
    pub pub_key: PubKey,
    pub voting_power: Int,
    #[serde(default)]
    pub proposer_priority: SignedInt,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct StatusResult {
    pub node_info: NodeInfo,
    pub sync_info: SyncInfo,
    /// The node's validator key (its node key where it has none), with its power now (0 when
    /// it is not in the set).
    pub validator_info: ValidatorInfo,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct ValidatorsResult {
    pub block_height: Int,
    pub validators: Vec<ValidatorInfo>,
    pub count: Int,
    pub total: Int,
}

/// CometBFT's flow-rate monitor, which Weft does not keep: present for shape, zero.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct Monitor {
    pub active: bool,
    pub start: Time,
    pub duration: Int,
    pub idle: Int,
    pub bytes: Int,
    pub samples: Int,
    pub inst_rate: Int,
    pub cur_rate: Int,
    pub avg_rate: Int,
    pub peak_rate: Int,
    pub bytes_rem: Int,
    pub time_rem: Int,
    pub progress: u32,
}

#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ConnectionStatus {
    pub duration: Int,
    pub send_monitor: Monitor,
    pub recv_monitor: Monitor,
    pub channels: Vec<serde_json::Value>,
}

/// A connected peer: what gossip knows of it (`height`, `round` it advertised).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct PeerInfo {
    pub node_info: NodeInfo,
    pub is_outbound: bool,
    pub connection_status: ConnectionStatus,
    pub remote_ip: String,
    #[serde(default)]
    pub height: Int,
    #[serde(default)]
    pub round: u32,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct NetInfoResult {
    pub listening: bool,
    pub listeners: Vec<String>,
    pub n_peers: Int,
    pub peers: Vec<PeerInfo>,
    /// Weft: the node is cut off from its peers by `unsafe_set_isolated`.
    #[serde(default)]
    pub isolated: bool,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct GenesisValidator {
    pub address: HexBytes,
    pub pub_key: PubKey,
    pub power: Int,
    pub name: String,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct BlockParams {
    pub max_bytes: Int,
    /// -1: Weft has no gas.
    pub max_gas: SignedInt,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct EvidenceParams {
    pub max_age_num_blocks: Int,
    /// Nanoseconds, as a decimal string.
    pub max_age_duration: Int,
    pub max_bytes: Int,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct ValidatorParams {
    pub pub_key_types: Vec<String>,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct VersionParams {
    pub app: Int,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct AbciParams {
    pub vote_extensions_enable_height: Int,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct ConsensusParams {
    pub block: BlockParams,
    pub evidence: EvidenceParams,
    pub validator: ValidatorParams,
    pub version: VersionParams,
    pub abci: AbciParams,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct ConsensusParamsResult {
    pub block_height: Int,
    pub consensus_params: ConsensusParams,
}

/// The genesis in CometBFT's shape. Weft's accounts, validator authority and consensus
/// timeouts are under `app_state` (`accounts`, `validator_authority`, `consensus`), as the
/// genesis file has them.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct GenesisDoc {
    pub genesis_time: Time,
    pub chain_id: String,
    pub initial_height: Int,
    pub consensus_params: ConsensusParams,
    pub validators: Vec<GenesisValidator>,
    pub app_hash: HexBytes,
    pub app_state: serde_json::Value,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct GenesisResult {
    pub genesis: GenesisDoc,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct GenesisChunkedResult {
    pub chunk: Int,
    pub total: Int,
    /// This chunk of `genesis`'s JSON, base64.
    pub data: Base64,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct AbciInfo {
    pub data: String,
    pub version: String,
    pub app_version: Int,
    pub last_block_height: Int,
    pub last_block_app_hash: Base64,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct AbciInfoResult {
    pub response: AbciInfo,
}

/// `abci_query`'s answer. `value` is JSON: `{"balance": "…", "nonce": "…"}` for `/account`,
/// `{"owner": "<hex>"}` for `/name`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct AbciQuery {
    pub code: u32,
    pub log: String,
    pub info: String,
    pub index: Int,
    pub key: Base64,
    pub value: Base64,
    pub proof_ops: Option<serde_json::Value>,
    pub height: Int,
    pub codespace: String,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct AbciQueryResult {
    pub response: AbciQuery,
}

/// The proposer of the round being decided.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct RoundProposer {
    pub address: HexBytes,
    pub index: i32,
}

/// `consensus_state`'s round state, as CometBFT's summary: `height/round/step` is
/// `"H/R/S"`. Weft's consensus reports height, round and whether it is catching up; the step is
/// 1 (new height) while catching up and 3 (propose) otherwise.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct RoundStateSummary {
    #[serde(rename = "height/round/step")]
    pub height_round_step: String,
    pub start_time: Time,
    pub proposal_block_hash: Hash,
    pub locked_block_hash: Hash,
    pub valid_block_hash: Hash,
    pub height_vote_set: Vec<serde_json::Value>,
    pub proposer: RoundProposer,
    /// Weft: the parts of `height/round/step`, and the catching-up flag.
    #[serde(default)]
    pub height: Int,
    #[serde(default)]
    pub round: u32,
    #[serde(default)]
    pub catching_up: bool,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct ConsensusStateResult {
    pub round_state: RoundStateSummary,
}

/// A peer in `dump_consensus_state`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct PeerRoundState {
    pub node_address: String,
    pub peer_state: PeerState,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct PeerState {
    pub round_state: PeerRound,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct PeerRound {
    pub height: Int,
    pub round: u32,
}

/// `dump_consensus_state`: the node's round state in full, as Weft keeps it, and each peer's
/// advertised height and round. The evidence is the equivocation evidence the node has seen
/// (committed or pending), newest last.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct DumpConsensusStateResult {
    pub round_state: DumpRoundState,
    pub peers: Vec<PeerRoundState>,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct DumpRoundState {
    pub height: Int,
    pub round: u32,
    pub step: u32,
    pub catching_up: bool,
    pub start_time: Time,
    pub commit_time: Time,
    pub validators: ValidatorsResult,
    pub proposer: RoundProposer,
    pub evidence: Vec<WeftEvidence>,
}

// --- Weft's own ---

/// `account`: an account's balance and the next nonce it must use.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct AccountResult {
    /// The owner's ed25519 public key, lower-case hex (Weft's address).
    pub address: String,
    pub balance: Int,
    pub nonce: Int,
}

/// `unsafe_set_isolated`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct IsolatedResult {
    pub isolated: bool,
    pub peers: Int,
}

/// `health`: `{}`.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize, JsonSchema)]
pub struct Empty {}

// --- Events (WebSocket) ---

/// One event as a subscriber receives it (CometBFT's `ResultEvent`): the query it matched,
/// `data: {type, value}`, and the event's attributes (`tm.event`, `tx.hash`, …).
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct EventEnvelope {
    pub query: String,
    pub data: EventData,
    pub events: BTreeMap<String, Vec<String>>,
}

#[derive(Clone, PartialEq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct EventData {
    /// `tendermint/event/NewBlock`, `…/NewBlockHeader`, `…/Tx`, `…/NewRound`, `…/Vote`.
    #[serde(rename = "type")]
    pub kind: String,
    pub value: serde_json::Value,
}

/// `FinalizeBlock`'s results in a `NewBlock` event.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct FinalizeBlockResult {
    pub events: Vec<Event>,
    pub tx_results: Vec<ExecTxResult>,
    pub validator_updates: Vec<ValidatorUpdate>,
    pub consensus_param_updates: Option<serde_json::Value>,
    pub app_hash: Base64,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct NewBlockEvent {
    pub block: Block,
    pub block_id: BlockId,
    pub result_finalize_block: FinalizeBlockResult,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct NewBlockHeaderEvent {
    pub header: Header,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct TxEventResult {
    pub height: Int,
    pub index: u32,
    pub tx: Base64,
    pub result: ExecTxResult,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct TxEvent {
    #[serde(rename = "TxResult")]
    pub tx_result: TxEventResult,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct NewRoundEvent {
    pub height: Int,
    pub round: u32,
    pub step: String,
    pub proposer: RoundProposer,
}

/// A vote this node signed.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct VoteEvent {
    #[serde(rename = "Vote")]
    pub vote: Vote,
}

/// A vote in CometBFT's shape: `type` 1 is a prevote, 2 a precommit; a nil vote has an empty
/// `block_id`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct Vote {
    #[serde(rename = "type")]
    pub kind: u8,
    pub height: Int,
    pub round: u32,
    pub block_id: BlockId,
    pub timestamp: Time,
    pub validator_address: HexBytes,
    pub validator_index: i32,
    pub signature: Base64,
}
