//! The genesis ceremony: how independent operators and one coordinator form a network's genesis
//! from public keys only, as CometBFT and Cosmos operators do it.
//!
//! 1. Each operator runs `weft init --home H` (keys and config, no genesis) and
//!    `weft keys show --home H --host <their host> --json`, which prints an [`OperatorCard`]:
//!    their moniker, validator public key, peer id and a ready `persistent_peers` entry. The card
//!    holds nothing secret; they send it to the coordinator.
//! 2. The coordinator runs `weft genesis new`, then `weft genesis add-validator --from <card>`
//!    for each card (and `add-account` for funded accounts), `weft genesis validate` and
//!    `weft genesis hash`, and sends the genesis file, its hash and the cards' peer entries back.
//! 3. Each operator puts the genesis in `config/genesis.json`, checks its hash with
//!    `weft genesis hash --home H`, lists the peers in `config.toml`, and starts.
//!
//! A key file with a secret in it is refused wherever a card is read: a coordinator must never
//! receive one. Every other refusal names the field at fault (see
//! [`GenesisProblem`](weft_genesis::GenesisProblem)).

use std::fmt;
use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use weft_genesis::{ConsensusParams, Genesis, GenesisError, GenesisProblem, SecretKey};

/// Largest card file read (a card is about 300 bytes).
pub const CARD_FILE_BYTES_MAX: u64 = 16 * 1024;
/// What a card's `kind` field says.
pub const CARD_KIND: &str = "weft-operator-card";
/// The longest host name a peer entry may carry (RFC 1035).
pub const HOST_NAME_BYTES_MAX: usize = 253;
/// Voting power `add-validator` gives when not told.
pub const DEFAULT_VALIDATOR_POWER: u64 = 10;

#[derive(Debug, Error)]
pub enum CeremonyError {
    #[error(
        "{}: it holds a secret key (its \"secret\" field). A coordinator must never receive one; \
         ask the operator for the output of `weft keys show --home <home> --json` instead, and \
         treat this key as exposed",
        path.display()
    )]
    SecretKeyGiven { path: PathBuf },
    #[error("card {}: {problem}", path.display())]
    Card { path: PathBuf, problem: String },
    #[error(
        "--pubkey {value:?} names a file, not 64 hex digits: pass an operator's card with --from \
         (never a key file with a secret in it)"
    )]
    PubkeyIsAFile { value: String },
    #[error("{} exists already; refusing to overwrite a genesis (remove it first)", path.display())]
    Exists { path: PathBuf },
    #[error("host {host:?}: {reason}")]
    BadHost { host: String, reason: &'static str },
    #[error("--time {time:?}: {problem}")]
    BadTime { time: String, problem: String },
    #[error(transparent)]
    Genesis(#[from] GenesisError),
}

/// What an operator sends the coordinator: public values only.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorCard {
    /// Always [`CARD_KIND`].
    pub kind: String,
    /// The operator's moniker, used as the validator's name.
    pub name: String,
    /// The validator (or account) public key, 64 hex digits.
    pub pub_key: String,
    /// The node's libp2p peer id, when the card is a node's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_id: Option<String>,
    /// A ready `p2p.persistent_peers` entry, when the operator named its host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_peer: Option<String>,
}

impl OperatorCard {
    pub fn new(
        name: &str,
        public: [u8; 32],
        peer_id: Option<String>,
        peer: Option<String>,
    ) -> Self {
        OperatorCard {
            kind: CARD_KIND.to_owned(),
            name: name.to_owned(),
            pub_key: hex::encode(public),
            peer_id,
            persistent_peer: peer,
        }
    }

