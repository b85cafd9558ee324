//! Test-only crash points (in a build with the `test-hooks` feature, see [`crate::test_hooks`]): `WEFT_CRASH_AT=<write>:<n>[:<phase>]` makes the process exit at once,
//! with no cleanup, at the n-th durable write of one kind since it started.
//!
//! The writes: `wal-append` (a consensus WAL record), `guard-sync` (the last-signed record's
//! write and fsync), `commit-batch` (the sled batch that commits a decided height) and
//! `sync-store` (the same batch for a height obtained by block sync), `restore-chunk` (a
//! snapshot chunk written by a state-sync restore). The phase is `before`
//! (the write never happened), `after` (it happened and nothing after it did; the default) or,
//! for `wal-append` only, `torn` (half of the record reached the file) and `unsynced` (a power
//! cut: the WAL loses every record appended since its last sync).
//!
//! Exiting through [`std::process::exit`] runs no destructor on any thread: no buffer is
//! flushed, no file closed cleanly, no database flushed. What the page cache already holds
//! survives, as it does when a process is killed; a power cut (losing unsynced pages) is
//! modelled for the WAL only, by `unsynced`. Like the byzantine switch, this is read from the
//! environment by `weft start`, is inert unless set, and is not read at all by a build without
//! test hooks.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The exit status of a process stopped at a crash point.
pub const CRASH_EXIT_CODE: i32 = 86;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    WalAppend,
    GuardSync,
    CommitBatch,
    SyncStore,
    /// One snapshot chunk written during a state-sync restore.
    RestoreChunk,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Before,
    Torn,
    Unsynced,
    After,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrashPoint {
    pub write: Write,
    pub nth: u64,
    pub phase: Phase,
}

impl Write {
    fn name(self) -> &'static str {
        match self {
            Write::WalAppend => "wal-append",
            Write::GuardSync => "guard-sync",
            Write::CommitBatch => "commit-batch",
            Write::SyncStore => "sync-store",
            Write::RestoreChunk => "restore-chunk",
        }
    }
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Before => "before",
            Phase::Torn => "torn",
            Phase::Unsynced => "unsynced",
            Phase::After => "after",
        }
    }
}

impl std::fmt::Display for CrashPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.write.name(),
            self.nth,
            self.phase.name()
        )
    }
}

impl std::str::FromStr for CrashPoint {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let usage = || {
            format!(
                "crash point {text:?}: expected <write>:<n>[:<phase>], write one of wal-append, \
                 guard-sync, commit-batch, sync-store, restore-chunk; n ≥ 1; phase before, after or (wal-append \
                 only) torn or unsynced"
            )
        };
        let mut parts = text.split(':');
        let write = match parts.next() {
            Some("wal-append") => Write::WalAppend,
            Some("guard-sync") => Write::GuardSync,
            Some("commit-batch") => Write::CommitBatch,
            Some("sync-store") => Write::SyncStore,
            Some("restore-chunk") => Write::RestoreChunk,
            _ => return Err(usage()),
        };
        let nth: u64 = parts
            .next()
            .and_then(|n| n.parse().ok())
            .filter(|n| *n >= 1)
            .ok_or_else(usage)?;
        let phase = match parts.next() {
            None | Some("after") => Phase::After,
            Some("before") => Phase::Before,
            Some("torn") if write == Write::WalAppend => Phase::Torn,
            Some("unsynced") if write == Write::WalAppend => Phase::Unsynced,
            _ => return Err(usage()),
        };
        if parts.next().is_some() {
            return Err(usage());
        }
        Ok(CrashPoint { write, nth, phase })
    }
}

static ARMED: OnceLock<CrashPoint> = OnceLock::new();
static COUNT: AtomicU64 = AtomicU64::new(0);

/// Reads `WEFT_CRASH_AT` (in a build with test hooks only); an unknown value is an error
/// naming it.
pub fn arm_from_env() -> Result<Option<CrashPoint>, String> {
    match crate::test_hooks::var("WEFT_CRASH_AT") {
        None => Ok(None),
        Some(text) => {
            let point: CrashPoint = text.to_string_lossy().parse()?;
            let _ = ARMED.set(point);
            tracing::warn!(%point, "crash point armed (WEFT_CRASH_AT): this process will exit there");
            Ok(Some(point))
        }
    }
}

