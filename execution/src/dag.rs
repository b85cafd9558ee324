//! The canonical conflict DAG: derivation from access sets, compact encoding, structural checks,
//! and the exact comparison a validator runs against a proposer's DAG.
//!
//! Derivation (DESIGN §4) makes one pass over the block in order, keeping for each key its last
//! writer and the readers since that write:
//! - tx `j` reads `k`: edge `last_writer(k) → j`; `j` joins `readers(k)`;
//! - tx `j` writes `k`: an edge from every reader of `k` to `j`, or from `last_writer(k)` when
//!   there are none; then `j` becomes the last writer and the readers are cleared.
//!
//! Each tx's predecessors are deduplicated and sorted, so the DAG is canonical and "re-derive and
//! compare" is an exact equality. Every edge goes from a lower index to a higher one.
//!
//! Encoding: `tx_count varint`, then per tx `pred_count varint` and its predecessors ascending,
//! the first as an absolute index and each later one as `gap - 1` from the previous. Out-of-range
//! and backward predecessors stay expressible, so the structural check, not the format, rejects
//! them, each with its own error.

use thiserror::Error;

use crate::access::{AccessMode, AccessSets, BLOCK_TXS_MAX};
use crate::codec::{DecodeError, Reader, bounded_capacity, check_cap, put_varint};

/// Largest encoded DAG.
pub const DAG_BYTES_MAX: usize = 8 << 20;

const NO_WRITER: u32 = u32::MAX;

/// What is structurally wrong with a shipped DAG, or how it differs from the derived one.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DagError {
    #[error("DAG encoding is malformed: {0}")]
    Malformed(#[from] DecodeError),
    #[error("DAG covers {dag} txs but the block has {block}")]
    TxCountMismatch { dag: usize, block: usize },
    #[error("tx {tx} names predecessor {pred}, outside the block's {txs} txs")]
    IndexOutOfRange { tx: u32, pred: u32, txs: u32 },
    #[error("edge {from} -> {to} does not go forward in block order, so the DAG can cycle")]
    Cyclic { from: u32, to: u32 },
    #[error("predecessors of tx {tx} are not strictly ascending")]
    UnsortedPredecessors { tx: u32 },
    #[error("shipped DAG has edge {from} -> {to}, which the access sets do not imply")]
    ExtraEdge { from: u32, to: u32 },
    #[error("shipped DAG lacks edge {from} -> {to}, which the access sets imply")]
    MissingEdge { from: u32, to: u32 },
}

/// A conflict DAG in compressed sparse row form: the predecessors of tx `j` are
/// `preds[offsets[j]..offsets[j + 1]]`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ConflictDag {
    offsets: Vec<u32>,
    preds: Vec<u32>,
}

/// The shape of a DAG, with unit weight per tx: `work` is the tx count and `span` the number of
/// txs on the longest path, so `work / span` bounds the available parallelism.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct DagStats {
    pub txs: u32,
    pub edges: u32,
    pub critical_path: u32,
}

impl DagStats {
    pub fn work(&self) -> u32 {
        self.txs
    }

    pub fn span(&self) -> u32 {
        self.critical_path
    }

    /// work / span, for display; 0 for an empty block.
    pub fn parallelism(&self) -> f64 {
        if self.critical_path == 0 {
            0.0
        } else {
            f64::from(self.txs) / f64::from(self.critical_path)
        }
    }
}

impl ConflictDag {
    /// Derives the canonical DAG of a block from its access sets. O(total accesses + edges).
    pub fn derive(access: &AccessSets) -> Self {
        let key_count = access.keys().len();
        let mut last_writer = vec![NO_WRITER; key_count];
        let mut readers: Vec<Vec<u32>> = vec![Vec::new(); key_count];
        let mut offsets = Vec::with_capacity(access.tx_count() + 1);
        let mut preds = Vec::with_capacity(access.access_count());
        let mut scratch: Vec<u32> = Vec::new();
        offsets.push(0);
        for tx in 0..access.tx_count() {
            let tx_index = tx as u32;
            scratch.clear();
            for item in access.tx(tx) {
                let key = item.key as usize;
                let writer = last_writer[key];
                match item.mode {
                    AccessMode::Read => {
                        if writer != NO_WRITER {
                            scratch.push(writer);
                        }
                        readers[key].push(tx_index);
                    }
                    AccessMode::Write => {
                        if readers[key].is_empty() {
                            if writer != NO_WRITER {
                                scratch.push(writer);
                            }
                        } else {
                            scratch.append(&mut readers[key]);
                        }
                        last_writer[key] = tx_index;
                    }
                }
            }
            scratch.sort_unstable();
            scratch.dedup();
            preds.extend_from_slice(&scratch);
            offsets.push(preds.len() as u32);
        }
        ConflictDag { offsets, preds }
    }