    /// Reads a card, refusing a file over [`CARD_FILE_BYTES_MAX`], anything with a secret in it
    /// (a key file sent by mistake), and anything that is not a card.
    pub fn load(path: &Path) -> Result<OperatorCard, CeremonyError> {
        let card_error = |problem: String| CeremonyError::Card {
            path: path.to_owned(),
            problem,
        };
        let file = std::fs::File::open(path).map_err(|e| card_error(e.to_string()))?;
        let mut bytes = Vec::new();
        file.take(CARD_FILE_BYTES_MAX + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| card_error(e.to_string()))?;
        if bytes.len() as u64 > CARD_FILE_BYTES_MAX {
            return Err(card_error(format!(
                "over the {CARD_FILE_BYTES_MAX}-byte cap; a card is a few hundred bytes"
            )));
        }
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| card_error(format!("not JSON: {e}")))?;
        if value.get("secret").is_some() {
            return Err(CeremonyError::SecretKeyGiven {
                path: path.to_owned(),
            });
        }
        let card: OperatorCard = serde_json::from_value(value).map_err(|e| {
            card_error(format!(
                "not a card ({e}); `weft keys show --home <home> --json` prints one"
            ))
        })?;
        if card.kind != CARD_KIND {
            return Err(card_error(format!(
                "kind is {:?}, not {CARD_KIND:?}",
                card.kind
            )));
        }
        Ok(card)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a card serialises")
    }
}

/// A `persistent_peers` entry: `/ip4/…`, `/ip6/…` or `/dns4/<name>/tcp/<port>/p2p/<peer id>`.
pub fn peer_entry(host: &str, port: u16, peer_id: &str) -> Result<String, CeremonyError> {
    let address = match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => format!("/ip4/{ip}"),
        Ok(IpAddr::V6(ip)) => format!("/ip6/{ip}"),
        Err(_) => {
            check_host_name(host).map_err(|reason| CeremonyError::BadHost {
                host: host.to_owned(),
                reason,
            })?;
            format!("/dns4/{host}")
        }
    };
    Ok(format!("{address}/tcp/{port}/p2p/{peer_id}"))
}

/// A DNS name as RFC 1123 allows it: dot-separated labels of letters, digits and inner hyphens.
pub fn check_host_name(host: &str) -> Result<(), &'static str> {
    if host.is_empty() || host.len() > HOST_NAME_BYTES_MAX {
        return Err("a host name is 1 to 253 characters");
    }
    for label in host.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("each dot-separated label is 1 to 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err("only letters, digits, hyphens and dots are allowed");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a label cannot start or end with a hyphen");
        }
    }
    Ok(())
}

/// Where a validator's public key comes from on the command line.
pub enum KeySource<'a> {
    Hex(&'a str),
    Card(&'a Path),
}

/// A name and public key (hex) from `--pubkey` or `--from`, refusing a file where hex belongs.
pub fn resolve_key(
    source: KeySource<'_>,
    name: Option<&str>,
) -> Result<(String, String), CeremonyError> {
    match source {
        KeySource::Hex(value) => {
            let looks_hex = value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit());
            if !looks_hex && Path::new(value).is_file() {
                // A secret in it is named as such; anything else is the wrong flag.
                OperatorCard::load(Path::new(value))?;
                return Err(CeremonyError::PubkeyIsAFile {
                    value: value.to_owned(),
                });
            }
            Ok((name.unwrap_or_default().to_owned(), value.to_owned()))
        }
        KeySource::Card(path) => {
            let card = OperatorCard::load(path)?;
            let name = name.map_or(card.name, str::to_owned);
            Ok((name, card.pub_key))
        }
    }
}

/// `weft genesis new`: an empty draft, refused if `path` exists.
pub fn new_genesis(
    path: &Path,
    chain_id: &str,
    time: Option<&str>,
    initial_height: u64,
    consensus: ConsensusParams,
    now_ms: u64,
) -> Result<Genesis, CeremonyError> {
    if path.exists() {
        return Err(CeremonyError::Exists {
            path: path.to_owned(),
        });
    }
    let mut genesis = Genesis::draft(chain_id, now_ms, initial_height, consensus)
        .map_err(|problem| genesis_error(path, problem))?;
    if let Some(time) = time {
        genesis.genesis_time = time.to_owned();
        genesis
            .validate_draft()
            .map_err(|problem| CeremonyError::BadTime {
                time: time.to_owned(),
                problem: problem.to_string(),
            })?;
    }
    genesis.save_draft(path)?;
    Ok(genesis)
}

