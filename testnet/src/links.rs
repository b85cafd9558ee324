//! A testnet's links through the link shaper: WAN conditions on one box.
//!
//! Every overlay link gets a relay each way ([`crate::shaper::Relay`], one-way delay, jitter,
//! bandwidth cap, cut and heal), and each node dials its peers through the relays of its own
//! links instead of their real ports. The relays live in the process that made them (`up`,
//! `bench`); while they do, `<testnet home>/links.json` lists each node's peers through them,
//! so a node restarted by another command (`chaos`) dials through them too. Both ends of a link
//! list it, so either can redial it after a cut, and never around the relay.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::manifest::{Manifest, overlay};
use crate::shaper::{LinkShape, Links};

/// The file that names each node's peers through the relays, while they run.
pub const LINKS_FILE: &str = "links.json";
/// Largest links file read.
const LINKS_FILE_BYTES_MAX: u64 = 1 << 20;

/// `links.json`: the shape and, per node, its `persistent_peers` through the relays.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinksFile {
    /// The shape, as text (`delay 50ms ± 5ms, …`).
    pub shape: String,
    /// The pid of the process holding the relays; the file counts only while it lives.
    pub pid: u32,
    pub peers: Vec<Vec<String>>,
}

impl LinksFile {
    pub fn path(home: &Path) -> PathBuf {
        home.join(LINKS_FILE)
    }

    /// The live links file of the testnet at `home`, if a process holds its relays now.
    pub fn load_live(home: &Path) -> Option<LinksFile> {
        let path = Self::path(home);
        if std::fs::metadata(&path).ok()?.len() > LINKS_FILE_BYTES_MAX {
            return None;
        }
        let file: LinksFile = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
        let alive =
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(file.pid as i32), None).is_ok();
        alive.then_some(file)
    }
}

/// The relays of a shaped testnet; dropping them (or [`ShapedLinks::close`]) ends the links.
pub struct ShapedLinks {
    pub links: Links,
    pub shape: LinkShape,
    home: PathBuf,
}

/// Starts a relay each way on every overlay link of `manifest`, writes `links.json` under
/// `home`, and returns the relays.
pub fn start(manifest: &Manifest, home: &Path, shape: LinkShape) -> Result<ShapedLinks, String> {
    shape.validate().map_err(|e| e.to_string())?;
    let n = manifest.nodes.len();
    let mut links = Links::new();
    let mut peers = vec![Vec::new(); n];
    let loopback = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    for (a, neighbours) in overlay(n, manifest.degree).iter().enumerate() {
        for &b in neighbours {
            for (from, to) in [(a, b), (b, a)] {
                let target = &manifest.nodes[to];
                let relay = links
                    .spawn(from, to, loopback(0), loopback(target.p2p_port), shape)
                    .map_err(|e| format!("relay {from}->{to}: {e}"))?;
                peers[from].push(format!(
                    "/ip4/127.0.0.1/tcp/{}/p2p/{}",
                    relay.local_addr().port(),
                    target.peer_id
                ));
            }
        }
    }
    let file = LinksFile {
        shape: shape.to_string(),
        pid: std::process::id(),
        peers,
    };
    let path = LinksFile::path(home);
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&file).expect("serialises"),
    )
    .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(ShapedLinks {
        links,
        shape,
        home: home.to_owned(),
    })
}

impl ShapedLinks {
    /// Removes `links.json` and stops every relay.
    pub async fn close(mut self) {
        let _ = std::fs::remove_file(LinksFile::path(&self.home));
        std::mem::replace(&mut self.links, Links::new())
            .shutdown()
            .await;
    }
}

impl Drop for ShapedLinks {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(LinksFile::path(&self.home));
    }
}
