//! Weft's consensus protocol on libp2p streams: one outbound stream per connected peer, fed
//! from the router's queue for that peer, and inbound streams read frame by frame.
//!
//! A frame's length is checked before its payload is read; an oversized frame is skipped
//! through a fixed buffer and charged to the sender, and the stream carries on. Every message is
//! verified (batch verification for bundles and certificates) before the router sees it, so
//! semantic decisions are taken on verified messages only. A copy of a vote the router already
//! holds, byte for byte, is not verified again.
//!
//! Frames go out in pieces of `WRITE_CHUNK_BYTES`, each marking when it began; the swarm
//! task charges and disconnects a peer whose stream has taken no piece for
//! `Limits::write_stall_max` (a reader that never reads), while the router's bounded queue
//! drops the oldest of what waits for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::{PeerId, Stream, StreamProtocol};
use weft_consensus::SignedVote;

use super::Shared;
use crate::metrics::Direction;
use crate::score::Offence;
use crate::verify::{Rejection, verify_proposal, verify_votes};
use crate::wire::{Message, VoteBundle, frame_len};

pub const CONSENSUS_PROTOCOL: StreamProtocol = StreamProtocol::new("/weft/consensus/1");

/// Pause before reopening an outbound stream that failed on a live connection.
const REOPEN_DELAY: Duration = Duration::from_millis(200);
/// Frames are written in pieces of this size, so a big block on a slow but live link keeps
/// showing progress to the slow-reader check.
const WRITE_CHUNK_BYTES: usize = 64 * 1024;

/// The writer's mark for the slow-reader check (`PeerEntry::writing_since`).
struct Progress<'a> {
    shared: &'a Shared,
    since: &'a AtomicU64,
}

impl Progress<'_> {
    /// A write (or stream opening) begins now.
    fn begin(&self) {
        self.since
            .store(self.shared.now_ms() + 1, Ordering::Release);
    }

    fn idle(&self) {
        self.since.store(0, Ordering::Release);
    }
}

fn offence(rejection: Rejection) -> Offence {
    match rejection {
        Rejection::UnknownValidator => Offence::UnknownValidator,
        Rejection::Signature(_) => Offence::BadSignature,
    }
}

/// Writes the router's queue for `peer` to an outbound stream, for as long as the task lives
/// (the swarm aborts it when the peer disconnects).
pub(super) async fn write_loop(
    shared: Arc<Shared>,
    mut control: libp2p_stream::Control,
    peer: PeerId,
    slot: usize,
    wake: Arc<tokio::sync::Notify>,
    writing_since: Arc<AtomicU64>,
) {
    let progress = Progress {
        shared: &shared,
        since: &writing_since,
    };
    loop {
        progress.begin();
        let opened = control.open_stream(peer, CONSENSUS_PROTOCOL).await;
        progress.idle();
        let mut stream = match opened {
            Ok(stream) => stream,
            Err(error) => {
                tracing::debug!(%peer, %error, "cannot open consensus stream");
                tokio::time::sleep(REOPEN_DELAY).await;
                continue;
            }
        };
        // A new stream starts with this node's position, so the peer can filter for it.
        shared.advertise_to(slot);
        if let Err(error) = write_queued(&shared, &mut stream, slot, &wake, &progress).await {
            progress.idle();
            tracing::debug!(%peer, %error, "consensus stream closed");
            tokio::time::sleep(REOPEN_DELAY).await;
        }
    }
}

async fn write_queued(
    shared: &Shared,
    stream: &mut Stream,
    slot: usize,
    wake: &tokio::sync::Notify,
    progress: &Progress<'_>,
) -> std::io::Result<()> {
    loop {
        let batch = shared.drain(slot);
        if batch.is_empty() {
            wake.notified().await;
            continue;
        }
        for message in batch {
            let frame = message.to_frame();
            for chunk in frame.chunks(WRITE_CHUNK_BYTES) {
                progress.begin();
                stream.write_all(chunk).await?;
            }
            shared
                .metrics
                .observe(Direction::Sent, &message, frame.len());
        }
        progress.begin();
        stream.flush().await?;
        progress.idle();
    }
}

