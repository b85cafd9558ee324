//! The node's one durable record format, that of the consensus WAL ([`crate::wal`]: its entries
//! and the blocks beside them): each record is `[len: u32 LE][crc32 of payload: u32 LE]
//! [payload]`, appended. Opening a log reads records up to the end or the first damaged one (a
//! short header, a length past the cap or past the file, a bad checksum, a payload that does
//! not decode), keeps that good prefix and cuts the rest, so a write torn by a crash is dropped
//! and nothing after damage is trusted. Also the steps every durable file here uses to replace
//! itself: a temporary file beside it, fsync, rename, directory fsync.
//!
//! The double-sign guard is one record behind a magic, replaced whole, and uses the same
//! checksum and replacement steps.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

/// Bytes before each payload: its length and its checksum.
pub const HEADER_BYTES: usize = 8;

/// Why reading a log stopped before the end of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    ShortHeader,
    ShortPayload,
    RecordTooLarge {
        len_bytes: u32,
    },
    BadChecksum,
    /// The record's checksum held but its bytes are not what the log holds: the decoder's
    /// reason.
    Undecodable(String),
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Damage::ShortHeader => f.write_str("a record header cut short"),
            Damage::ShortPayload => f.write_str("a record cut short"),
            Damage::RecordTooLarge { len_bytes } => {
                write!(f, "a record claiming {len_bytes} bytes, over the cap")
            }
            Damage::BadChecksum => f.write_str("a record whose checksum does not match"),
            Damage::Undecodable(reason) => write!(f, "a record that does not decode: {reason}"),
        }
    }
}

/// What opening a log found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Good records read.
    pub records: usize,
    /// Bytes cut from the end of the file: the damaged record and everything after it.
    pub truncated_bytes: u64,
    /// Why the tail was cut, if it was.
    pub damage: Option<Damage>,
}

/// `payload` framed as one record.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(HEADER_BYTES + payload.len());
    record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    record.extend_from_slice(&checksum(payload).to_le_bytes());
    record.extend_from_slice(payload);
    record
}

/// The checksum of a payload (CRC-32, IEEE).
pub fn checksum(payload: &[u8]) -> u32 {
    crc32fast::hash(payload)
}

/// Reads the records of a log of `file_bytes` bytes, each payload at most `payload_bytes_max`
/// and turned into an item by `decode`, until the end or the first damaged record. Returns
/// the items, the bytes of the good prefix, and the damage that ended it early. Allocates no
/// more than the cap and the file allow, whatever a length field says.
pub fn read<T, E: fmt::Display>(
    mut reader: impl Read,
    file_bytes: u64,
    payload_bytes_max: usize,
    mut decode: impl FnMut(&[u8]) -> Result<T, E>,
) -> io::Result<(Vec<T>, u64, Option<Damage>)> {
    let mut items = Vec::new();
    let mut good_bytes: u64 = 0;
    let mut payload = Vec::new();
    loop {
        let remaining = file_bytes - good_bytes;
        if remaining == 0 {
            return Ok((items, good_bytes, None));
        }
        if remaining < HEADER_BYTES as u64 {
            return Ok((items, good_bytes, Some(Damage::ShortHeader)));
        }
        let mut header = [0u8; HEADER_BYTES];
        reader.read_exact(&mut header)?;
        let len_bytes = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let expected = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len_bytes as usize > payload_bytes_max {
            return Ok((
                items,
                good_bytes,
                Some(Damage::RecordTooLarge { len_bytes }),
            ));
        }
        // Checked against the cap and against the file before the buffer grows.
        if u64::from(len_bytes) > remaining - HEADER_BYTES as u64 {
            return Ok((items, good_bytes, Some(Damage::ShortPayload)));
        }
        payload.resize(len_bytes as usize, 0);
        reader.read_exact(&mut payload)?;
        if checksum(&payload) != expected {
            return Ok((items, good_bytes, Some(Damage::BadChecksum)));
        }
        match decode(&payload) {
            Ok(item) => items.push(item),
            Err(error) => {
                let damage = Damage::Undecodable(error.to_string());
                return Ok((items, good_bytes, Some(damage)));
            }
        }
        good_bytes += (HEADER_BYTES + payload.len()) as u64;
    }
}

/// Why a log could not be opened.
#[derive(Debug)]
pub enum OpenError {
    Io(io::Error),
    /// The file is larger than a log of its kind may grow.
    TooLarge {
        len_bytes: u64,
    },
}

impl From<io::Error> for OpenError {
    fn from(error: io::Error) -> Self {
        OpenError::Io(error)
    }
}

/// A log opened for appending after its good records.
#[derive(Debug)]
pub struct Opened<T> {
    /// Open for reading and appending, positioned after the last good record.
    pub file: File,
    pub items: Vec<T>,
    /// The length of the file now.
    pub len_bytes: u64,
    pub recovery: Recovery,
}

/// Opens (or creates, making the creation durable) the log at `path`: removes a temporary
/// file left by an interrupted replacement, refuses a file over `file_bytes_max`, reads the
/// good records, and cuts (durably) the damaged tail.
pub fn open_log<T, E: fmt::Display>(
    path: &Path,
    file_bytes_max: u64,
    payload_bytes_max: usize,
    decode: impl FnMut(&[u8]) -> Result<T, E>,
) -> Result<Opened<T>, OpenError> {
    remove_if_present(&temporary_path(path))?;
    let existed = path.try_exists()?;
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)?;
    if !existed {
        sync_parent_dir(path)?;
    }
    let file_bytes = file.metadata()?.len();
    if file_bytes > file_bytes_max {
        return Err(OpenError::TooLarge {
            len_bytes: file_bytes,
        });
    }
    let (items, good_bytes, damage) =
        read(BufReader::new(&file), file_bytes, payload_bytes_max, decode)?;
    if good_bytes < file_bytes {
        file.set_len(good_bytes)?;
        file.sync_all()?;
    }
    let recovery = Recovery {
        records: items.len(),
        truncated_bytes: file_bytes - good_bytes,
        damage,
    };
    Ok(Opened {
        file,
        items,
        len_bytes: good_bytes,
        recovery,
    })
}