/// `weft genesis add-validator`: adds one validator to the draft at `path`.
pub fn add_validator(
    path: &Path,
    name: &str,
    pub_key: &str,
    power: u64,
) -> Result<Genesis, CeremonyError> {
    let mut genesis = Genesis::load_draft(path)?;
    genesis
        .add_validator(name, pub_key, power)
        .map_err(|problem| genesis_error(path, problem))?;
    genesis.save_draft(path)?;
    Ok(genesis)
}

/// `weft genesis add-account`: adds one funded account to the draft at `path`.
pub fn add_account(path: &Path, address: &str, balance: u64) -> Result<Genesis, CeremonyError> {
    let mut genesis = Genesis::load_draft(path)?;
    genesis
        .add_account(address, balance)
        .map_err(|problem| genesis_error(path, problem))?;
    genesis.save_draft(path)?;
    Ok(genesis)
}

/// Names the validator authority of the genesis at `path`.
pub fn set_authority(path: &Path, address: &str) -> Result<Genesis, CeremonyError> {
    let mut genesis = Genesis::load_draft(path)?;
    genesis
        .set_authority(address)
        .map_err(|problem| genesis_error(path, problem))?;
    genesis.save_draft(path)?;
    Ok(genesis)
}

fn genesis_error(path: &Path, problem: GenesisProblem) -> CeremonyError {
    CeremonyError::Genesis(GenesisError {
        path: path.to_owned(),
        problem,
    })
}

/// What `weft genesis show` prints: the values an operator checks before starting.
pub struct GenesisSummary<'a> {
    pub path: &'a Path,
    pub genesis: &'a Genesis,
    /// The hash, when the genesis is complete.
    pub hash: Option<[u8; 32]>,
}

impl fmt::Display for GenesisSummary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = self.genesis;
        writeln!(f, "genesis {}", self.path.display())?;
        writeln!(f, "  chain id:       {}", g.chain_id)?;
        writeln!(f, "  genesis time:   {}", g.genesis_time)?;
        writeln!(f, "  initial height: {}", g.initial_height)?;
        match self.hash {
            Some(hash) => writeln!(f, "  hash:           {}", hex::encode(hash))?,
            None => writeln!(f, "  hash:           (none yet: it has no validators)")?,
        }
        let total = g.total_power();
        writeln!(
            f,
            "  validators:     {} (total power {total})",
            g.validators.len()
        )?;
        for v in &g.validators {
            // Shares in hundredths of a percent, in integers.
            let share = u128::from(v.power) * 10_000 / u128::from(total.max(1));
            writeln!(
                f,
                "    {:<20} {} power {} ({}.{:02}%)",
                v.name,
                v.pub_key,
                v.power,
                share / 100,
                share % 100
            )?;
        }
        writeln!(
            f,
            "  accounts:       {} (total balance {})",
            g.accounts.len(),
            g.total_balance()
        )?;
        match &g.validator_authority {
            Some(authority) => writeln!(f, "  authority:      {authority} (changes the set)")?,
            None => writeln!(
                f,
                "  authority:      none (the validator set stays as it is)"
            )?,
        }
        let c = &g.consensus;
        writeln!(
            f,
            "  timeouts (ms):  propose {}+{}/round, prevote {}+{}, precommit {}+{}, commit {}",
            c.timeout_propose_ms,
            c.timeout_propose_delta_ms,
            c.timeout_prevote_ms,
            c.timeout_prevote_delta_ms,
            c.timeout_precommit_ms,
            c.timeout_precommit_delta_ms,
            c.timeout_commit_ms
        )?;
        writeln!(
            f,
            "  block limits:   {} txs, {} bytes",
            c.block_max_txs, c.block_max_bytes
        )
    }
}

/// What `weft keys show --home` prints for an operator to send.
pub struct OperatorSummary {
    pub card: OperatorCard,
    pub validator_key_path: PathBuf,
    pub node_key_path: PathBuf,
}

impl OperatorSummary {
    pub fn new(
        moniker: &str,
        validator: &SecretKey,
        peer_id: String,
        peer: Option<String>,
        paths: (PathBuf, PathBuf),
    ) -> Self {
        OperatorSummary {
            card: OperatorCard::new(moniker, validator.public(), Some(peer_id), peer),
            validator_key_path: paths.0,
            node_key_path: paths.1,
        }
    }
}

