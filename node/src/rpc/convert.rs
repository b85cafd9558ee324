//! Weft's blocks, certificates, evidence, results and sets in CometBFT's shapes
//! ([`super::api::types`]).

use super::api::encoding::{self, Base64, Hash, HexBytes, Int, PubKey, SignedInt, Time};
use super::api::types::{self, *};
use super::*;

/// CometBFT's block protocol version, which its clients expect in headers.
pub(super) const BLOCK_PROTOCOL: u64 = 11;
/// Weft's app version, as CometBFT's `version.app`.
pub(super) const APP_VERSION: u64 = 1;
/// CometBFT's p2p protocol version, for `node_info`.
pub(super) const P2P_PROTOCOL: u64 = 8;

/// A validator's CometBFT address.
pub(super) fn address(id: &ValidatorId) -> HexBytes {
    encoding::address_of(&id.0)
}

/// The hash of a genesis's consensus parameters, as `consensus_hash`: blake3 of their
/// canonical JSON.
pub(super) fn consensus_hash(genesis: &weft_genesis::Genesis) -> [u8; 32] {
    let json = serde_json::to_vec(&genesis.consensus).unwrap_or_default();
    *blake3::hash(&json).as_bytes()
}

/// An all-zero hash is Weft's "none" (`last_commit_hash` at the initial height, the evidence
/// hash of a block without evidence): written as `""`.
fn maybe(hash: [u8; 32]) -> Hash {
    if hash == [0; 32] {
        Hash(None)
    } else {
        Hash::some(hash)
    }
}

pub(super) fn header(header: &WeftHeader, consensus_hash: [u8; 32]) -> types::Header {
    let last_block_id = if header.prev_hash == [0; 32] {
        BlockId::default()
    } else {
        BlockId::of(header.prev_hash)
    };
    types::Header {
        version: Version {
            block: Int(BLOCK_PROTOCOL),
            app: Int(APP_VERSION),
        },
        chain_id: header.chain_id.as_str().to_owned(),
        height: Int(header.height.0),
        time: Time::from_unix_ms(header.time_ms),
        last_block_id,
        last_commit_hash: maybe(header.last_commit_hash),
        data_hash: Hash::some(header.tx_root),
        validators_hash: Hash::some(header.validators_hash),
        next_validators_hash: Hash::some(header.next_validators_hash),
        consensus_hash: Hash::some(consensus_hash),
        app_hash: HexBytes(header.state_root.0.to_vec()),
        last_results_hash: Hash(None),
        evidence_hash: maybe(header.evidence_hash),
        proposer_address: address(&header.proposer),
        dag_root: Hash::some(header.dag_root),
        proposer_pub_key: HexBytes(header.proposer.0.to_vec()),
    }
}

/// A certificate as CometBFT's commit: one signature per member of `set` (the set of the
/// certificate's height), in the set's order; members that did not sign are absent. Weft's
/// votes carry no time, so each signature's `timestamp` is `time_ms`, the time of the block
/// the certificate decided.
pub(super) fn commit(certificate: &CommitCertificate, set: &ValidatorSet, time_ms: u64) -> Commit {
    let signed: std::collections::HashMap<ValidatorId, &[u8; 64]> = certificate
        .precommits
        .iter()
        .map(|vote| (vote.message.validator, &vote.signature.0))
        .collect();
    let signatures = set
        .validators()
        .iter()
        .map(|validator| match signed.get(&validator.id) {
            Some(signature) => CommitSig {
                block_id_flag: BLOCK_ID_FLAG_COMMIT,
                validator_address: address(&validator.id),
                timestamp: Time::from_unix_ms(time_ms),
                signature: Some(Base64(signature.to_vec())),
            },
            None => CommitSig {
                block_id_flag: BLOCK_ID_FLAG_ABSENT,
                validator_address: HexBytes::default(),
                timestamp: Time::ZERO,
                signature: None,
            },
        })
        .collect();
    Commit {
        height: Int(certificate.height.0),
        round: certificate.round.0,
        block_id: BlockId::of(certificate.value.0),
        signatures,
    }
}

pub(super) fn evidence(evidence: &Evidence) -> WeftEvidence {
    let value = |v: Option<weft_consensus::ValueId>| Hash(v.map(|v| v.0));
    match evidence {
        Evidence::DuplicateVote { first, second } => WeftEvidence {
            kind: "duplicate_vote".into(),
            validator_address: address(&first.message.validator),
            validator_pub_key: HexBytes(first.message.validator.0.to_vec()),
            height: Int(first.message.height.0),
            round: first.message.round.0,
            vote_type: Some(
                match first.message.vote_type {
                    VoteType::Prevote => "prevote",
                    VoteType::Precommit => "precommit",
                }
                .into(),
            ),
            first_value: value(first.message.value),
            second_value: value(second.message.value),
        },
        Evidence::DuplicateProposal { first, second } => WeftEvidence {
            kind: "duplicate_proposal".into(),
            validator_address: address(&first.message.proposer),
            validator_pub_key: HexBytes(first.message.proposer.0.to_vec()),
            height: Int(first.message.height.0),
            round: first.message.round.0,
            vote_type: None,
            first_value: Hash::some(first.message.value.0),
            second_value: Hash::some(second.message.value.0),
        },
    }
}

