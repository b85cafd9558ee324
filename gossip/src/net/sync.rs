//! Block sync over request-response: a peer asks for a range of heights and gets the blocks
//! with their commit certificates.
//!
//! Blocks travel as the node's opaque bytes; certificates in the consensus wire format. Both
//! directions are bounded before anything is allocated: a request is at most
//! [`SYNC_REQUEST_BYTES_MAX`] bytes and asks for at most [`SYNC_BLOCKS_MAX`] blocks; a response
//! is at most [`SYNC_RESPONSE_BYTES_MAX`] bytes. The requester checks the shape of a response
//! (contiguous heights from the one asked, certificates for those heights); verifying the
//! certificates' signatures and executing the blocks is the node's job.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use thiserror::Error;
use weft_consensus::{CommitCertificate, Height};
use weft_execution::codec::{DecodeError, Reader, bounded_capacity, put_u32, put_u64, put_varint};

use crate::wire::{Message, WireError};

pub const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new("/weft/sync/1");
/// Most blocks one request may ask for.
pub const SYNC_BLOCKS_MAX: u32 = 64;
/// Largest request on the wire.
pub const SYNC_REQUEST_BYTES_MAX: usize = 64;
/// Largest response on the wire; a server stops adding blocks before it.
pub const SYNC_RESPONSE_BYTES_MAX: usize = 16 << 20;

/// Asks for the blocks at heights `from`, `from + 1`, … (at most `count`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SyncRequest {
    pub from: Height,
    pub count: u32,
}

/// One decided block and the certificate that decided it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SyncBlock {
    pub height: Height,
    pub block: Vec<u8>,
    pub certificate: CommitCertificate,
}

#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct SyncResponse {
    pub blocks: Vec<SyncBlock>,
}

/// Why a block-sync or snapshot request failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SyncError {
    #[error("a request asks for 1 to {SYNC_BLOCKS_MAX} blocks, not {0}")]
    BadCount(u32),
    #[error("too many sync requests in flight")]
    Busy,
    #[error("request failed: {0}")]
    Failed(String),
    #[error("response does not answer the request: {0}")]
    BadResponse(&'static str),
    #[error("gossip has shut down")]
    Closed,
}

impl SyncRequest {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(12);
        put_u64(&mut out, self.from.0);
        put_u32(&mut out, self.count);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut reader = Reader::new(bytes);
        let request = SyncRequest {
            from: Height(reader.u64("from")?),
            count: reader.u32("count")?,
        };
        reader.finish()?;
        Ok(request)
    }

    pub fn check(&self) -> Result<(), SyncError> {
        if self.count == 0 || self.count > SYNC_BLOCKS_MAX {
            return Err(SyncError::BadCount(self.count));
        }
        Ok(())
    }
}

/// Bytes a block adds to a response, beside its own.
fn block_overhead(certificate: &[u8]) -> usize {
    8 + 5 + 5 + certificate.len()
}

impl SyncResponse {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, self.blocks.len() as u32);
        for block in &self.blocks {
            put_u64(&mut out, block.height.0);
            put_varint(&mut out, block.block.len() as u32);
            out.extend_from_slice(&block.block);
            let certificate = Message::Commit(block.certificate.clone()).encode();
            put_varint(&mut out, certificate.len() as u32);
            out.extend_from_slice(&certificate);
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        weft_execution::codec::check_cap(bytes, SYNC_RESPONSE_BYTES_MAX)?;
        let mut reader = Reader::new(bytes);
        let count = reader.varint_max("blocks", SYNC_BLOCKS_MAX)?;
        let mut blocks = Vec::with_capacity(bounded_capacity(count, &reader, 8 + 1 + 1));
        for _ in 0..count {
            let height = Height(reader.u64("height")?);
            let len = reader.varint_max("block bytes", SYNC_RESPONSE_BYTES_MAX as u32)?;
            let block = reader.take(len as usize, "block")?.to_vec();
            let len = reader.varint_max("certificate bytes", SYNC_RESPONSE_BYTES_MAX as u32)?;
            let certificate = match Message::decode(reader.take(len as usize, "certificate")?)? {
                Message::Commit(certificate) => certificate,
                _ => {
                    return Err(DecodeError::Invalid {
                        what: "certificate",
                        reason: "not a commit certificate",
                    }
                    .into());
                }
            };
            blocks.push(SyncBlock {
                height,
                block,
                certificate,
            });
        }
        reader.finish()?;
        Ok(SyncResponse { blocks })
    }

    /// Keeps the longest prefix that answers `request` within the byte cap: at most `count`
    /// blocks, contiguous from `from`. A server applies this to whatever its store returned.
    pub fn trimmed(mut self, request: SyncRequest) -> Self {
        let mut bytes = 5;
        let mut keep = 0;
        for (i, block) in self.blocks.iter().enumerate() {
            let certificate = Message::Commit(block.certificate.clone()).encode();
            bytes += block.block.len() + block_overhead(&certificate);
            if i as u32 >= request.count
                || block.height.0 != request.from.0 + i as u64
                || bytes > SYNC_RESPONSE_BYTES_MAX
            {
                break;
            }
            keep = i + 1;
        }
        self.blocks.truncate(keep);
        self
    }

    /// Whether this response answers `request`: contiguous heights from `from`, at most `count`
    /// of them, each with a certificate for its own height.
    pub fn check(&self, request: SyncRequest) -> Result<(), SyncError> {
        if self.blocks.len() as u64 > u64::from(request.count) {
            return Err(SyncError::BadResponse("more blocks than asked for"));
        }
        for (i, block) in self.blocks.iter().enumerate() {
            if block.height.0 != request.from.0 + i as u64 {
                return Err(SyncError::BadResponse(
                    "heights are not contiguous from the one asked",
                ));
            }
            if block.certificate.height != block.height {
                return Err(SyncError::BadResponse("certificate is for another height"));
            }
        }
        Ok(())
    }
}

/// The request-response codec: a whole request or response per stream, read up to its cap.
#[derive(Clone, Copy, Default, Debug)]
pub struct SyncCodec;

/// Reads a whole message to the end of its stream, refusing it past `cap` bytes (at most
/// `cap + 1` are ever held). The snapshot codec reads with it too.
pub(super) async fn read_capped<T: AsyncRead + Unpin + Send>(
    io: &mut T,
    cap: usize,
) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    io.take(cap as u64 + 1).read_to_end(&mut bytes).await?;
    if bytes.len() > cap {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("request-response message over the cap of {cap} bytes"),
        ));
    }
    Ok(bytes)
}

pub(super) fn invalid(error: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error.to_string())
}

impl libp2p::request_response::Codec for SyncCodec {
    type Protocol = StreamProtocol;
    type Request = SyncRequest;
    type Response = SyncResponse;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<SyncRequest>
    where
        T: AsyncRead + Unpin + Send,
    {
        let bytes = read_capped(io, SYNC_REQUEST_BYTES_MAX).await?;
        let request = SyncRequest::decode(&bytes).map_err(invalid)?;
        request.check().map_err(invalid)?;
        Ok(request)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<SyncResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        let bytes = read_capped(io, SYNC_RESPONSE_BYTES_MAX).await?;
        SyncResponse::decode(&bytes).map_err(invalid)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: SyncRequest,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&request.encode()).await?;
        io.close().await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: SyncResponse,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&response.encode()).await?;
        io.close().await
    }
}
