//! The test-only byzantine switch's lies: a proposer that ships a block whose DAG or access sets
//! do not match its txs. The header's roots are recomputed over the lie, so the block decodes
//! and hashes like an honest one; only validation (re-deriving the DAG, executing against the
//! declared sets) can catch it.

use weft_execution::{AccessMode, AccessSets, ConflictDag};

use crate::block::{Block, Body, SealedBlock};
use crate::driver::Byzantine;

/// `block` with the lie `kind` told in it. A block too small to lie in is returned as it is.
pub fn lie(block: SealedBlock, kind: Byzantine) -> SealedBlock {
    let honest = (*block.block).clone();
    let n = honest.txs.len();
    let mut preds = honest.dag.pred_lists();
    let mut access = honest.access.clone();
    match kind {
        // An edge the access sets do not justify (unless it is already there).
        Byzantine::ExtraEdge if n >= 2 && !preds[n - 1].contains(&0) => {
            preds[n - 1].insert(0, 0);
        }
        Byzantine::MissingEdge => match preds.iter_mut().find(|p| !p.is_empty()) {
            Some(list) => {
                list.pop();
            }
            None => return block,
        },
        Byzantine::UnderDeclared if n >= 1 => {
            // Drop a tx's declared write (its nonce bump): execution touches it anyway.
            let per_tx: Vec<Vec<_>> = (0..n)
                .map(|i| {
                    let mut keys = access.tx_keys(i);
                    if i == 0
                        && let Some(pos) = keys.iter().position(|(_, m)| *m == AccessMode::Write)
                    {
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
