//! The JSON shapes of headers, certificates, evidence, blocks, tx results and events.

use super::*;

pub(super) fn header_json(header: &Header) -> Value {
    json!({
        "chain_id": header.chain_id.as_str(),
        "height": header.height.0,
        "time_ms": header.time_ms,
        "prev_hash": hex::encode(header.prev_hash),
        "proposer": hex::encode(header.proposer.0),
        "tx_root": hex::encode(header.tx_root),
        "dag_root": hex::encode(header.dag_root),
        "state_root": hex::encode(header.state_root.0),
        "last_commit_hash": hex::encode(header.last_commit_hash),
        "validators_hash": hex::encode(header.validators_hash),
        "next_validators_hash": hex::encode(header.next_validators_hash),
        "evidence_hash": hex::encode(header.evidence_hash),
    })
}

pub(super) fn commit_json(certificate: &CommitCertificate) -> Value {
    let signatures: Vec<Value> = certificate
        .precommits
        .iter()
        .map(|vote| {
            json!({
                "validator": hex::encode(vote.message.validator.0),
                "signature": hex::encode(vote.signature.0),
            })
        })
        .collect();
    json!({
        "height": certificate.height.0,
        "round": certificate.round.0,
        "block_id": { "hash": hex::encode(certificate.value.0) },
        "signatures": signatures,
    })
}

pub(super) fn evidence_json(evidence: &Evidence) -> Value {
    let value = |v: Option<weft_consensus::ValueId>| v.map(|v| hex::encode(v.0));
    match evidence {
        Evidence::DuplicateVote { first, second } => json!({
            "type": "duplicate_vote",
            "validator": hex::encode(first.message.validator.0),
            "height": first.message.height.0,
            "round": first.message.round.0,
            "vote_type": match first.message.vote_type {
                VoteType::Prevote => "prevote",
                VoteType::Precommit => "precommit",
            },
            "first_value": value(first.message.value),
            "second_value": value(second.message.value),
        }),
        Evidence::DuplicateProposal { first, second } => json!({
            "type": "duplicate_proposal",
            "validator": hex::encode(first.message.proposer.0),
            "height": first.message.height.0,
            "round": first.message.round.0,
            "first_value": hex::encode(first.message.value.0),
            "second_value": hex::encode(second.message.value.0),
        }),
    }
}

/// `block`'s result; `last_commit` is null at the initial height.
pub(super) fn block_json(sealed: &SealedBlock) -> Value {
    let block = &sealed.block;
    let txs: Vec<String> = block
        .txs
        .iter()
        .map(|tx| hex::encode(tx.encode()))
        .collect();
    let evidence: Vec<Value> = block.evidence.iter().map(evidence_json).collect();
    json!({
        "block_id": { "hash": hex::encode(sealed.hash.0) },
        "block": {
            "header": header_json(&block.header),
            "data": { "txs": txs },
            "num_txs": block.txs.len(),
            "evidence": evidence,
            "last_commit": block.last_commit.as_ref().map(commit_json),
        },
    })
}

pub(super) fn tx_result_json(code: u8) -> Value {
    json!({ "code": code, "log": code_name(code) })
}

/// The notifications one event makes for a subscription.
pub(super) fn event_notifications(event: &NodeEvent, query: Query) -> Vec<Value> {
    let NodeEvent::NewBlock {
        height,
        hash,
        time_ms,
        txs,
    } = event;
    match query {
        Query::NewBlock => {
            let txs: Vec<Value> = txs
                .iter()
                .map(|(hash, code)| json!({ "hash": hex::encode(hash.0), "code": code }))
                .collect();
            vec![json!({
                "height": height.0,
                "hash": hex::encode(hash),
                "time_ms": time_ms,
                "txs": txs,
            })]
        }
        Query::Tx => txs
            .iter()
            .enumerate()
            .map(|(index, (hash, code))| {
                json!({
                    "hash": hex::encode(hash.0),
                    "height": height.0,
                    "index": index,
                    "code": code,
                    "log": code_name(*code),
                })
            })
            .collect(),
    }
}