/// Whether `write` is the armed kind: its call sites count one write, then check each phase.
fn armed_for(write: Write) -> Option<CrashPoint> {
    ARMED.get().copied().filter(|p| p.write == write)
}

/// Marks the start of one durable write of `write`: counts it, and exits here if this is the
/// armed write's `before` phase. Returns a token for the later phases.
pub fn begin(write: Write) -> Reached {
    let Some(point) = armed_for(write) else {
        return Reached(false);
    };
    let nth = COUNT.fetch_add(1, Ordering::SeqCst) + 1;
    let reached = Reached(nth == point.nth);
    if reached.0 && point.phase == Phase::Before {
        crash(point);
    }
    reached
}

/// The token of one counted write.
#[must_use]
pub struct Reached(bool);

impl Reached {
    fn at(&self, phase: Phase) -> bool {
        self.0 && ARMED.get().is_some_and(|p| p.phase == phase)
    }

    /// Whether the armed point is this write's `torn` phase (the caller writes half, then
    /// calls [`Reached::crash_torn`]).
    pub fn torn(&self) -> bool {
        self.at(Phase::Torn)
    }

    pub fn crash_torn(&self) {
        if let Some(point) = ARMED.get().filter(|_| self.torn()) {
            crash(*point);
        }
    }

    /// Whether the armed point is this write's `unsynced` phase (the caller drops what was not
    /// synced, then calls [`Reached::crash_unsynced`]).
    pub fn unsynced(&self) -> bool {
        self.at(Phase::Unsynced)
    }

    pub fn crash_unsynced(&self) {
        if let Some(point) = ARMED.get().filter(|_| self.unsynced()) {
            crash(*point);
        }
    }

    /// Exits here if this is the armed write's `after` phase.
    pub fn end(self) {
        if let Some(point) = ARMED.get().filter(|p| self.0 && p.phase == Phase::After) {
            crash(*point);
        }
    }
}

/// Test-only signature audit: with `WEFT_SIGN_AUDIT=<file>`, one line per signature this node
/// releases is appended there before the message leaves (`vote <height> <round> <type>
/// <value|nil>` or `proposal <height> <round> <value>`). The crash loop reads it to check that
/// no restart ever signed a vote or proposal conflicting with an earlier one. Unsynced: a
/// process crash keeps it (the page cache survives), and only the WAL models a power cut.
pub fn audit_signature(line: impl FnOnce() -> String) {
    static AUDIT: OnceLock<Option<parking_lot::Mutex<std::fs::File>>> = OnceLock::new();
    let file = AUDIT.get_or_init(|| {
        let path = crate::test_hooks::var("WEFT_SIGN_AUDIT")?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| tracing::error!(error = %e, "WEFT_SIGN_AUDIT: cannot open the file"))
            .ok()?;
        Some(parking_lot::Mutex::new(file))
    });
    if let Some(file) = file {
        use std::io::Write as _;
        let mut text = line();
        text.push('\n');
        let _ = file.lock().write_all(text.as_bytes());
    }
}

fn crash(point: CrashPoint) -> ! {
    eprintln!("weft: stopped at crash point {point} (WEFT_CRASH_AT)");
    std::process::exit(CRASH_EXIT_CODE);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_points_parse_and_print() {
        for text in [
            "wal-append:1:before",
            "wal-append:7:torn",
            "wal-append:8:unsynced",
            "guard-sync:3:after",
            "commit-batch:2:before",
            "sync-store:1:after",
        ] {
            assert_eq!(text.parse::<CrashPoint>().unwrap().to_string(), text);
        }
        assert_eq!(
            "commit-batch:4".parse::<CrashPoint>().unwrap().phase,
            Phase::After
        );
        for bad in [
            "",
            "wal-append",
            "wal-append:0",
            "wal-append:x",
            "guard-sync:1:torn",
            "commit-batch:1:unsynced",
            "disk:1",
            "wal-append:1:after:more",
        ] {
            let error = bad.parse::<CrashPoint>().unwrap_err();
            assert!(error.contains("expected <write>"), "{bad}: {error}");
        }
    }
}
