//! `weft-testnet generate`: a network for real hosts, made the way the genesis ceremony makes
//! one ([`crate::ceremony`]): per node a home of its own (its keys only; peers named by the
//! hosts given; p2p on every interface; RPC and metrics where asked), the coordinator's genesis
//! and the public cards, and the files to deploy it ([`crate::deploy`]): a Compose file with its
//! `FROM scratch` image, systemd units, a Prometheus config and a README. `network.json` lists
//! the nodes for tools and tests.

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use weft_genesis::ConsensusParams;
use weft_node::ceremony::check_host_name;

use crate::ceremony::{self, GenesisPlan, Member};
use crate::deploy::{self, ComposeAddressing, Deployment};
use crate::manifest::{
    LOAD_ACCOUNTS_MAX, LOAD_BALANCE, Manifest, NodeEntry, PORT_STRIDE, USER_BALANCE, load_key,
};
use crate::process::Launcher;

/// `network.json` in the output folder.
pub const NETWORK_FILE: &str = "network.json";
/// Most hosts, and most validators on one host.
pub const HOSTS_MAX: usize = 64;
pub const VALIDATORS_PER_HOST_MAX: usize = 16;
/// Up to this many nodes, each lists every other as a persistent peer; above it, an overlay.
pub const FULL_MESH_MAX: usize = 16;
/// The overlay degree of larger networks.
pub const OVERLAY_DEGREE: usize = 6;
/// Largest hosts file read.
const HOSTS_FILE_BYTES_MAX: u64 = 64 * 1024;

/// Where a node's RPC or metrics listen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bind {
    /// 127.0.0.1: only the host itself (the default).
    Loopback,
    /// The node's own host address (hosts given as addresses only).
    Host,
    /// An address, e.g. `0.0.0.0`.
    Ip(IpAddr),
}

impl std::str::FromStr for Bind {
    type Err = String;
    fn from_str(text: &str) -> Result<Bind, String> {
        match text {
            "loopback" => Ok(Bind::Loopback),
            "host" => Ok(Bind::Host),
            _ => text
                .parse()
                .map(Bind::Ip)
                .map_err(|_| format!("{text:?} is not `loopback`, `host` or an IP address")),
        }
    }
}

pub struct GenerateArgs {
    pub out: PathBuf,
    pub hosts: Vec<String>,
    pub validators_per_host: usize,
    pub chain_id: String,
    pub p2p_port: u16,
    pub rpc_port: u16,
    pub metrics_port: u16,
    pub rpc_bind: Bind,
    pub metrics_bind: Bind,
    /// `default` (CometBFT's) or `fast`.
    pub timeouts: String,
    /// Funded load accounts (keys derived from their index, as `up`'s).
    pub load_accounts: usize,
    /// The host port base for Compose's published RPC ports (node k: base + 10·k).
    pub compose_rpc_base: u16,
    pub weft_bin: Option<PathBuf>,
    pub image: String,
    /// Strip debug sections from the staged binary (a smaller image).
    pub strip_debug: bool,
    /// Write the Dockerfile but stage no binary (for hosts that run systemd only).
    pub no_image: bool,
}

/// `network.json`: the nodes, for tools and tests.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratedNetwork {
    pub chain_id: String,
    pub genesis_hash: String,
    pub load_accounts: usize,
    /// The Compose project name.
    pub project: String,
    pub nodes: Vec<GeneratedNode>,
}

/// One node: where it runs, its ports, and its public identity.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratedNode {
    pub name: String,
    pub host: String,
    pub host_index: usize,
    /// Relative to the output folder.
    pub home: PathBuf,
    pub p2p_port: u16,
    pub rpc_port: u16,
    pub metrics_port: u16,
    pub compose_rpc_port: u16,
    pub peer_id: String,
    pub pub_key: String,
}

/// How a tool on the machine that generated the network reaches each node's RPC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// At its host, on its RPC port (RPC bound to the host's address).
    Hosts,
    /// At 127.0.0.1, on the port Compose publishes.
    ComposePublished,
}

