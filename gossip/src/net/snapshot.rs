//! State-sync snapshots over request-response: a joining node asks a peer which snapshots it
//! keeps, then for a snapshot's manifest, its chunks, and the light block of its height.
//!
//! Gossip carries the manifest, chunks and light blocks as the node's opaque bytes and judges
//! none of them: whether a chunk matches its manifest, or a light block its certificate, is the
//! node's to check (it charges a liar with [`GossipHandle::charge`](super::GossipHandle::charge)
//! and [`Offence::BadSnapshot`](crate::score::Offence::BadSnapshot)). What gossip checks is the
//! shape: a response of the request's kind ([`SnapshotResponse::answers`]), within the caps.
//!
//! Both directions are bounded before anything is allocated: a request is at most
//! [`SNAPSHOT_REQUEST_BYTES_MAX`] bytes, a response at most [`SNAPSHOT_RESPONSE_BYTES_MAX`]
//! and a list at most [`SNAPSHOTS_LISTED_MAX`] snapshots. The encoding is canonical: a tag byte
//! per variant (0 list, 1 manifest, 2 chunk, 3 light block, in requests and responses alike),
//! fixed-width little-endian integers, an absent answer as flag 0 and a present one as flag 1
//! followed by its length (a minimal varint) and bytes; trailing bytes are refused.

use std::io;

use futures::{AsyncRead, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use weft_execution::codec::{
    DecodeError, Reader, bounded_capacity, check_cap, put_u32, put_u64, put_varint,
};

use super::sync::{invalid, read_capped};

pub const SNAPSHOT_PROTOCOL: StreamProtocol = StreamProtocol::new("/weft/snapshot/1");
/// Largest request on the wire.
pub const SNAPSHOT_REQUEST_BYTES_MAX: usize = 64;
/// Largest response on the wire (a manifest, a chunk or a light block, as opaque bytes).
pub const SNAPSHOT_RESPONSE_BYTES_MAX: usize = 8 << 20;
/// Most snapshots one list names.
pub const SNAPSHOTS_LISTED_MAX: usize = 16;

const TAG_LIST: u8 = 0;
const TAG_MANIFEST: u8 = 1;
const TAG_CHUNK: u8 = 2;
const TAG_LIGHT_BLOCK: u8 = 3;
/// The longest request: a tag, a height and a chunk index.
const REQUEST_BYTES_LONGEST: usize = 1 + 8 + 4;
/// One listed snapshot on the wire: height, chunk count, manifest hash.
const SNAPSHOT_INFO_BYTES: usize = 8 + 4 + 32;

const _: () = assert!(REQUEST_BYTES_LONGEST <= SNAPSHOT_REQUEST_BYTES_MAX);
// A full list fits in a response, and every length fits in the codec's u32 varints.
const _: () =
    assert!(1 + 1 + SNAPSHOTS_LISTED_MAX * SNAPSHOT_INFO_BYTES <= SNAPSHOT_RESPONSE_BYTES_MAX);
const _: () = assert!(SNAPSHOT_RESPONSE_BYTES_MAX <= u32::MAX as usize);
const _: () = assert!(SNAPSHOTS_LISTED_MAX <= u32::MAX as usize);

/// What a joining node asks a peer that keeps snapshots.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SnapshotRequest {
    /// Which snapshots the peer keeps.
    List,
    /// The manifest of the snapshot at `height`.
    Manifest { height: u64 },
    /// One chunk of the snapshot at `height`.
    Chunk { height: u64, index: u32 },
    /// The light block (header, commit certificate, validator sets) of `height`, for the
    /// joining node's verification.
    LightBlock { height: u64 },
}

/// One snapshot a peer keeps: its height, how many chunks it has, and its manifest's hash.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SnapshotInfo {
    pub height: u64,
    pub chunks: u32,
    pub manifest_hash: [u8; 32],
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub enum SnapshotResponse {
    List(Vec<SnapshotInfo>),
    /// `None`: the peer does not have it.
    Manifest(Option<Vec<u8>>),
    Chunk(Option<Vec<u8>>),
    LightBlock(Option<Vec<u8>>),
}