/// Reads frames from one inbound stream until it ends or the peer is banned.
pub(super) async fn read_loop(shared: Arc<Shared>, peer: PeerId, mut stream: Stream) {
    let mut header = [0u8; 4];
    while !shared.is_banned(&peer) {
        if stream.read_exact(&mut header).await.is_err() {
            break;
        }
        let len = match frame_len(header) {
            Ok(len) => len,
            Err(error) => {
                tracing::debug!(%peer, %error, "oversized frame");
                shared.penalise(&peer, Offence::OversizedFrame);
                // Skip the payload through a fixed buffer: nothing is allocated for it.
                let announced = u64::from(u32::from_le_bytes(header));
                let mut rest = (&mut stream).take(announced);
                if futures::io::copy(&mut rest, &mut futures::io::sink())
                    .await
                    .is_err()
                {
                    break;
                }
                continue;
            }
        };
        // Read into a buffer that grows with what arrives, so an announced length alone never
        // reserves memory.
        let mut payload = Vec::with_capacity(len.min(64 * 1024));
        match (&mut stream)
            .take(len as u64)
            .read_to_end(&mut payload)
            .await
        {
            Ok(read) if read == len => {}
            _ => break,
        }
        let message = match Message::decode(&payload) {
            Ok(message) => message,
            Err(error) => {
                tracing::debug!(%peer, %error, "malformed consensus message");
                shared.penalise(&peer, Offence::Malformed);
                continue;
            }
        };
        shared
            .metrics
            .observe(Direction::Received, &message, len + 4);
        if !on_message(&shared, peer, message).await {
            break;
        }
    }
    shared.reader_done(&peer);
}

/// Verifies one message from `peer` and hands what survives to the router. False once the
/// node is shutting down.
async fn on_message(shared: &Shared, peer: PeerId, message: Message) -> bool {
    let votes: Vec<SignedVote> = match &message {
        Message::Status { .. } => {
            shared.on_verified(peer, message);
            return true;
        }
        Message::Proposal { proposal, block } => {
            let sets = shared.validators();
            // A height whose set is not known here (too old) is dropped, never charged.
            let Some(validators) = sets.at(proposal.message.height) else {
                return true;
            };
            if let Err(rejection) = verify_proposal(&shared.chain_id, validators, proposal) {
                shared.penalise(&peer, offence(rejection));
                return true;
            }
            if !shared.block_check.check(proposal, block) {
                shared.penalise(&peer, Offence::Malformed);
                return true;
            }
            let fresh = shared.on_verified(peer, message);
            return shared.deliver(Some(peer), fresh).await;
        }
        Message::Vote(vote) => vec![*vote],
        Message::Bundle(bundle) => bundle.votes().collect(),
        Message::Commit(certificate) => certificate.precommits.clone(),
    };
    // Exact copies of votes already held were verified when they first arrived.
    let (held, unchecked): (Vec<SignedVote>, Vec<SignedVote>) =
        votes.iter().partition(|vote| shared.holds(vote));
    // The votes of one message share a height: checked against that height's set. A height
    // whose set is not known here (too old) is dropped, never charged.
    let sets = shared.validators();
    let Some(height) = votes.first().map(|vote| vote.message.height) else {
        return true;
    };
    let Some(validators) = sets.at(height) else {
        return true;
    };
    let verdicts = verify_votes(&shared.chain_id, validators, &unchecked);
    let mut valid = held;
    let mut rejected = false;
    for (vote, verdict) in unchecked.into_iter().zip(verdicts) {
        match verdict {
            Ok(()) => valid.push(vote),
            Err(rejection) => {
                rejected = true;
                shared.penalise(&peer, offence(rejection));
            }
        }
    }
    if valid.is_empty() {
        return true;
    }
    let verified = match message {
        Message::Vote(_) => Message::Vote(valid[0]),
        Message::Commit(certificate) if !rejected => Message::Commit(certificate),
        _ if valid.len() == 1 => Message::Vote(valid[0]),
        _ => Message::Bundle(
            VoteBundle::from_votes(&valid).expect("votes of one message share a topic"),
        ),
    };
    let fresh = shared.on_verified(peer, verified);
    shared.deliver(Some(peer), fresh).await
}
