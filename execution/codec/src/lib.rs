//! The canonical binary codec shared by every Weft encoding.
//!
//! Everything that is hashed, signed or shipped between nodes is written with these primitives:
//! fixed-width little-endian integers, and LEB128 varints that must be minimal. A decoder built on
//! [`Reader`] rejects non-minimal varints and trailing bytes, so decode-then-encode gives back the
//! same bytes, and it never allocates from a length it has not checked against the bytes that
//! remain.

use thiserror::Error;

/// Why bytes from outside failed to decode. Every decoder in this crate returns one of these.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("input is {len} bytes, over the cap of {cap}")]
    TooLarge { len: usize, cap: usize },
    #[error("input ended early while reading {what}")]
    UnexpectedEnd { what: &'static str },
    #[error("{count} trailing bytes after the encoding")]
    TrailingBytes { count: usize },
    #[error("varint for {what} is not minimal or overflows")]
    NonCanonicalVarint { what: &'static str },
    #[error("{what} is {value}, over the limit of {limit}")]
    OverLimit {
        what: &'static str,
        value: u64,
        limit: u64,
    },
    #[error("unknown {what} tag {tag}")]
    UnknownTag { what: &'static str, tag: u8 },
    #[error("invalid {what}: {reason}")]
    Invalid {
        what: &'static str,
        reason: &'static str,
    },
}

/// A cursor over untrusted bytes.
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    /// Bytes not yet read. Decoders use it to bound an allocation before making it.
    pub fn remaining(&self) -> usize {
        self.bytes.len()
    }

    pub fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() < len {
            return Err(DecodeError::UnexpectedEnd { what });
        }
        let (head, tail) = self.bytes.split_at(len);
        self.bytes = tail;
        Ok(head)
    }

    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let bytes = self.take(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }

    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    pub fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A minimal LEB128 varint that fits in a `u32`.
    pub fn varint(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        const VARINT_BYTES_MAX: usize = 5;
        let mut value: u64 = 0;
        for index in 0..VARINT_BYTES_MAX {
            let byte = self.u8(what)?;
            value |= u64::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                // A final zero byte after the first means a longer-than-needed form.
                if byte == 0 && index > 0 {
                    return Err(DecodeError::NonCanonicalVarint { what });
                }
                return u32::try_from(value).map_err(|_| DecodeError::NonCanonicalVarint { what });
            }
        }
        Err(DecodeError::NonCanonicalVarint { what })
    }

    /// A varint that must not exceed `limit`.
    pub fn varint_max(&mut self, what: &'static str, limit: u32) -> Result<u32, DecodeError> {
        let value = self.varint(what)?;
        if value > limit {
            return Err(DecodeError::OverLimit {
                what,
                value: u64::from(value),
                limit: u64::from(limit),
            });
        }
        Ok(value)
    }

    /// Fails unless every byte was consumed.
    pub fn finish(self) -> Result<(), DecodeError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                count: self.bytes.len(),
            })
        }
    }
}

/// Checks the size cap before any decoding work is done.
pub fn check_cap(bytes: &[u8], cap: usize) -> Result<(), DecodeError> {
    if bytes.len() > cap {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            cap,
        });
    }
    Ok(())
}

/// Capacity to reserve for `count` items of at least `min_item_bytes` each, never more than the
/// remaining input could hold: an attacker's length field cannot make us allocate.
pub fn bounded_capacity(count: u32, reader: &Reader<'_>, min_item_bytes: usize) -> usize {
    let most = reader.remaining() / min_item_bytes.max(1);
    (count as usize).min(most)
}

pub fn put_varint(out: &mut Vec<u8>, mut value: u32) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

pub fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

pub fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint_bytes(value: u32) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, value);
        out
    }

    #[test]
    fn varint_round_trips_at_boundaries() {
        for value in [0, 1, 127, 128, 16_383, 16_384, u32::MAX - 1, u32::MAX] {
            let bytes = varint_bytes(value);
            let mut reader = Reader::new(&bytes);
            assert_eq!(reader.varint("v"), Ok(value));
            reader.finish().unwrap();
        }
    }

    #[test]
    fn varint_rejects_padding_and_overflow() {
        let cases: [&[u8]; 4] = [
            &[0x80, 0x00],                   // zero, padded
            &[0x81, 0x80, 0x00],             // one, padded
            &[0xff, 0xff, 0xff, 0xff, 0x1f], // 2^35 - 1 does not fit in u32
            &[0x80, 0x80, 0x80, 0x80, 0x80], // no terminating byte within 5
        ];
        for bytes in cases {
            let result = Reader::new(bytes).varint("v");
            assert_eq!(
                result,
                Err(DecodeError::NonCanonicalVarint { what: "v" }),
                "{bytes:?}"
            );
        }
    }
}
