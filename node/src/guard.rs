//! The double-sign guard: the last message this validator signed, on disk, and the refusal to
//! sign anything that conflicts with it.
//!
//! The node runs the machine's `Effect::Persist(record)` as [`SignGuard::persist`], which makes
//! the record durable before the signing effect that follows it runs, and checks every message
//! with [`SignGuard::check_vote`] or [`SignGuard::check_proposal`] right before signing. A message
//! is refused when it has the position (height, round, step) of the persisted one but other
//! content, or an earlier position. Signing the identical message again is allowed: a replayed
//! machine re-derives it, and ed25519 gives the same signature. (A replay also re-derives the
//! votes before the last one; those come back as [`GuardError::Regression`], which the driver
//! skips on replay, since their signed copies are already in the WAL.)
//!
//! The file is `[magic: 8 bytes "weftsign"][crc32 of payload: u32 LE][payload]`, the payload one
//! [`LastSigned`] in the canonical codec, replaced atomically (temporary file, fsync, rename,
//! directory fsync). A missing file means nothing was signed yet; a damaged one is an error,
//! never a reset, since a reset guard would sign anything.

use std::cmp::Ordering;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;
use weft_consensus::codec;
use weft_consensus::{Height, LastSigned, Proposal, Round, Step, Vote, VoteType};
use weft_execution::codec::{DecodeError, Reader, put_u32};

use crate::crashpoint;
use crate::records::{checksum, remove_if_present, sync_parent_dir, temporary_path};

/// The first bytes of a guard file.
const MAGIC: &[u8; 8] = b"weftsign";
/// Largest guard file: the largest record is under 100 bytes.
pub const GUARD_BYTES_MAX: u64 = 256;

#[derive(Debug, Error)]
pub enum GuardError {
    #[error("sign guard {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("sign guard {path} is damaged ({reason}): refusing to sign until it is repaired")]
    Corrupt { path: PathBuf, reason: Corruption },
    /// Same (height, round, step) as the signed message, other content: a double sign.
    #[error("refusing to sign {:?}: it conflicts with the signed {:?}", .0.requested, .0.signed)]
    Conflict(Box<Refusal>),
    /// An earlier (height, round, step) than the signed message.
    #[error("refusing to sign {:?}: it is older than the signed {:?}", .0.requested, .0.signed)]
    Regression(Box<Refusal>),
}

/// A message the guard would not sign, and the signed one it clashed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub signed: LastSigned,
    pub requested: LastSigned,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Corruption {
    #[error("{len_bytes} bytes, over the cap of {GUARD_BYTES_MAX}")]
    TooLarge { len_bytes: u64 },
    #[error("no guard magic")]
    BadMagic,
    #[error("checksum mismatch")]
    BadChecksum,
    #[error(transparent)]
    Undecodable(#[from] DecodeError),
}

/// The guard's rule without its file: the last signed record and the checks against it. The
/// node core holds one and says when to persist; [`SignGuard`] holds one beside its file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuardState {
    last: Option<LastSigned>,
}

impl GuardState {
    pub fn new(last: Option<LastSigned>) -> GuardState {
        GuardState { last }
    }

    /// The record signed last, if any.
    pub fn last(&self) -> Option<&LastSigned> {
        self.last.as_ref()
    }

    pub fn check_vote(&self, vote: &Vote) -> Result<(), GuardError> {
        self.check(&LastSigned::Vote(*vote))
    }

    pub fn check_proposal(&self, proposal: &Proposal) -> Result<(), GuardError> {
        self.check(&LastSigned::Proposal(*proposal))
    }

    /// Whether `requested` may be signed after the last record: a later position, or the
    /// identical message.
    pub fn check(&self, requested: &LastSigned) -> Result<(), GuardError> {
        let Some(signed) = self.last else {
            return Ok(());
        };
        let requested = *requested;
        let refusal = || Box::new(Refusal { signed, requested });
        match position(&requested).cmp(&position(&signed)) {
            Ordering::Greater => Ok(()),
            Ordering::Equal if requested == signed => Ok(()),
            Ordering::Equal => Err(GuardError::Conflict(refusal())),
            Ordering::Less => Err(GuardError::Regression(refusal())),
        }
    }

