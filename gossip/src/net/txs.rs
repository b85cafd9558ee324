//! Transaction batches for gossipsub: a count, then each tx with its length.
//!
//! A batch is at most [`TX_BATCH_BYTES_MAX`] bytes and each tx at most
//! `weft_execution::TX_BYTES_MAX`; decoding checks both before allocating.

use weft_execution::codec::{DecodeError, Reader, bounded_capacity, check_cap, put_varint};
use weft_execution::tx::TX_BYTES_MAX;

/// Largest batch on the wire (gossipsub's max transmit size is set just above it).
pub const TX_BATCH_BYTES_MAX: usize = 256 * 1024;

/// Smallest batch entry: the length varint of an empty tx.
const TX_ENTRY_BYTES_MIN: usize = 1;

/// The node's verdict on one gossiped tx.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TxVerdict {
    /// Valid and new: deliver it and let gossipsub forward the batch.
    Accept,
    /// Not useful (known already, nonce passed, mempool full): drop it, no fault.
    Ignore,
    /// Invalid (bad signature, malformed, wrong chain): drop it and count it against the peer.
    Reject,
}

/// Encodes txs as one batch. The caller keeps batches under [`TX_BATCH_BYTES_MAX`].
pub fn encode_batch(txs: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + txs.iter().map(|t| t.len() + 2).sum::<usize>());
    put_varint(&mut out, txs.len() as u32);
    for tx in txs {
        put_varint(&mut out, tx.len() as u32);
        out.extend_from_slice(tx);
    }
    out
}

/// Bytes `tx` adds to a batch.
pub fn batch_cost(tx: &[u8]) -> usize {
    tx.len() + 2
}

pub fn decode_batch(bytes: &[u8]) -> Result<Vec<Vec<u8>>, DecodeError> {
    check_cap(bytes, TX_BATCH_BYTES_MAX)?;
    let mut reader = Reader::new(bytes);
    let count = reader.varint_max("txs in batch", TX_BATCH_BYTES_MAX as u32)?;
    // An entry can be one byte (an empty tx's zero length): reserving by any larger minimum
    // lets a batch of empty txs regrow the list past what its bytes can hold.
    let mut txs = Vec::with_capacity(bounded_capacity(count, &reader, TX_ENTRY_BYTES_MIN));
    for _ in 0..count {
        let len = reader.varint_max("tx bytes", TX_BYTES_MAX as u32)?;
        txs.push(reader.take(len as usize, "tx")?.to_vec());
    }
    reader.finish()?;
    Ok(txs)
}