impl GeneratedNetwork {
    pub fn load(out: &Path) -> Result<GeneratedNetwork, String> {
        let path = out.join(NETWORK_FILE);
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// A testnet manifest over this network, so that `load`, `status` and the chaos checks
    /// run against it as they do against a local testnet.
    pub fn manifest(&self, out: &Path, reach: Reach, launcher: &Launcher) -> Manifest {
        let nodes = self
            .nodes
            .iter()
            .map(|node| {
                let (host, rpc_port) = match reach {
                    Reach::Hosts => (node.host.clone(), node.rpc_port),
                    Reach::ComposePublished => ("127.0.0.1".to_owned(), node.compose_rpc_port),
                };
                NodeEntry {
                    name: node.name.clone(),
                    home: out.join(&node.home),
                    host,
                    p2p_port: node.p2p_port,
                    rpc_port,
                    metrics_port: node.metrics_port,
                    peer_id: node.peer_id.clone(),
                }
            })
            .collect();
        Manifest {
            chain_id: self.chain_id.clone(),
            weft_bin: launcher.program.clone(),
            weft_prefix: launcher.prefix.clone(),
            load_accounts: self.load_accounts,
            gossip: "semantic".into(),
            degree: self.nodes.len().saturating_sub(1),
            timeouts: "default".into(),
            nodes,
        }
    }
}

/// Reads a hosts file: one host per line; blank lines and `#` comments skipped.
pub fn read_hosts_file(path: &Path) -> Result<Vec<String>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.len() > HOSTS_FILE_BYTES_MAX {
        return Err(format!(
            "{}: over the {HOSTS_FILE_BYTES_MAX}-byte cap",
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(text
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default().trim())
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect())
}

impl GenerateArgs {
    fn validate(&self) -> Result<(), String> {
        if self.hosts.is_empty() || self.hosts.len() > HOSTS_MAX {
            return Err(format!("{} hosts; give 1 to {HOSTS_MAX}", self.hosts.len()));
        }
        for (i, host) in self.hosts.iter().enumerate() {
            if host.parse::<IpAddr>().is_err() {
                check_host_name(host).map_err(|reason| format!("host {host:?}: {reason}"))?;
            }
            if self.hosts[..i].contains(host) {
                return Err(format!("host {host:?} is listed twice"));
            }
        }
        if !(1..=VALIDATORS_PER_HOST_MAX).contains(&self.validators_per_host) {
            return Err(format!(
                "--validators-per-host {}: 1 to {VALIDATORS_PER_HOST_MAX}",
                self.validators_per_host
            ));
        }
        if self.load_accounts > LOAD_ACCOUNTS_MAX {
            return Err(format!("--load-accounts: at most {LOAD_ACCOUNTS_MAX}"));
        }
        let span = u32::from(PORT_STRIDE) * self.validators_per_host as u32;
        let nodes = (self.hosts.len() * self.validators_per_host) as u32;
        let ports = [
            ("--p2p-port", self.p2p_port, span),
            ("--rpc-port", self.rpc_port, span),
            ("--metrics-port", self.metrics_port, span),
            (
                "--compose-rpc-base",
                self.compose_rpc_base,
                u32::from(PORT_STRIDE) * nodes,
            ),
        ];
        for (flag, port, span) in ports {
            if port < 1024 || u32::from(port) + span > u32::from(u16::MAX) {
                return Err(format!("{flag} {port}: its ports must lie in 1024..=65535"));
            }
        }
        if (self.rpc_bind == Bind::Host || self.metrics_bind == Bind::Host)
            && self.hosts.iter().any(|h| h.parse::<IpAddr>().is_err())
        {
            return Err("binding to `host` needs hosts given as addresses; name an IP (0.0.0.0 for every interface)".into());
        }
        if !matches!(self.timeouts.as_str(), "default" | "fast") {
            return Err(format!("--timeouts {:?}: default or fast", self.timeouts));
        }
        Ok(())
    }

    fn bind_address(&self, bind: &Bind, host: &str) -> String {
        match bind {
            Bind::Loopback => "127.0.0.1".into(),
            Bind::Host => host.to_owned(),
            Bind::Ip(ip) => ip.to_string(),
        }
    }
}

/// Writes the network into `args.out` (which must not exist, or be empty).
pub fn generate(args: &GenerateArgs) -> Result<GeneratedNetwork, String> {
    args.validate()?;
    prepare_out(&args.out)?;
    let out = std::fs::canonicalize(&args.out).map_err(|e| e.to_string())?;
    let members: Vec<Member> = args
        .hosts
        .iter()
        .flat_map(|host| (0..args.validators_per_host).map(move |slot| (host, slot)))
        .enumerate()
        .map(|(k, (host, slot))| Member {
            name: format!("node{k}"),
            home: out.join("nodes").join(format!("node{k}")),
            host: host.clone(),
            p2p_port: args.p2p_port + PORT_STRIDE * slot as u16,
            accounts: 1,
            validator: true,
        })
        .collect();
    let plan = GenesisPlan {
        chain_id: &args.chain_id,
        genesis_time_ms: now_ms(),
        params: match args.timeouts.as_str() {
            "fast" => ConsensusParams::fast(),
            _ => ConsensusParams::default(),
        },
        account_balance: USER_BALANCE,
        extra_accounts: (0..args.load_accounts)
            .map(|i| (load_key(i).public(), LOAD_BALANCE))
            .collect(),
        authority: None,
    };
    let formed = ceremony::form(&members, &plan, &out.join("genesis.json"))?;
    let genesis_hash = hex::encode(formed.genesis.hash());
    let nodes: Vec<GeneratedNode> = members
        .iter()
        .zip(&formed.cards)
        .enumerate()
        .map(|(k, (member, card))| {
            let slot = (k % args.validators_per_host) as u16;
            GeneratedNode {
                name: member.name.clone(),
                host: member.host.clone(),
                host_index: k / args.validators_per_host,
                home: PathBuf::from("nodes").join(&member.name),
                p2p_port: member.p2p_port,
                rpc_port: args.rpc_port + PORT_STRIDE * slot,
                metrics_port: args.metrics_port + PORT_STRIDE * slot,
                compose_rpc_port: args.compose_rpc_base + PORT_STRIDE * k as u16,
                peer_id: card.peer_id.clone().unwrap_or_default(),
                pub_key: card.pub_key.clone(),
            }
        })
        .collect();
    configure_nodes(args, &out, &nodes, &formed.cards)?;
    write_cards(&out, &nodes, &formed.cards)?;
    let network = GeneratedNetwork {
        chain_id: args.chain_id.clone(),
        genesis_hash,
        load_accounts: args.load_accounts,
        project: String::new(),
        nodes,
    };
    let deployment = deployment(args, &network);
    let network = GeneratedNetwork {
        project: deployment.project(),
        ..network
    };
    write_deployment(args, &out, &deployment)?;
    write_file(
        &out.join(NETWORK_FILE),
        &serde_json::to_string_pretty(&network).expect("serialises"),
    )?;
    own_homes(&out, &network)?;
    Ok(network)
}

fn prepare_out(out: &Path) -> Result<(), String> {
    if out.exists() {
        let mut entries = std::fs::read_dir(out).map_err(|e| format!("{}: {e}", out.display()))?;
        if entries.next().is_some() {
            return Err(format!(
                "{} exists and is not empty; generate writes a fresh folder",
                out.display()
            ));
        }
    }
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))
}

