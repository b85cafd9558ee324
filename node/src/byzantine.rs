//! The test-only byzantine switch's lies: a proposer that ships a block whose DAG or access sets
//! do not match its txs. The header's roots are recomputed over the lie, so the block decodes
//! and hashes like an honest one; only validation (re-deriving the DAG, executing against the
//! declared sets) can catch it.

use weft_execution::{AccessMode, AccessSets, ConflictDag};

use crate::block::{Block, Body, SealedBlock};
use crate::engine::Byzantine;

/// `block` with the lie `kind` told in it. A block too small to lie in is returned as it is.
pub fn lie(block: SealedBlock, kind: Byzantine) -> SealedBlock {
    let honest = (*block.block).clone();
    let n = honest.txs.len();
    let mut preds = honest.dag.pred_lists();
    let mut access = honest.access.clone();
    match kind {
        // An edge the access sets do not justify: the first pair without one.
        Byzantine::ExtraEdge => {
            let missing = (1..n).rev().find_map(|j| {
                (0..j as u32)
                    .find(|i| !preds[j].contains(i))
                    .map(|i| (i, j))
            });
            let Some((i, j)) = missing else { return block };
            let at = preds[j].partition_point(|p| *p < i);
            preds[j].insert(at, i);
        }
        Byzantine::MissingEdge => match preds.iter_mut().find(|p| !p.is_empty()) {
            Some(list) => {
                list.pop();
            }
            None => return block,
        },
        Byzantine::UnderDeclared if n >= 1 => {
            // Drop tx 0's first declared write (a failed tx has none; then its first read):
            // execution touches the key anyway.
            let per_tx: Vec<Vec<_>> = (0..n)
                .map(|i| {
                    let mut keys = access.tx_keys(i);
                    if i == 0 && !keys.is_empty() {
                        let pos = keys
                            .iter()
                            .position(|(_, m)| *m == AccessMode::Write)
                            .unwrap_or(0);
                        keys.remove(pos);
                    }
                    keys
                })
                .collect();
            access = AccessSets::from_per_tx(&per_tx);
            preds = ConflictDag::derive(&access).pred_lists();
        }
        _ => return block,
    }
    let Block {
        header,
        txs,
        last_commit,
        evidence,
        ..
    } = honest;
    SealedBlock::new(Block::seal(
        header,
        Body {
            txs,
            access,
            dag: ConflictDag::from_pred_lists_unchecked(&preds),
            last_commit,
            evidence,
        },
    ))
}

#[cfg(test)]
mod tests {
    use weft_consensus::ValidatorId;
    use weft_execution::{Address, ChainId, Payload, Transaction};
    use weft_genesis::{ConsensusParams, Genesis, SecretKey};

    use super::*;
    use crate::chain::Chain;

    #[test]
    fn every_lie_is_caught_by_validation() {
        let dir = tempfile::tempdir().unwrap();
        let validator = SecretKey([1; 32]);
        let senders: Vec<SecretKey> = (2..6).map(|i| SecretKey([i; 32])).collect();
        let genesis = Genesis::new(
            "weft-lies",
            1_000,
            vec![("v".into(), validator.public(), 10)],
            senders.iter().map(|k| (k.public(), 1_000_000)).collect(),
            ConsensusParams::fast(),
        )
        .unwrap();
        let chain = Chain::open(dir.path(), genesis, 2).unwrap();
        let chain_id = ChainId::new("weft-lies").unwrap();
        let proposer = ValidatorId(validator.public());
        for count in [1usize, 2, 4] {
            let txs: Vec<Transaction> = (0..count)
                .map(|i| {
                    Transaction::sign(
                        chain_id.clone(),
                        &senders[i % 2].signing_key(),
                        (i / 2) as u64,
                        Payload::Transfer {
                            to: Address(senders[2 + i % 2].public()),
                            amount: 1,
                        },
                    )
                })
                .collect();
            let honest = chain.build(proposer, txs, None, Vec::new(), 2_000).unwrap();
            for kind in [
                Byzantine::ExtraEdge,
                Byzantine::MissingEdge,
                Byzantine::UnderDeclared,
            ] {
                let lying = lie(honest.clone(), kind);
                if lying.hash == honest.hash {
                    // Only these blocks leave nothing to lie about.
                    let nothing = match kind {
                        Byzantine::ExtraEdge => count < 2,
                        Byzantine::MissingEdge => honest.block.dag.edge_count() == 0,
                        _ => false,
                    };
                    assert!(nothing, "{kind:?} over {count} txs told no lie");
                    continue;
                }
                let verdict = chain.validate(&lying, Some(proposer), 2_000, &|_| false);
                assert!(verdict.is_err(), "{kind:?} over {count} txs was accepted");
            }
        }
    }
}