    /// Moves the last record forward to `record`, refusing what [`GuardState::check`] refuses.
    /// Returns whether it changed (the identical record does not).
    pub fn advance(&mut self, record: &LastSigned) -> Result<bool, GuardError> {
        self.check(record)?;
        if self.last.as_ref() == Some(record) {
            return Ok(false);
        }
        self.last = Some(*record);
        Ok(true)
    }
}

/// The persisted last-signed record and the checks against it.
#[derive(Debug)]
pub struct SignGuard {
    path: PathBuf,
    state: GuardState,
}

impl SignGuard {
    /// Loads the guard at `path`; a missing file is a validator that has signed nothing.
    pub fn open(path: impl AsRef<Path>) -> Result<SignGuard, GuardError> {
        let path = path.as_ref().to_path_buf();
        // A temporary file is a persist that never completed, so nothing was signed after it.
        remove_if_present(&temporary_path(&path)).map_err(|source| GuardError::Io {
            path: path.clone(),
            source,
        })?;
        let last = match read_file(&path) {
            Ok(bytes) => Some(parse(&bytes).map_err(|reason| GuardError::Corrupt {
                path: path.clone(),
                reason,
            })?),
            Err(ReadError::NotFound) => None,
            Err(ReadError::TooLarge(len_bytes)) => {
                let reason = Corruption::TooLarge { len_bytes };
                return Err(GuardError::Corrupt { path, reason });
            }
            Err(ReadError::Io(source)) => return Err(GuardError::Io { path, source }),
        };
        Ok(SignGuard {
            path,
            state: GuardState::new(last),
        })
    }

    /// The record persisted last, if any.
    pub fn last(&self) -> Option<&LastSigned> {
        self.state.last()
    }

    /// The rule, for the node core to hold.
    pub fn state(&self) -> &GuardState {
        &self.state
    }

    /// Makes `record` the durable last-signed record. Refuses one the checks refuse, so the
    /// record only moves forward; the identical record is not written again.
    pub fn persist(&mut self, record: &LastSigned) -> Result<(), GuardError> {
        let mut next = self.state.clone();
        if !next.advance(record)? {
            return Ok(());
        }
        let mut bytes = Vec::with_capacity(GUARD_BYTES_MAX as usize);
        bytes.extend_from_slice(MAGIC);
        let payload = encode(record);
        put_u32(&mut bytes, checksum(&payload));
        bytes.extend_from_slice(&payload);
        let reached = crashpoint::begin(crashpoint::Write::GuardSync);
        write_atomically(&self.path, &bytes).map_err(|source| GuardError::Io {
            path: self.path.clone(),
            source,
        })?;
        reached.end();
        self.state = next;
        Ok(())
    }

    pub fn check_vote(&self, vote: &Vote) -> Result<(), GuardError> {
        self.state.check_vote(vote)
    }

    pub fn check_proposal(&self, proposal: &Proposal) -> Result<(), GuardError> {
        self.state.check_proposal(proposal)
    }
}

/// Where a message sits in the order a validator signs: height, round, then step.
fn position(record: &LastSigned) -> (Height, Round, Step) {
    match record {
        LastSigned::Proposal(proposal) => (proposal.height, proposal.round, Step::Propose),
        LastSigned::Vote(vote) => {
            let step = match vote.vote_type {
                VoteType::Prevote => Step::Prevote,
                VoteType::Precommit => Step::Precommit,
            };
            (vote.height, vote.round, step)
        }
    }
}

enum ReadError {
    NotFound,
    TooLarge(u64),
    Io(io::Error),
}