impl SnapshotRequest {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(REQUEST_BYTES_LONGEST);
        out.push(self.tag());
        match *self {
            SnapshotRequest::List => {}
            SnapshotRequest::Manifest { height } | SnapshotRequest::LightBlock { height } => {
                put_u64(&mut out, height);
            }
            SnapshotRequest::Chunk { height, index } => {
                put_u64(&mut out, height);
                put_u32(&mut out, index);
            }
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        check_cap(bytes, SNAPSHOT_REQUEST_BYTES_MAX)?;
        let mut reader = Reader::new(bytes);
        let request = match reader.u8("snapshot request kind")? {
            TAG_LIST => SnapshotRequest::List,
            TAG_MANIFEST => SnapshotRequest::Manifest {
                height: reader.u64("height")?,
            },
            TAG_CHUNK => SnapshotRequest::Chunk {
                height: reader.u64("height")?,
                index: reader.u32("chunk index")?,
            },
            TAG_LIGHT_BLOCK => SnapshotRequest::LightBlock {
                height: reader.u64("height")?,
            },
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "snapshot request kind",
                    tag,
                });
            }
        };
        reader.finish()?;
        Ok(request)
    }

    fn tag(&self) -> u8 {
        match self {
            SnapshotRequest::List => TAG_LIST,
            SnapshotRequest::Manifest { .. } => TAG_MANIFEST,
            SnapshotRequest::Chunk { .. } => TAG_CHUNK,
            SnapshotRequest::LightBlock { .. } => TAG_LIGHT_BLOCK,
        }
    }

    /// The metric label of the request's kind.
    pub fn kind(&self) -> &'static str {
        match self {
            SnapshotRequest::List => "list",
            SnapshotRequest::Manifest { .. } => "manifest",
            SnapshotRequest::Chunk { .. } => "chunk",
            SnapshotRequest::LightBlock { .. } => "light_block",
        }
    }
}

impl SnapshotResponse {
    /// Whether this is an answer of the kind `request` asks for (a list for a list, a manifest
    /// for a manifest, …). What the bytes hold is the node's to judge.
    pub fn answers(&self, request: &SnapshotRequest) -> bool {
        self.tag() == request.tag()
    }

    fn tag(&self) -> u8 {
        match self {
            SnapshotResponse::List(_) => TAG_LIST,
            SnapshotResponse::Manifest(_) => TAG_MANIFEST,
            SnapshotResponse::Chunk(_) => TAG_CHUNK,
            SnapshotResponse::LightBlock(_) => TAG_LIGHT_BLOCK,
        }
    }

    /// The answer to `request` that holds nothing: an empty list, or `None`. The default hook
    /// answers it, and a server sends it in place of an answer that does not [`fit`](Self::fits).
    pub fn empty(request: &SnapshotRequest) -> Self {
        match request {
            SnapshotRequest::List => SnapshotResponse::List(Vec::new()),
            SnapshotRequest::Manifest { .. } => SnapshotResponse::Manifest(None),
            SnapshotRequest::Chunk { .. } => SnapshotResponse::Chunk(None),
            SnapshotRequest::LightBlock { .. } => SnapshotResponse::LightBlock(None),
        }
    }

    /// Whether a requester would accept this response: at most [`SNAPSHOTS_LISTED_MAX`]
    /// snapshots listed and at most [`SNAPSHOT_RESPONSE_BYTES_MAX`] bytes encoded.
    pub fn fits(&self) -> bool {
        let listed = match self {
            SnapshotResponse::List(list) => list.len(),
            _ => 0,
        };
        listed <= SNAPSHOTS_LISTED_MAX && self.encoded_len() <= SNAPSHOT_RESPONSE_BYTES_MAX
    }

    /// The length of [`encode`](Self::encode)'s output, without encoding.
    pub fn encoded_len(&self) -> usize {
        match self {
            SnapshotResponse::List(list) => {
                1 + varint_len(list.len()) + list.len() * SNAPSHOT_INFO_BYTES
            }
            SnapshotResponse::Manifest(bytes)
            | SnapshotResponse::Chunk(bytes)
            | SnapshotResponse::LightBlock(bytes) => match bytes {
                None => 1 + 1,
                Some(bytes) => 1 + 1 + varint_len(bytes.len()) + bytes.len(),
            },
        }
    }