impl fmt::Display for OperatorSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let card = &self.card;
        writeln!(f, "moniker:         {}", card.name)?;
        writeln!(
            f,
            "validator key:   {} ({})",
            card.pub_key,
            self.validator_key_path.display()
        )?;
        let peer_id = card.peer_id.as_deref().unwrap_or("?");
        writeln!(
            f,
            "peer id:         {peer_id} ({})",
            self.node_key_path.display()
        )?;
        match &card.persistent_peer {
            Some(peer) => writeln!(f, "persistent peer: {peer}")?,
            None => writeln!(
                f,
                "persistent peer: (pass --host <name or address> to print it)"
            )?,
        }
        writeln!(f)?;
        writeln!(
            f,
            "Send the coordinator these public values (nothing secret; `--json` prints them as a card):"
        )?;
        writeln!(
            f,
            "  weft genesis add-validator --name {} --pubkey {} --power {DEFAULT_VALIDATOR_POWER}",
            card.name, card.pub_key
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_entries_name_addresses_and_hosts() {
        let id = "12D3KooWExample";
        let cases = [
            ("10.0.0.7", "/ip4/10.0.0.7/tcp/26656/p2p/12D3KooWExample"),
            ("::1", "/ip6/::1/tcp/26656/p2p/12D3KooWExample"),
            (
                "val-a.example.org",
                "/dns4/val-a.example.org/tcp/26656/p2p/12D3KooWExample",
            ),
            ("node0", "/dns4/node0/tcp/26656/p2p/12D3KooWExample"),
        ];
        for (host, expected) in cases {
            assert_eq!(peer_entry(host, 26656, id).unwrap(), expected);
        }
        let refused = [
            "",
            "bad host",
            "-lead.example",
            "a..b",
            "under_score",
            &"x".repeat(254),
        ];
        for host in refused {
            let error = peer_entry(host, 1, id).unwrap_err();
            assert!(
                matches!(error, CeremonyError::BadHost { .. }),
                "{host:?}: {error}"
            );
        }
    }

    #[test]
    fn cards_round_trip_and_secrets_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = SecretKey([3; 32]);
        let card = OperatorCard::new("op-1", key.public(), Some("12D3".into()), None);
        let path = dir.path().join("card.json");
        std::fs::write(&path, card.to_json()).unwrap();
        assert_eq!(OperatorCard::load(&path).unwrap(), card);

        let secret = dir.path().join("validator_key.json");
        weft_genesis::write_key_file(&secret, &key).unwrap();
        let error = OperatorCard::load(&secret).unwrap_err();
        assert!(
            matches!(error, CeremonyError::SecretKeyGiven { .. }),
            "{error}"
        );
        let error = resolve_key(KeySource::Hex(secret.to_str().unwrap()), None).unwrap_err();
        assert!(
            matches!(error, CeremonyError::SecretKeyGiven { .. }),
            "{error}"
        );
        let error = resolve_key(KeySource::Card(&secret), None).unwrap_err();
        assert!(error.to_string().contains("never receive"), "{error}");

        let error = resolve_key(KeySource::Hex(path.to_str().unwrap()), None).unwrap_err();
        assert!(
            matches!(error, CeremonyError::PubkeyIsAFile { .. }),
            "{error}"
        );
        let (name, pub_key) = resolve_key(KeySource::Card(&path), None).unwrap();
        assert_eq!(
            (name.as_str(), pub_key),
            ("op-1", hex::encode(key.public()))
        );

        let cases = [
            (
                "big.json",
                "x".repeat(CARD_FILE_BYTES_MAX as usize + 1),
                "cap",
            ),
            ("text.json", "hello".to_owned(), "not JSON"),
            (
                "other.json",
                r#"{"kind":"weft-operator-card"}"#.to_owned(),
                "not a card",
            ),
            (
                "kind.json",
                r#"{"kind":"x","name":"a","pub_key":"00"}"#.to_owned(),
                "kind is",
            ),
        ];
        for (file, text, expected) in cases {
            let path = dir.path().join(file);
            std::fs::write(&path, text).unwrap();
            let error = OperatorCard::load(&path).unwrap_err().to_string();
            assert!(error.contains(expected), "{file}: {error}");
        }
    }
}