/// `<path>.tmp`, beside the file it replaces (a rename is atomic only within a filesystem).
pub fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Makes a rename or creation in `path`'s directory durable.
pub fn sync_parent_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

pub fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Payloads are their own items; one that starts with 0xFF does not decode.
    fn decode(payload: &[u8]) -> Result<Vec<u8>, &'static str> {
        match payload.first() {
            Some(0xFF) => Err("starts with 0xFF"),
            _ => Ok(payload.to_vec()),
        }
    }

    fn read_all(bytes: &[u8], cap: usize) -> (Vec<Vec<u8>>, u64, Option<Damage>) {
        read(bytes, bytes.len() as u64, cap, decode).unwrap()
    }

    fn log_of(payloads: &[&[u8]]) -> (Vec<u8>, Vec<u64>) {
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        for payload in payloads {
            bytes.extend_from_slice(&frame(payload));
            ends.push(bytes.len() as u64);
        }
        (bytes, ends)
    }

    const PAYLOADS: [&[u8]; 4] = [b"one", b"", b"three bytes and more", b"4"];

    #[test]
    fn records_read_back_in_order() {
        let (bytes, ends) = log_of(&PAYLOADS);
        let (items, good, damage) = read_all(&bytes, 64);
        assert_eq!(items, PAYLOADS.map(<[u8]>::to_vec));
        assert_eq!((good, damage), (*ends.last().unwrap(), None));
    }

    /// A write torn at any byte keeps exactly the records before it and names the damage.
    #[test]
    fn a_torn_tail_at_every_offset_keeps_the_whole_records_before_it() {
        let (bytes, ends) = log_of(&PAYLOADS);
        for cut in 0..bytes.len() {
            let (items, good, damage) = read_all(&bytes[..cut], 64);
            let whole = ends.iter().filter(|&&end| end <= cut as u64).count();
            assert_eq!(items.len(), whole, "cut at {cut}");
            let kept = if whole == 0 { 0 } else { ends[whole - 1] };
            assert_eq!(good, kept, "cut at {cut}");
            let expected = if cut as u64 == kept {
                None
            } else if (cut as u64) - kept < HEADER_BYTES as u64 {
                Some(Damage::ShortHeader)
            } else {
                Some(Damage::ShortPayload)
            };
            assert_eq!(damage, expected, "cut at {cut}");
        }
    }

    /// Any flipped byte ends the read at its record: nothing from it on is trusted.
    #[test]
    fn a_flipped_byte_ends_the_read_at_its_record() {
        let (bytes, ends) = log_of(&PAYLOADS);
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x40;
            let (items, good, damage) = read_all(&damaged, 64);
            let record = ends.iter().filter(|&&end| end <= at as u64).count();
            assert_eq!(items.len(), record, "flip at {at}");
            assert_eq!(good, if record == 0 { 0 } else { ends[record - 1] });
            assert!(damage.is_some(), "flip at {at}");
        }
    }

    #[test]
    fn a_length_over_the_cap_is_damage_before_any_allocation() {
        let mut bytes = frame(b"ok");
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        let (items, good, damage) = read_all(&bytes, 64);
        assert_eq!(items.len(), 1);
        assert_eq!(good, (HEADER_BYTES + 2) as u64);
        assert_eq!(
            damage,
            Some(Damage::RecordTooLarge {
                len_bytes: u32::MAX
            })
        );
    }

    #[test]
    fn a_good_checksum_over_an_undecodable_payload_is_damage_with_the_reason() {
        let (mut bytes, ends) = log_of(&[b"fine"]);
        bytes.extend_from_slice(&frame(&[0xFF, 1, 2]));
        let (items, good, damage) = read_all(&bytes, 64);
        assert_eq!((items.len(), good), (1, ends[0]));
        assert_eq!(damage, Some(Damage::Undecodable("starts with 0xFF".into())));
    }

    #[test]
    fn opening_cuts_the_damaged_tail_on_disk_and_refuses_an_oversized_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let (mut bytes, ends) = log_of(&PAYLOADS);
        bytes.extend_from_slice(&[1, 2, 3]);
        fs::write(&path, &bytes).unwrap();
        fs::write(temporary_path(&path), b"left by a crash").unwrap();
        let opened = open_log(&path, 1 << 20, 64, decode).unwrap();
        assert_eq!(opened.items.len(), PAYLOADS.len());
        assert_eq!(opened.len_bytes, *ends.last().unwrap());
        assert_eq!(
            opened.recovery,
            Recovery {
                records: PAYLOADS.len(),
                truncated_bytes: 3,
                damage: Some(Damage::ShortHeader),
            }
        );
        assert_eq!(fs::metadata(&path).unwrap().len(), opened.len_bytes);
        assert!(!temporary_path(&path).exists());
        drop(opened);
        match open_log(&path, 8, 64, decode) {
            Err(OpenError::TooLarge { len_bytes }) => assert_eq!(len_bytes, ends[3]),
            other => panic!("an oversized log opened: {other:?}"),
        }
    }
}
