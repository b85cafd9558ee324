//! Key files: an Ed25519 secret key in a small JSON file, readable by its owner only.
//!
//! ```json
//! {"type":"ed25519","public":"<64 hex>","secret":"<64 hex>"}
//! ```
//!
//! The same format holds a validator's signing key and a node's network identity. Loading
//! refuses, with an error naming the file: a file others can read or write, a file over
//! [`KEY_FILE_BYTES_MAX`], malformed JSON, another key type, a secret that is not 32 bytes of
//! hex, and a public key that does not match the secret.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Largest key file read.
pub const KEY_FILE_BYTES_MAX: u64 = 4 * 1024;
const KEY_TYPE: &str = "ed25519";

#[derive(Debug, Error)]
#[error("key file {}: {problem}", path.display())]
pub struct KeyFileError {
    pub path: PathBuf,
    pub problem: KeyProblem,
}

#[derive(Debug, Error)]
pub enum KeyProblem {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("already exists; refusing to overwrite a key")]
    Exists,
    #[error("mode {mode:o} lets others read or write it; run chmod 600")]
    Permissions { mode: u32 },
    #[error("{len} bytes is over the cap of {KEY_FILE_BYTES_MAX}")]
    TooLarge { len: u64 },
    #[error("malformed: {0}")]
    Malformed(String),
    #[error("key type {0:?} is not {KEY_TYPE:?}")]
    KeyType(String),
    #[error("public key does not match the secret key")]
    PublicMismatch,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyJson {
    #[serde(rename = "type")]
    key_type: String,
    public: String,
    secret: String,
}

/// An Ed25519 secret key loaded from, or about to be written to, a key file.
#[derive(Clone)]
pub struct SecretKey(pub [u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey({})", hex::encode(self.public()))
    }
}

impl SecretKey {
    /// A fresh key from the operating system's randomness.
    pub fn generate() -> Self {
        let mut secret = [0u8; 32];
        rand::fill(&mut secret);
        SecretKey(secret)
    }

    pub fn public(&self) -> [u8; 32] {
        SigningKey::from_bytes(&self.0).verifying_key().to_bytes()
    }

    pub fn signing_key(&self) -> SigningKey {
        SigningKey::from_bytes(&self.0)
    }
}

fn fail(path: &Path, problem: impl Into<KeyProblem>) -> KeyFileError {
    KeyFileError {
        path: path.to_owned(),
        problem: problem.into(),
    }
}

/// Writes a new key file with mode 0600. Never overwrites.
pub fn write_key_file(path: &Path, key: &SecretKey) -> Result<(), KeyFileError> {
    let json = KeyJson {
        key_type: KEY_TYPE.to_owned(),
        public: hex::encode(key.public()),
        secret: hex::encode(key.0),
    };
    let text = serde_json::to_string(&json).expect("key JSON serialises");
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => fail(path, KeyProblem::Exists),
            _ => fail(path, e),
        })?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| fail(path, e))
}

/// Reads a key file, refusing one that others can access or that is malformed.
pub fn read_key_file(path: &Path) -> Result<SecretKey, KeyFileError> {
    let file = fs::File::open(path).map_err(|e| fail(path, e))?;
    let meta = file.metadata().map_err(|e| fail(path, e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(fail(path, KeyProblem::Permissions { mode }));
    }
    if meta.len() > KEY_FILE_BYTES_MAX {
        return Err(fail(path, KeyProblem::TooLarge { len: meta.len() }));
    }
    let mut text = String::new();
    file.take(KEY_FILE_BYTES_MAX + 1)
        .read_to_string(&mut text)
        .map_err(|e| fail(path, KeyProblem::Malformed(e.to_string())))?;
    let json: KeyJson = serde_json::from_str(&text)
        .map_err(|e| fail(path, KeyProblem::Malformed(e.to_string())))?;
    if json.key_type != KEY_TYPE {
        return Err(fail(path, KeyProblem::KeyType(json.key_type)));
    }
    let secret = decode_32(&json.secret).ok_or_else(|| {
        fail(
            path,
            KeyProblem::Malformed("secret is not 32 bytes of hex".into()),
        )
    })?;
    let public = decode_32(&json.public).ok_or_else(|| {
        fail(
            path,
            KeyProblem::Malformed("public is not 32 bytes of hex".into()),
        )
    })?;
    let key = SecretKey(secret);
    if key.public() != public {
        return Err(fail(path, KeyProblem::PublicMismatch));
    }
    Ok(key)
}

fn decode_32(text: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(text).ok()?;
    bytes.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_mode(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_written_key_reads_back_and_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node_key.json");
        let key = SecretKey::generate();
        write_key_file(&path, &key).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(read_key_file(&path).unwrap().0, key.0);
        let again = write_key_file(&path, &SecretKey::generate()).unwrap_err();
        assert!(matches!(again.problem, KeyProblem::Exists), "{again}");
        assert_eq!(read_key_file(&path).unwrap().0, key.0);
    }

    #[test]
    fn bad_key_files_are_refused_with_the_file_named() {
        let dir = tempfile::tempdir().unwrap();
        let good = SecretKey([7; 32]);
        let public = hex::encode(good.public());
        let secret = hex::encode(good.0);
        type Case = (&'static str, String, u32, fn(&KeyProblem) -> bool);
        let cases: Vec<Case> = vec![
            (
                "open.json",
                format!(r#"{{"type":"ed25519","public":"{public}","secret":"{secret}"}}"#),
                0o644,
                |p| matches!(p, KeyProblem::Permissions { mode: 0o644 }),
            ),
            ("json.json", "{not json".into(), 0o600, |p| {
                matches!(p, KeyProblem::Malformed(_))
            }),
            (
                "type.json",
                format!(r#"{{"type":"secp256k1","public":"{public}","secret":"{secret}"}}"#),
                0o600,
                |p| matches!(p, KeyProblem::KeyType(_)),
            ),
            (
                "short.json",
                format!(r#"{{"type":"ed25519","public":"{public}","secret":"abcd"}}"#),
                0o600,
                |p| matches!(p, KeyProblem::Malformed(_)),
            ),
            (
                "mismatch.json",
                format!(
                    r#"{{"type":"ed25519","public":"{}","secret":"{secret}"}}"#,
                    hex::encode([1u8; 32])
                ),
                0o600,
                |p| matches!(p, KeyProblem::PublicMismatch),
            ),
            (
                "extra.json",
                format!(r#"{{"type":"ed25519","public":"{public}","secret":"{secret}","x":1}}"#),
                0o600,
                |p| matches!(p, KeyProblem::Malformed(_)),
            ),
            ("big.json", " ".repeat(8192), 0o600, |p| {
                matches!(p, KeyProblem::TooLarge { .. })
            }),
        ];
        for (name, text, mode, expected) in cases {
            let path = dir.path().join(name);
            fs::write(&path, text).unwrap();
            set_mode(&path, mode);
            let error = read_key_file(&path).unwrap_err();
            assert!(expected(&error.problem), "{name}: {error}");
            assert!(
                error.to_string().contains(name),
                "{error} does not name the file"
            );
        }
        let missing = read_key_file(&dir.path().join("missing.json")).unwrap_err();
        assert!(matches!(missing.problem, KeyProblem::Io(_)), "{missing}");
    }
}