    /// Encodes the response. A response that does not [`fit`](Self::fits) encodes, but no
    /// requester accepts it; the server sends the [`empty`](Self::empty) answer instead.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.push(self.tag());
        match self {
            SnapshotResponse::List(list) => {
                put_varint(&mut out, list.len() as u32);
                for info in list {
                    put_u64(&mut out, info.height);
                    put_u32(&mut out, info.chunks);
                    out.extend_from_slice(&info.manifest_hash);
                }
            }
            SnapshotResponse::Manifest(bytes)
            | SnapshotResponse::Chunk(bytes)
            | SnapshotResponse::LightBlock(bytes) => match bytes {
                None => out.push(0),
                Some(bytes) => {
                    out.push(1);
                    put_varint(&mut out, bytes.len() as u32);
                    out.extend_from_slice(bytes);
                }
            },
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        check_cap(bytes, SNAPSHOT_RESPONSE_BYTES_MAX)?;
        let mut reader = Reader::new(bytes);
        let response = match reader.u8("snapshot response kind")? {
            TAG_LIST => SnapshotResponse::List(decode_list(&mut reader)?),
            TAG_MANIFEST => SnapshotResponse::Manifest(decode_opaque(&mut reader, "manifest")?),
            TAG_CHUNK => SnapshotResponse::Chunk(decode_opaque(&mut reader, "chunk")?),
            TAG_LIGHT_BLOCK => {
                SnapshotResponse::LightBlock(decode_opaque(&mut reader, "light block")?)
            }
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "snapshot response kind",
                    tag,
                });
            }
        };
        reader.finish()?;
        Ok(response)
    }
}

/// Bytes of `value`'s minimal LEB128 varint.
fn varint_len(value: usize) -> usize {
    (usize::BITS - value.max(1).leading_zeros()).div_ceil(7) as usize
}

fn decode_list(reader: &mut Reader<'_>) -> Result<Vec<SnapshotInfo>, DecodeError> {
    let count = reader.varint_max("snapshots listed", SNAPSHOTS_LISTED_MAX as u32)?;
    let mut list = Vec::with_capacity(bounded_capacity(count, reader, SNAPSHOT_INFO_BYTES));
    for _ in 0..count {
        list.push(SnapshotInfo {
            height: reader.u64("snapshot height")?,
            chunks: reader.u32("snapshot chunks")?,
            manifest_hash: reader.array("manifest hash")?,
        });
    }
    Ok(list)
}

fn decode_opaque(
    reader: &mut Reader<'_>,
    what: &'static str,
) -> Result<Option<Vec<u8>>, DecodeError> {
    match reader.u8("snapshot answer flag")? {
        0 => Ok(None),
        1 => {
            let len = reader.varint_max(what, SNAPSHOT_RESPONSE_BYTES_MAX as u32)?;
            // `take` checks the length against the bytes that remain before anything is copied.
            Ok(Some(reader.take(len as usize, what)?.to_vec()))
        }
        tag => Err(DecodeError::UnknownTag {
            what: "snapshot answer flag",
            tag,
        }),
    }
}

/// The request-response codec: a whole request or response per stream, read up to its cap.
#[derive(Clone, Copy, Default, Debug)]
pub struct SnapshotCodec;

impl libp2p::request_response::Codec for SnapshotCodec {
    type Protocol = StreamProtocol;
    type Request = SnapshotRequest;
    type Response = SnapshotResponse;

    async fn read_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<SnapshotRequest>
    where
        T: AsyncRead + Unpin + Send,
    {
        let bytes = read_capped(io, SNAPSHOT_REQUEST_BYTES_MAX).await?;
        SnapshotRequest::decode(&bytes).map_err(invalid)
    }

    async fn read_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<SnapshotResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        let bytes = read_capped(io, SNAPSHOT_RESPONSE_BYTES_MAX).await?;
        SnapshotResponse::decode(&bytes).map_err(invalid)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: SnapshotRequest,
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
        response: SnapshotResponse,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&response.encode()).await?;
        io.close().await
    }
}
