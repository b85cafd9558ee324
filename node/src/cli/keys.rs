//! `weft keys`: new keys, and what an operator sends the coordinator (`keys show`).

use super::*;

/// Writes a fresh key to `out`, refusing to overwrite.
pub fn keys_new(out: &Path) -> Result<SecretKey, CliError> {
    let key = SecretKey::generate();
    write_key_file(out, &key)?;
    Ok(key)
}

/// `weft keys new` and `weft keys show`: the text to print.
pub fn keys(command: KeysCommand) -> Result<String, CliError> {
    match command {
        KeysCommand::New { out } => Ok(KeySummary::new(&keys_new(&out)?, &out).to_string()),
        KeysCommand::Show {
            key: Some(path),
            json,
            host,
            port,
            ..
        } => {
            if host.is_some() || port.is_some() {
                return Err(CliError::Flag {
                    flag: "host",
                    problem: "--host and --port go with --home (a node's peer entry)".into(),
                });
            }
            let key = read_key_file(&path)?;
            if json {
                let name = path
                    .file_stem()
                    .map_or(String::new(), |s| s.to_string_lossy().into_owned());
                let card = OperatorCard::new(&name, key.public(), Some(peer_id(&key)), None);
                return Ok(format!("{}\n", card.to_json()));
            }
            Ok(KeySummary::new(&key, &path).to_string())
        }
        KeysCommand::Show {
            home: Some(home),
            host,
            port,
            json,
            ..
        } => {
            let summary = operator_summary(&Home::new(home), host.as_deref(), port)?;
            Ok(if json {
                format!("{}\n", summary.card.to_json())
            } else {
                summary.to_string()
            })
        }
        KeysCommand::Show { .. } => Err(CliError::Flag {
            flag: "key",
            problem: "pass --key FILE or --home DIR".into(),
        }),
    }
}

/// What an operator of the node in `home` sends the coordinator.
pub fn operator_summary(
    home: &Home,
    host: Option<&str>,
    port: Option<u16>,
) -> Result<OperatorSummary, CliError> {
    let config = Config::load(&home.config())?;
    let validator = read_key_file(&home.validator_key())?;
    let node_key = read_key_file(&home.node_key())?;
    let peer = peer_id(&node_key);
    let port = match port {
        Some(port) => port,
        None => listen_port(&config.p2p.listen).ok_or_else(|| CliError::Flag {
            flag: "port",
            problem: format!(
                "p2p.listen {:?} names no TCP port; pass --port",
                config.p2p.listen
            ),
        })?,
    };
    let entry = host
        .map(|host| ceremony::peer_entry(host, port, &peer))
        .transpose()?;
    Ok(OperatorSummary::new(
        &config.moniker,
        &validator,
        peer,
        entry,
        (home.validator_key(), home.node_key()),
    ))
}

pub(super) fn listen_port(listen: &str) -> Option<u16> {
    let addr: libp2p::Multiaddr = listen.parse().ok()?;
    addr.iter().find_map(|protocol| match protocol {
        libp2p::multiaddr::Protocol::Tcp(port) if port != 0 => Some(port),
        _ => None,
    })
}

/// What `keys new` and `keys show --key` print: the file, its public key and its peer id.
pub struct KeySummary {
    pub path: PathBuf,
    pub public: [u8; 32],
    pub peer_id: String,
}

impl KeySummary {
    pub(super) fn new(key: &SecretKey, path: &Path) -> Self {
        KeySummary {
            path: path.to_owned(),
            public: key.public(),
            peer_id: peer_id(key),
        }
    }
}

impl fmt::Display for KeySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "key file:   {}", self.path.display())?;
        writeln!(
            f,
            "public key: {} (account address)",
            hex::encode(self.public)
        )?;
        writeln!(f, "peer id:    {}", self.peer_id)
    }
}