fn configure_nodes(
    args: &GenerateArgs,
    out: &Path,
    nodes: &[GeneratedNode],
    cards: &[weft_node::ceremony::OperatorCard],
) -> Result<(), String> {
    let n = nodes.len();
    let overlay = (n > FULL_MESH_MAX).then(|| crate::manifest::overlay(n, OVERLAY_DEGREE));
    for (k, node) in nodes.iter().enumerate() {
        // Both sides list a link, so either end can (re)dial it.
        let peers: Vec<String> = (0..n)
            .filter(|&j| {
                j != k
                    && overlay
                        .as_ref()
                        .is_none_or(|o| o[k].contains(&j) || o[j].contains(&k))
            })
            .filter_map(|j| cards[j].persistent_peer.clone())
            .collect();
        let rpc = format!(
            "{}:{}",
            args.bind_address(&args.rpc_bind, &node.host),
            node.rpc_port
        );
        let metrics = format!(
            "{}:{}",
            args.bind_address(&args.metrics_bind, &node.host),
            node.metrics_port
        );
        ceremony::configure(&out.join(&node.home), |config| {
            config.p2p.listen = format!("/ip4/0.0.0.0/tcp/{}", node.p2p_port);
            config.p2p.persistent_peers = peers;
            config.rpc.laddr = rpc;
            config.rpc.unsafe_routes = false;
            config.metrics.laddr = metrics;
        })
        .map_err(|e| format!("{}: {e}", node.name))?;
    }
    Ok(())
}

fn write_cards(
    out: &Path,
    nodes: &[GeneratedNode],
    cards: &[weft_node::ceremony::OperatorCard],
) -> Result<(), String> {
    let dir = out.join("cards");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (node, card) in nodes.iter().zip(cards) {
        write_file(&dir.join(format!("{}.json", node.name)), &card.to_json())?;
    }
    Ok(())
}

fn deployment(args: &GenerateArgs, network: &GeneratedNetwork) -> Deployment {
    Deployment {
        chain_id: network.chain_id.clone(),
        genesis_hash: network.genesis_hash.clone(),
        nodes: network.nodes.clone(),
        compose: deploy::compose_addressing(&args.hosts),
        image: args.image.clone(),
    }
}