/// The file's bytes, its size checked before they are read.
fn read_file(path: &Path) -> Result<Vec<u8>, ReadError> {
    let file = File::open(path).map_err(|error| match error.kind() {
        io::ErrorKind::NotFound => ReadError::NotFound,
        _ => ReadError::Io(error),
    })?;
    let len_bytes = file.metadata().map_err(ReadError::Io)?.len();
    if len_bytes > GUARD_BYTES_MAX {
        return Err(ReadError::TooLarge(len_bytes));
    }
    let mut bytes = Vec::with_capacity(len_bytes as usize);
    // Bounded again in case the file grows between the two calls.
    file.take(GUARD_BYTES_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > GUARD_BYTES_MAX {
        return Err(ReadError::TooLarge(bytes.len() as u64));
    }
    Ok(bytes)
}

fn parse(bytes: &[u8]) -> Result<LastSigned, Corruption> {
    let Some(rest) = bytes.strip_prefix(MAGIC.as_slice()) else {
        return Err(Corruption::BadMagic);
    };
    let mut reader = Reader::new(rest);
    let expected = reader.u32("checksum")?;
    let payload = reader.take(reader.remaining(), "payload")?;
    if checksum(payload) != expected {
        return Err(Corruption::BadChecksum);
    }
    Ok(decode(payload)?)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let temporary = temporary_path(path);
    let mut file = File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&temporary, path)?;
    sync_parent_dir(path)
}

/// The record in the one encoding of consensus types (`weft_consensus::codec`).
fn encode(record: &LastSigned) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + weft_consensus::codec::VOTE_BYTES_MAX);
    codec::put_last_signed(&mut out, record);
    out
}