    /// Builds a DAG from raw predecessor lists without checking them. For tests and tools that
    /// need to construct a lying DAG; validators only accept DAGs through [`ConflictDag::decode`].
    pub fn from_pred_lists_unchecked(lists: &[Vec<u32>]) -> Self {
        let mut offsets = Vec::with_capacity(lists.len() + 1);
        let mut preds = Vec::new();
        offsets.push(0);
        for list in lists {
            preds.extend_from_slice(list);
            offsets.push(preds.len() as u32);
        }
        ConflictDag { offsets, preds }
    }

    pub fn tx_count(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    pub fn edge_count(&self) -> usize {
        self.preds.len()
    }

    /// The predecessors of tx `index`, ascending.
    pub fn preds(&self, index: usize) -> &[u32] {
        &self.preds[self.offsets[index] as usize..self.offsets[index + 1] as usize]
    }

    /// The predecessor lists, for building lies in tests.
    pub fn pred_lists(&self) -> Vec<Vec<u32>> {
        (0..self.tx_count())
            .map(|tx| self.preds(tx).to_vec())
            .collect()
    }

    /// Structural checks: every predecessor in range, strictly before its tx, and each list
    /// strictly ascending. A DAG that passes is acyclic.
    pub fn validate(&self) -> Result<(), DagError> {
        let txs = self.tx_count() as u32;
        for tx in 0..self.tx_count() {
            let tx_index = tx as u32;
            let preds = self.preds(tx);
            for (position, &pred) in preds.iter().enumerate() {
                if pred >= txs {
                    return Err(DagError::IndexOutOfRange {
                        tx: tx_index,
                        pred,
                        txs,
                    });
                }
                if pred >= tx_index {
                    return Err(DagError::Cyclic {
                        from: pred,
                        to: tx_index,
                    });
                }
                if position > 0 && preds[position - 1] >= pred {
                    return Err(DagError::UnsortedPredecessors { tx: tx_index });
                }
            }
        }
        Ok(())
    }

    /// The longest path, in txs, and the edge count. Assumes a validated DAG.
    pub fn stats(&self) -> DagStats {
        let mut depth = vec![0u32; self.tx_count()];
        let mut critical_path = 0;
        for tx in 0..self.tx_count() {
            let longest_pred = self
                .preds(tx)
                .iter()
                .map(|&pred| depth[pred as usize])
                .max()
                .unwrap_or(0);
            depth[tx] = longest_pred + 1;
            critical_path = critical_path.max(depth[tx]);
        }
        DagStats {
            txs: self.tx_count() as u32,
            edges: self.edge_count() as u32,
            critical_path,
        }
    }

    /// Successor lists in CSR form, for the parallel executor: (offsets, successors).
    pub fn successors(&self) -> (Vec<u32>, Vec<u32>) {
        let txs = self.tx_count();
        let mut offsets = vec![0u32; txs + 1];
        for &pred in &self.preds {
            offsets[pred as usize + 1] += 1;
        }
        for tx in 0..txs {
            offsets[tx + 1] += offsets[tx];
        }
        let mut cursor = offsets.clone();
        let mut successors = vec![0u32; self.preds.len()];
        for tx in 0..txs {
            for &pred in self.preds(tx) {
                let slot = &mut cursor[pred as usize];
                successors[*slot as usize] = tx as u32;
                *slot += 1;
            }
        }
        (offsets, successors)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.tx_count() + self.preds.len() * 2 + 8);
        put_varint(&mut out, self.tx_count() as u32);
        for tx in 0..self.tx_count() {
            let preds = self.preds(tx);
            put_varint(&mut out, preds.len() as u32);
            let mut previous: Option<u32> = None;
            for &pred in preds {
                let word = match previous {
                    None => pred,
                    // Unchecked DAGs may be unsorted; wrapping keeps encoding total, and decode
                    // of such bytes fails the structural check.
                    Some(previous) => pred.wrapping_sub(previous).wrapping_sub(1),
                };
                put_varint(&mut out, word);
                previous = Some(pred);
            }
        }
        out
    }