fn write_deployment(
    args: &GenerateArgs,
    out: &Path,
    deployment: &Deployment,
) -> Result<(), String> {
    let note = match (&deployment.compose, deploy::compose_file(deployment)) {
        (Some(ComposeAddressing::Aliases), Some(compose)) => {
            write_file(&out.join("docker-compose.yml"), &compose)?;
            "Each host name is a network alias of its first node's service, so the peers in \
             the configs resolve by Docker's DNS as they would on real hosts."
        }
        (Some(ComposeAddressing::Static { .. }), Some(compose)) => {
            write_file(&out.join("docker-compose.yml"), &compose)?;
            "Each host's first service takes its address on the private network, so the peers in \
             the configs are reached as on real hosts."
        }
        _ => {
            "No docker-compose.yml: the hosts are not all names, nor addresses in one private \
             /16, so one Docker network cannot reproduce them."
        }
    };
    write_file(&out.join("README.md"), &deploy::readme(deployment, note))?;
    let image = out.join("image");
    if !args.no_image {
        stage_image(args, &image)?;
    }
    write_file(&image.join("Dockerfile"), &deploy::dockerfile())?;
    for node in &deployment.nodes {
        let path = out
            .join("systemd")
            .join(format!("weft-{}.service", node.name));
        write_file(&path, &deploy::systemd_unit(deployment, node))?;
    }
    write_file(
        &out.join("prometheus").join("prometheus.yml"),
        &deploy::prometheus_config(deployment),
    )
}

/// `image/rootfs/`: the binary at [`deploy::BINARY_PATH`], each shared library it loads at its
/// own path, and `/etc/passwd` and `/etc/group` naming the service user.
fn stage_image(args: &GenerateArgs, image: &Path) -> Result<(), String> {
    let launcher = Launcher::resolve(args.weft_bin.as_deref())?;
    let rootfs = image.join("rootfs");
    let binary = rootfs.join(deploy::BINARY_PATH.trim_start_matches('/'));
    copy_file(&launcher.program, &binary)?;
    // `weft-testnet` runs as `weft` when called by that name (see main.rs), so either binary
    // serves as the image's.
    if args.strip_debug {
        let status = std::process::Command::new("strip")
            .arg("--strip-debug")
            .arg(&binary)
            .status()
            .map_err(|e| format!("running strip: {e}"))?;
        if !status.success() {
            return Err(format!("strip --strip-debug {} failed", binary.display()));
        }
    }
    for library in deploy::shared_libraries(&launcher.program)? {
        let inside = rootfs.join(library.strip_prefix("/").unwrap_or(&library));
        copy_file(&library, &inside)?;
    }
    let uid = deploy::SERVICE_UID;
    let user = deploy::SERVICE_USER;
    write_file(
        &rootfs.join("etc/passwd"),
        &format!(
            "{user}:x:{uid}:{uid}:Weft node:{}:/nonexistent\n",
            deploy::CONTAINER_HOME
        ),
    )?;
    write_file(&rootfs.join("etc/group"), &format!("{user}:x:{uid}:\n"))?;
    let home = rootfs.join(deploy::CONTAINER_HOME.trim_start_matches('/'));
    std::fs::create_dir_all(&home).map_err(|e| format!("{}: {e}", home.display()))
}

/// Hands every home to the service user when this runs as root (the containers run as that
/// uid, and key files are 0600); otherwise the README says how.
fn own_homes(out: &Path, network: &GeneratedNetwork) -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let id = Some(nix::unistd::Uid::from_raw(deploy::SERVICE_UID));
    let gid = Some(nix::unistd::Gid::from_raw(deploy::SERVICE_UID));
    for node in &network.nodes {
        chown_tree(&out.join(&node.home), id, gid)?;
    }
    Ok(())
}

fn chown_tree(
    path: &Path,
    uid: Option<nix::unistd::Uid>,
    gid: Option<nix::unistd::Gid>,
) -> Result<(), String> {
    nix::unistd::chown(path, uid, gid).map_err(|e| format!("chown {}: {e}", path.display()))?;
    if path.is_dir() {
        let entries = std::fs::read_dir(path).map_err(|e| format!("{}: {e}", path.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("{}: {e}", path.display()))?;
            chown_tree(&entry.path(), uid, gid)?;
        }
    }
    Ok(())
}

fn copy_file(from: &Path, to: &Path) -> Result<(), String> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    std::fs::copy(from, to)
        .map_err(|e| format!("copying {} to {}: {e}", from.display(), to.display()))?;
    Ok(())
}

fn write_file(path: &Path, text: &str) -> Result<(), String> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