fn decode(bytes: &[u8]) -> Result<LastSigned, DecodeError> {
    let mut reader = Reader::new(bytes);
    let record = codec::read_last_signed(&mut reader)?;
    reader.finish()?;
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_consensus::{ValidatorId, ValueId};

    fn vote(vote_type: VoteType, height: u64, round: u32, value: Option<u8>) -> LastSigned {
        LastSigned::Vote(Vote {
            vote_type,
            height: Height(height),
            round: Round(round),
            value: value.map(|v| ValueId([v; 32])),
            validator: ValidatorId([1; 32]),
        })
    }

    fn prevote(height: u64, round: u32, value: Option<u8>) -> LastSigned {
        vote(VoteType::Prevote, height, round, value)
    }

    fn precommit(height: u64, round: u32, value: Option<u8>) -> LastSigned {
        vote(VoteType::Precommit, height, round, value)
    }

    fn proposal(height: u64, round: u32, value: u8, pol_round: Option<u32>) -> LastSigned {
        LastSigned::Proposal(Proposal {
            height: Height(height),
            round: Round(round),
            value: ValueId([value; 32]),
            pol_round: pol_round.map(Round),
            proposer: ValidatorId([1; 32]),
        })
    }

    #[derive(Debug, PartialEq)]
    enum Verdict {
        Sign,
        Conflict,
        Regression,
    }

    fn verdict(guard: &SignGuard, requested: &LastSigned) -> Verdict {
        let result = match requested {
            LastSigned::Vote(vote) => guard.check_vote(vote),
            LastSigned::Proposal(proposal) => guard.check_proposal(proposal),
        };
        match result {
            Ok(()) => Verdict::Sign,
            Err(GuardError::Conflict(_)) => Verdict::Conflict,
            Err(GuardError::Regression(_)) => Verdict::Regression,
            Err(error) => panic!("{error}"),
        }
    }

    fn guard_at(dir: &Path) -> SignGuard {
        SignGuard::open(dir.join("guard")).unwrap()
    }

    /// After persisting `signed`, is `requested` signed or refused, and how.
    fn check(signed: LastSigned, requested: LastSigned, expected: Verdict) {
        let dir = tempfile::tempdir().unwrap();
        let mut guard = guard_at(dir.path());
        guard.persist(&signed).unwrap();
        let reopened = guard_at(dir.path());
        assert_eq!(
            verdict(&reopened, &requested),
            expected,
            "{requested:?} after {signed:?}"
        );
    }

    #[test]
    fn identical_messages_may_be_signed_again() {
        check(
            prevote(5, 1, Some(2)),
            prevote(5, 1, Some(2)),
            Verdict::Sign,
        );
        check(precommit(5, 1, None), precommit(5, 1, None), Verdict::Sign);
        let same = proposal(5, 1, 2, Some(0));
        check(same, same, Verdict::Sign);
    }

    #[test]
    fn conflicting_messages_are_refused() {
        use Verdict::Conflict;
        check(prevote(5, 1, Some(2)), prevote(5, 1, Some(3)), Conflict);
        check(prevote(5, 1, Some(2)), prevote(5, 1, None), Conflict);
        check(precommit(5, 1, None), precommit(5, 1, Some(2)), Conflict);
        check(proposal(5, 1, 2, None), proposal(5, 1, 3, None), Conflict);
        check(
            proposal(5, 1, 2, None),
            proposal(5, 1, 2, Some(0)),
            Conflict,
        );
        let LastSigned::Vote(mut other) = prevote(5, 1, Some(2)) else {
            unreachable!()
        };
        other.validator = ValidatorId([9; 32]);
        check(prevote(5, 1, Some(2)), LastSigned::Vote(other), Conflict);
    }

    #[test]
    fn older_positions_are_refused() {
        use Verdict::Regression;
        check(prevote(5, 1, Some(2)), prevote(4, 9, Some(2)), Regression);
        check(prevote(5, 1, Some(2)), precommit(5, 0, Some(2)), Regression);
        check(precommit(5, 1, Some(2)), prevote(5, 1, Some(2)), Regression);
        check(prevote(5, 1, Some(2)), proposal(5, 1, 2, None), Regression);
        check(proposal(5, 1, 2, None), proposal(5, 0, 2, None), Regression);
    }

    #[test]
    fn newer_positions_are_signed() {
        use Verdict::Sign;
        check(precommit(5, 3, Some(2)), proposal(6, 0, 1, None), Sign);
        check(precommit(5, 3, Some(2)), prevote(5, 4, None), Sign);
        check(prevote(5, 3, Some(2)), precommit(5, 3, None), Sign);
        check(proposal(5, 3, 2, None), prevote(5, 3, Some(7)), Sign);
        check(precommit(5, 3, None), proposal(5, 4, 2, Some(3)), Sign);
    }

    #[test]
    fn a_fresh_guard_signs_anything_and_persists_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut guard = guard_at(dir.path());
        assert_eq!(guard.last(), None);
        assert_eq!(verdict(&guard, &prevote(1, 0, None)), Verdict::Sign);
        for record in [
            proposal(1, 0, 4, None),
            prevote(1, 0, Some(4)),
            precommit(1, 0, None),
        ] {
            guard.persist(&record).unwrap();
            assert_eq!(guard_at(dir.path()).last(), Some(&record));
        }
    }

    #[test]
    fn persist_refuses_what_the_checks_refuse_and_keeps_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut guard = guard_at(dir.path());
        guard.persist(&precommit(3, 2, Some(1))).unwrap();
        let before = fs::read(dir.path().join("guard")).unwrap();
        let refused = [precommit(3, 2, Some(2)), prevote(3, 2, Some(1))];
        for record in refused {
            assert!(guard.persist(&record).is_err(), "{record:?}");
        }
        assert_eq!(fs::read(dir.path().join("guard")).unwrap(), before);
        assert_eq!(guard.last(), Some(&precommit(3, 2, Some(1))));
    }

    #[test]
    fn a_damaged_file_is_an_error_never_a_reset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("guard");
        guard_at(dir.path())
            .persist(&proposal(8, 2, 6, Some(1)))
            .unwrap();
        let good = fs::read(&path).unwrap();
        let mut damaged: Vec<Vec<u8>> = (0..good.len()).map(|len| good[..len].to_vec()).collect();
        for offset in 0..good.len() {
            let mut bytes = good.clone();
            bytes[offset] ^= 0x01;
            damaged.push(bytes);
        }
        damaged.push([good.as_slice(), &[0]].concat());
        damaged.push(vec![0; GUARD_BYTES_MAX as usize + 1]);
        for bytes in damaged {
            fs::write(&path, &bytes).unwrap();
            let result = SignGuard::open(&path);
            assert!(
                matches!(result, Err(GuardError::Corrupt { .. })),
                "{bytes:?}: {result:?}"
            );
        }
    }

    #[test]
    fn an_unfinished_persist_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("guard");
        let record = prevote(2, 0, Some(1));
        guard_at(dir.path()).persist(&record).unwrap();
        fs::write(temporary_path(&path), b"weftsign partial").unwrap();
        let guard = SignGuard::open(&path).unwrap();
        assert_eq!(guard.last(), Some(&record));
        assert!(!temporary_path(&path).exists());
    }
}