    /// Decodes a shipped DAG and runs the structural checks. `tx_count` is the block's.
    pub fn decode(bytes: &[u8], tx_count: usize) -> Result<Self, DagError> {
        check_cap(bytes, DAG_BYTES_MAX)?;
        let mut reader = Reader::new(bytes);
        let declared = reader.varint_max("DAG tx count", BLOCK_TXS_MAX as u32)? as usize;
        if declared != tx_count {
            return Err(DagError::TxCountMismatch {
                dag: declared,
                block: tx_count,
            });
        }
        let mut offsets = Vec::with_capacity(bounded_capacity(declared as u32, &reader, 1) + 1);
        let mut preds = Vec::new();
        offsets.push(0);
        for tx in 0..declared as u32 {
            let count = reader.varint("DAG predecessor count")?;
            for position in 0..count {
                let word = reader.varint("DAG predecessor")?;
                let pred = if position == 0 {
                    word
                } else {
                    let previous: u32 = *preds.last().expect("position > 0");
                    previous
                        .checked_add(word)
                        .and_then(|p| p.checked_add(1))
                        .ok_or(DagError::IndexOutOfRange {
                            tx,
                            pred: u32::MAX,
                            txs: declared as u32,
                        })?
                };
                preds.push(pred);
            }
            offsets.push(preds.len() as u32);
        }
        reader.finish()?;
        let dag = ConflictDag { offsets, preds };
        dag.validate()?;
        Ok(dag)
    }

    /// Compares a shipped DAG with the derived one and names the first difference, scanning txs
    /// in order: an edge only the shipped DAG has is an [`DagError::ExtraEdge`], one only the
    /// derived DAG has a [`DagError::MissingEdge`].
    pub fn compare(shipped: &ConflictDag, derived: &ConflictDag) -> Result<(), DagError> {
        if shipped.tx_count() != derived.tx_count() {
            return Err(DagError::TxCountMismatch {
                dag: shipped.tx_count(),
                block: derived.tx_count(),
            });
        }
        if shipped == derived {
            return Ok(());
        }
        for tx in 0..shipped.tx_count() {
            let (have, want) = (shipped.preds(tx), derived.preds(tx));
            if have == want {
                continue;
            }
            let to = tx as u32;
            let (mut i, mut j) = (0, 0);
            loop {
                match (have.get(i), want.get(j)) {
                    (Some(a), Some(b)) if a == b => (i, j) = (i + 1, j + 1),
                    (Some(&a), Some(&b)) if a < b => {
                        return Err(DagError::ExtraEdge { from: a, to });
                    }
                    (Some(_), Some(&b)) => return Err(DagError::MissingEdge { from: b, to }),
                    (Some(&a), None) => return Err(DagError::ExtraEdge { from: a, to }),
                    (None, Some(&b)) => return Err(DagError::MissingEdge { from: b, to }),
                    (None, None) => unreachable!("lists differ, so one side has an element"),
                }
            }
        }
        unreachable!("DAGs differ, so some tx's predecessors differ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StateKey;

    fn slot(id: u64) -> StateKey {
        StateKey::WorkSlot(id)
    }

    fn dag_of(per_tx: &[Vec<(StateKey, AccessMode)>]) -> Vec<Vec<u32>> {
        ConflictDag::derive(&AccessSets::from_per_tx(per_tx)).pred_lists()
    }

    #[test]
    fn readers_since_the_last_write_precede_the_next_writer() {
        use AccessMode::{Read, Write};
        let preds = dag_of(&[
            vec![(slot(1), Write)],
            vec![(slot(1), Read)],
            vec![(slot(1), Read)],
            vec![(slot(1), Write)],
            vec![(slot(1), Write)],
            vec![(slot(2), Read)],
        ]);
        assert_eq!(
            preds,
            vec![vec![], vec![0], vec![0], vec![1, 2], vec![3], vec![]]
        );
    }

    #[test]
    fn encoding_round_trips() {
        let dag = ConflictDag::from_pred_lists_unchecked(&[vec![], vec![0], vec![0, 1], vec![1]]);
        let bytes = dag.encode();
        assert_eq!(ConflictDag::decode(&bytes, 4).unwrap(), dag);
        assert_eq!(ConflictDag::decode(&bytes, 4).unwrap().encode(), bytes);
    }
}