/// A block. `last_set` is the validator set of the previous height (whose certificate the
/// block carries); `None` at the initial height.
pub(super) fn block(
    sealed: &SealedBlock,
    last_set: Option<&ValidatorSet>,
    consensus_hash: [u8; 32],
) -> BlockResult {
    let body = &sealed.block;
    let last_commit = match (&body.last_commit, last_set) {
        (Some(certificate), Some(set)) => Some(commit(certificate, set, body.header.time_ms)),
        _ => None,
    };
    BlockResult {
        block_id: BlockId::of(sealed.hash.0),
        block: Some(types::Block {
            header: header(&body.header, consensus_hash),
            data: Data {
                txs: body.txs.iter().map(|tx| Base64(tx.encode())).collect(),
            },
            evidence: EvidenceList {
                // CometBFT's evidence types carry CometBFT's vote sign-bytes, which Weft's
                // votes are not: every item is under `weft`.
                evidence: Vec::new(),
                weft: body.evidence.iter().map(evidence).collect(),
            },
            last_commit,
        }),
    }
}

/// A committed tx's result: `log` is the code's name, and one `tx` event carries its hash,
/// height and sender so that searches and subscriptions can select it.
pub(super) fn exec_result(code: u8) -> ExecTxResult {
    ExecTxResult {
        code: u32::from(code),
        log: code_name(code).to_owned(),
        ..ExecTxResult::default()
    }
}

pub(super) fn validator_info(id: &ValidatorId, power: u64, priority: i64) -> types::ValidatorInfo {
    types::ValidatorInfo {
        address: address(id),
        pub_key: PubKey::ed25519(id.0),
        voting_power: Int(power),
        proposer_priority: SignedInt(priority),
    }
}

/// The genesis's consensus parameters as CometBFT's.
pub(super) fn consensus_params(genesis: &weft_genesis::Genesis) -> ConsensusParams {
    ConsensusParams {
        block: BlockParams {
            max_bytes: Int(genesis.consensus.block_max_bytes),
            max_gas: SignedInt(-1),
        },
        evidence: EvidenceParams {
            max_age_num_blocks: Int(crate::chain::EVIDENCE_AGE_MAX),
            // Weft bounds evidence by heights only: the duration is CometBFT's default, 48 h.
            max_age_duration: Int(48 * 3_600 * 1_000_000_000),
            max_bytes: Int(1_048_576),
        },
        validator: ValidatorParams {
            pub_key_types: vec!["ed25519".into()],
        },
        version: VersionParams {
            app: Int(APP_VERSION),
        },
        abci: AbciParams {
            vote_extensions_enable_height: Int(0),
        },
    }
}

/// A libp2p peer id's ed25519 key, where it embeds one (Weft's peers' ids all do).
pub(super) fn peer_key(peer: &libp2p::PeerId) -> Option<[u8; 32]> {
    let multihash = peer.as_ref();
    if multihash.code() != 0 {
        return None;
    }
    let key = libp2p::identity::PublicKey::try_decode_protobuf(multihash.digest()).ok()?;
    Some(key.try_into_ed25519().ok()?.to_bytes())
}

/// `tcp://ip:port` for a multiaddr of that form; the multiaddr itself otherwise.
pub(super) fn tcp_address(multiaddr: &str) -> String {
    use libp2p::multiaddr::Protocol;
    let Ok(addr) = multiaddr.parse::<libp2p::Multiaddr>() else {
        return multiaddr.to_owned();
    };
    let mut host = None;
    let mut port = None;
    for part in addr.iter() {
        match part {
            Protocol::Ip4(ip) => host = Some(ip.to_string()),
            Protocol::Ip6(ip) => host = Some(format!("[{ip}]")),
            Protocol::Dns(name) | Protocol::Dns4(name) | Protocol::Dns6(name) => {
                host = Some(name.to_string());
            }
            Protocol::Tcp(p) => port = Some(p),
            _ => {}
        }
    }
    match (host, port) {
        (Some(host), Some(port)) => format!("tcp://{host}:{port}"),
        _ => multiaddr.to_owned(),
    }
}
