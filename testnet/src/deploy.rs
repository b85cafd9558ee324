//! The deployment files `weft-testnet generate` writes beside the node homes: a
//! `docker-compose.yml` and the `FROM scratch` image it builds, one systemd unit per node, a
//! Prometheus scrape config, and a short README. Each is rendered from a [`Deployment`] by a
//! pure function, so the tests read the text without Docker or systemd.
//!
//! Safe defaults for a real host: no `unsafe` RPC routes and no test switches anywhere; RPC and
//! metrics bound where the operator asked (loopback unless told otherwise); key files mode 0600
//! owned by the service user; the service runs as that user with systemd's usual hardening, or
//! in a read-only container with every capability dropped.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// The service user's uid and gid inside the image (a system-range id no distribution uses).
pub const SERVICE_UID: u32 = 10_001;
/// The service user's name, in the image and on a systemd host.
pub const SERVICE_USER: &str = "weft";
/// Where a node's home is mounted in its container.
pub const CONTAINER_HOME: &str = "/home/weft";
/// Where the binary sits in the image and on a systemd host.
pub const BINARY_PATH: &str = "/usr/local/bin/weft";
/// Where homes live on a systemd host.
pub const SYSTEMD_HOMES: &str = "/var/lib/weft";
/// Open files a node may hold (sockets, sled's files).
pub const NOFILE_LIMIT: u32 = 65_536;

/// One node as the deployment files see it (`network.json`'s entry).
pub use crate::generate::GeneratedNode as DeployedNode;

/// How Compose gives each host its name or address on the private network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ComposeAddressing {
    /// Host names: each host's first service carries its name as a network alias.
    Aliases,
    /// Addresses in one private subnet: each host's first service takes its address.
    Static { subnet: String },
}

/// Everything the deployment files are made from.
#[derive(Clone, Debug)]
pub struct Deployment {
    pub chain_id: String,
    pub genesis_hash: String,
    pub nodes: Vec<DeployedNode>,
    /// `None` when the hosts cannot be reproduced on one Compose network (mixed names and
    /// addresses, or public addresses).
    pub compose: Option<ComposeAddressing>,
    /// The image tag Compose builds and runs.
    pub image: String,
}

impl Deployment {
    /// The Compose project name: the chain id, lower-cased, as Compose wants it.
    pub fn project(&self) -> String {
        self.chain_id
            .chars()
            .map(|c| match c {
                'a'..='z' | '0'..='9' | '-' | '_' => c,
                'A'..='Z' => c.to_ascii_lowercase(),
                _ => '-',
            })
            .collect()
    }

    /// The first node of each host: the one whose container owns the host's network.
    fn host_owner(&self, host_index: usize) -> &DeployedNode {
        self.nodes
            .iter()
            .find(|n| n.host_index == host_index)
            .expect("every host has a node")
    }
}

/// How Compose can reproduce `hosts` on one private network, if it can.
pub fn compose_addressing(hosts: &[String]) -> Option<ComposeAddressing> {
    let addresses: Vec<Option<Ipv4Addr>> = hosts.iter().map(|h| h.parse().ok()).collect();
    if addresses.iter().all(Option::is_none) {
        return Some(ComposeAddressing::Aliases);
    }
    let addresses: Vec<Ipv4Addr> = addresses.into_iter().collect::<Option<_>>()?;
    if !addresses.iter().all(Ipv4Addr::is_private) {
        return None;
    }
    let first = addresses[0].octets();
    let same = |n: usize| addresses.iter().all(|a| a.octets()[..n] == first[..n]);
    let subnet = if same(3) {
        format!("{}.{}.{}.0/24", first[0], first[1], first[2])
    } else if same(2) {
        format!("{}.{}.0.0/16", first[0], first[1])
    } else {
        return None;
    };
    Some(ComposeAddressing::Static { subnet })
}

/// `image/Dockerfile`: the staged root file system (`rootfs/`: the binary, the shared
/// libraries it loads, `/etc/passwd`) on nothing, so no base image is pulled.
pub fn dockerfile() -> String {
    format!(
        "# Built from the local weft binary; no base image is pulled (`FROM scratch`).\n\
         # rootfs/ holds the binary, the shared libraries it loads, and the service user.\n\
         FROM scratch\n\
         COPY rootfs/ /\n\
         USER {SERVICE_UID}:{SERVICE_UID}\n\
         WORKDIR {CONTAINER_HOME}\n\
         EXPOSE 26656 26657 26660\n\
         ENTRYPOINT [\"{BINARY_PATH}\"]\n\
         CMD [\"start\", \"--home\", \"{CONTAINER_HOME}\"]\n"
    )
}

/// `docker-compose.yml`: one service per node on a private network, its home as a volume, a
/// healthcheck, a restart policy, and its RPC published on the host's loopback only.
pub fn compose_file(deployment: &Deployment) -> Option<String> {
    let addressing = deployment.compose.as_ref()?;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "# Weft network {} (genesis {}): one service per node.\n\
         # Build the image and start: docker-compose up -d --build   (or: docker compose …)\n\
         # Each node's RPC is published on 127.0.0.1 only; p2p and metrics stay on the private\n\
         # network. Homes are bind-mounted from ./nodes and must be owned by uid {SERVICE_UID}.\n\
         # Open files follow the Docker daemon's limit; add `ulimits: {{nofile: {NOFILE_LIMIT}}}`\n\
         # to a service where the host lets containers raise it.\n\
         version: \"3.8\"\n\
         services:",
        deployment.chain_id, deployment.genesis_hash
    );
    for node in &deployment.nodes {
        compose_service(&mut text, deployment, addressing, node);
    }
    let _ = writeln!(text, "networks:\n  weft:\n    driver: bridge");
    if let ComposeAddressing::Static { subnet } = addressing {
        let _ = writeln!(
            text,
            "    ipam:\n      config:\n        - subnet: \"{subnet}\""
        );
    }
    Some(text)
}

fn compose_service(
    text: &mut String,
    deployment: &Deployment,
    addressing: &ComposeAddressing,
    node: &DeployedNode,
) {
    let owner = deployment.host_owner(node.host_index);
    let _ = writeln!(
        text,
        "  {name}:\n    image: \"{image}\"\n    build:\n      context: ./image\n    \
         user: \"{SERVICE_UID}:{SERVICE_UID}\"\n    \
         command: [\"start\", \"--home\", \"{CONTAINER_HOME}\", \"--rpc-laddr\", \"0.0.0.0:{rpc}\", \
         \"--metrics-laddr\", \"0.0.0.0:{metrics}\"]\n    \
         volumes:\n      - \"./{home}:{CONTAINER_HOME}\"\n    \
         restart: unless-stopped\n    stop_grace_period: 30s\n    read_only: true\n    \
         cap_drop: [\"ALL\"]\n    security_opt: [\"no-new-privileges:true\"]\n    \
         healthcheck:\n      test: [\"CMD\", \"{BINARY_PATH}\", \"status\", \"--rpc\", \
         \"http://127.0.0.1:{rpc}\"]\n      interval: 5s\n      timeout: 4s\n      retries: 5\n      \
         start_period: 10s",
        name = node.name,
        image = deployment.image,
        rpc = node.rpc_port,
        metrics = node.metrics_port,
        home = node.home.display(),
    );
    if owner.name != node.name {
        // Nodes on one host share its network stack, as processes on one machine do.
        let _ = writeln!(text, "    network_mode: \"service:{}\"", owner.name);
        return;
    }
    let _ = writeln!(text, "    hostname: \"{}\"", node.name);
    let _ = writeln!(text, "    ports:");
    for guest in deployment
        .nodes
        .iter()
        .filter(|n| n.host_index == node.host_index)
    {
        let _ = writeln!(
            text,
            "      - \"127.0.0.1:{}:{}\"",
            guest.compose_rpc_port, guest.rpc_port
        );
    }
    let _ = writeln!(text, "    networks:\n      weft:");
    match addressing {
        ComposeAddressing::Aliases => {
            let _ = writeln!(text, "        aliases: [\"{}\"]", node.host);
        }
        ComposeAddressing::Static { .. } => {
            let _ = writeln!(text, "        ipv4_address: \"{}\"", node.host);
        }
    }
}

/// `systemd/weft-<name>.service`: restart on failure, a dedicated user, the file limit, and
/// the usual hardening; the home is the one writable path.
pub fn systemd_unit(deployment: &Deployment, node: &DeployedNode) -> String {
    let home = format!("{SYSTEMD_HOMES}/{}", node.name);
    format!(
        "# Weft node {name} of network {chain} (genesis {hash}).\n\
         # Install: see README.md (the home goes to {home}, owned by {SERVICE_USER}).\n\
         [Unit]\n\
         Description=Weft node {name} ({chain})\n\
         Documentation=file://{home}/README.md\n\
         After=network-online.target\n\
         Wants=network-online.target\n\
         \n\
         [Service]\n\
         Type=simple\n\
         User={SERVICE_USER}\n\
         Group={SERVICE_USER}\n\
         ExecStart={BINARY_PATH} start --home {home}\n\
         Restart=on-failure\n\
         RestartSec=5s\n\
         KillSignal=SIGTERM\n\
         TimeoutStopSec=30s\n\
         LimitNOFILE={NOFILE_LIMIT}\n\
         UMask=0077\n\
         NoNewPrivileges=yes\n\
         CapabilityBoundingSet=\n\
         AmbientCapabilities=\n\
         ProtectSystem=strict\n\
         ProtectHome=yes\n\
         ReadWritePaths={home}\n\
         PrivateTmp=yes\n\
         PrivateDevices=yes\n\
         ProtectKernelTunables=yes\n\
         ProtectKernelModules=yes\n\
         ProtectKernelLogs=yes\n\
         ProtectControlGroups=yes\n\
         ProtectClock=yes\n\
         ProtectHostname=yes\n\
         RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX\n\
         RestrictNamespaces=yes\n\
         RestrictRealtime=yes\n\
         RestrictSUIDSGID=yes\n\
         LockPersonality=yes\n\
         MemoryDenyWriteExecute=yes\n\
         SystemCallArchitectures=native\n\
         SystemCallFilter=@system-service\n\
         SystemCallErrorNumber=EPERM\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        name = node.name,
        chain = deployment.chain_id,
        hash = deployment.genesis_hash,
    )
}

/// `prometheus/prometheus.yml`: every node's metrics endpoint, labelled by node and chain.
pub fn prometheus_config(deployment: &Deployment) -> String {
    let mut text = format!(
        "# Scrapes every node of network {chain}. Metrics listen where each node's\n\
         # metrics.laddr says (loopback unless generated with --metrics-bind): bind them where\n\
         # this Prometheus can reach them. Under the generated docker-compose.yml they listen\n\
         # on the private network, so a Prometheus joined to it scrapes these targets as they are.\n\
         global:\n  scrape_interval: 5s\n  evaluation_interval: 5s\n\
         scrape_configs:\n  - job_name: weft\n    metrics_path: /metrics\n    static_configs:\n",
        chain = deployment.chain_id
    );
    for node in &deployment.nodes {
        let _ = writeln!(
            text,
            "      - targets: [\"{}:{}\"]\n        labels: {{ node: \"{}\", chain_id: \"{}\" }}",
            node.host, node.metrics_port, node.name, deployment.chain_id
        );
    }
    text
}

/// The generated folder's README: what is here, and how to deploy it either way.
pub fn readme(deployment: &Deployment, compose_note: &str) -> String {
    let mut table = String::new();
    for node in &deployment.nodes {
        let _ = writeln!(
            table,
            "| {} | {} | {} | {} | {} |",
            node.name, node.host, node.p2p_port, node.rpc_port, node.metrics_port
        );
    }
    let chain = &deployment.chain_id;
    let hash = &deployment.genesis_hash;
    format!(
        "# Weft network `{chain}`\n\n\
         Genesis hash: `{hash}` (every operator checks it: `weft genesis hash --home <home>`).\n\n\
         | node | host | p2p | RPC | metrics |\n|---|---|---|---|---|\n{table}\n\
         ## What is here\n\n\
         - `nodes/<node>/`: one home per node: `config/config.toml` (peers by host, p2p on every\n  \
           interface, RPC and metrics where asked, no unsafe routes), `config/genesis.json`, and\n  \
           that node's own keys (mode 0600) and nothing of any other node's.\n\
         - `genesis.json`: the coordinator's copy; `cards/`: each node's public card (what its\n  \
           operator sent the coordinator: `weft keys show --home <home> --json`).\n\
         - `docker-compose.yml` and `image/`: one service per node, built `FROM scratch` from the\n  \
           local binary (no image is pulled).\n\
         - `systemd/weft-<node>.service`: one unit per node.\n\
         - `prometheus/prometheus.yml`: a scrape config for every node's metrics.\n\
         - `network.json`: the same table, for tools.\n\n\
         ## Docker Compose (all nodes on one Docker host)\n\n\
         {compose_note}\n\
         ```sh\n\
         sudo chown -R {SERVICE_UID}:{SERVICE_UID} nodes   # the containers run as uid {SERVICE_UID}\n\
         docker-compose up -d --build      # or: docker compose up -d --build\n\
         docker-compose ps                 # each service turns healthy once its RPC answers\n\
         curl -s 127.0.0.1:<published RPC port>/ -d '{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"status\"}}'\n\
         docker-compose down               # the homes (chain data) stay in ./nodes\n\
         ```\n\n\
         ## systemd (one host per node)\n\n\
         On each host, with that host's node only (copy nothing of the others):\n\n\
         ```sh\n\
         sudo useradd --system --home-dir {SYSTEMD_HOMES} --shell /usr/sbin/nologin {SERVICE_USER}\n\
         sudo install -m 0755 weft {BINARY_PATH}\n\
         sudo install -d -m 0700 -o {SERVICE_USER} -g {SERVICE_USER} {SYSTEMD_HOMES}\n\
         sudo cp -r nodes/<node> {SYSTEMD_HOMES}/<node>\n\
         sudo chown -R {SERVICE_USER}:{SERVICE_USER} {SYSTEMD_HOMES}/<node>\n\
         sudo install -m 0644 systemd/weft-<node>.service /etc/systemd/system/\n\
         sudo systemctl daemon-reload && sudo systemctl enable --now weft-<node>\n\
         journalctl -u weft-<node> -f\n\
         ```\n\n\
         Open the p2p port to the other hosts; keep RPC and metrics off the internet.\n"
    )
}

/// The shared libraries `binary` loads, as `ldd` lists them (none for a static binary).
pub fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>, String> {
    let output = std::process::Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|e| format!("running ldd on {}: {e}", binary.display()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        // A static binary: "not a dynamic executable".
        return Ok(Vec::new());
    }
    Ok(parse_ldd(&text))
}

/// The absolute paths in `ldd`'s output (`name => /path (addr)` or `/path (addr)`).
pub fn parse_ldd(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.trim(),
                None => line,
            };
            let path = path.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, host: &str, host_index: usize, offset: u16) -> DeployedNode {
        DeployedNode {
            name: name.into(),
            host: host.into(),
            host_index,
            home: PathBuf::from(format!("nodes/{name}")),
            p2p_port: 26656 + offset,
            rpc_port: 26657 + offset,
            metrics_port: 26660 + offset,
            compose_rpc_port: 30000 + offset,
            peer_id: String::new(),
            pub_key: String::new(),
        }
    }

    fn deployment(compose: ComposeAddressing) -> Deployment {
        Deployment {
            chain_id: "Weft.Net-1".into(),
            genesis_hash: "ab".repeat(32),
            nodes: vec![
                node("node0", "val-a", 0, 0),
                node("node1", "val-a", 0, 10),
                node("node2", "val-b", 1, 0),
            ],
            compose: Some(compose),
            image: "weft:local".into(),
        }
    }

    #[test]
    fn compose_addressing_follows_the_hosts() {
        let hosts = |list: &[&str]| list.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>();
        let cases: [(&[&str], Option<ComposeAddressing>); 6] = [
            (&["a", "b.example"], Some(ComposeAddressing::Aliases)),
            (
                &["10.1.2.3", "10.1.2.4"],
                Some(ComposeAddressing::Static {
                    subnet: "10.1.2.0/24".into(),
                }),
            ),
            (
                &["172.20.1.3", "172.20.9.4"],
                Some(ComposeAddressing::Static {
                    subnet: "172.20.0.0/16".into(),
                }),
            ),
            (&["10.1.2.3", "10.9.2.3"], None),
            (&["8.8.8.8", "8.8.8.9"], None),
            (&["10.1.2.3", "name"], None),
        ];
        for (list, expected) in cases {
            assert_eq!(compose_addressing(&hosts(list)), expected, "{list:?}");
        }
    }

    #[test]
    fn compose_services_share_their_host_network_and_publish_on_loopback() {
        let text = compose_file(&deployment(ComposeAddressing::Aliases)).unwrap();
        for part in [
            "  node0:",
            "  node1:",
            "  node2:",
            "network_mode: \"service:node0\"",
            "aliases: [\"val-a\"]",
            "aliases: [\"val-b\"]",
            "\"127.0.0.1:30000:26657\"",
            "\"127.0.0.1:30010:26667\"",
            "restart: unless-stopped",
            "healthcheck:",
            "read_only: true",
            "cap_drop: [\"ALL\"]",
            "\"./nodes/node1:/home/weft\"",
        ] {
            assert!(text.contains(part), "{part} missing:\n{text}");
        }
        assert!(!text.contains("unsafe"), "{text}");
        assert_eq!(text.matches("network_mode").count(), 1);
        let fixed = compose_file(&deployment(ComposeAddressing::Static {
            subnet: "10.0.0.0/24".into(),
        }))
        .unwrap();
        assert!(fixed.contains("subnet: \"10.0.0.0/24\""), "{fixed}");
        assert!(fixed.contains("ipv4_address: \"val-a\""), "{fixed}");
        let none = Deployment {
            compose: None,
            ..deployment(ComposeAddressing::Aliases)
        };
        assert!(compose_file(&none).is_none());
        assert_eq!(none.project(), "weft-net-1");
    }

    #[test]
    fn units_run_as_the_service_user_with_hardening() {
        let d = deployment(ComposeAddressing::Aliases);
        let unit = systemd_unit(&d, &d.nodes[2]);
        for line in [
            "User=weft",
            "Restart=on-failure",
            "LimitNOFILE=65536",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ReadWritePaths=/var/lib/weft/node2",
            "ExecStart=/usr/local/bin/weft start --home /var/lib/weft/node2",
            "WantedBy=multi-user.target",
        ] {
            assert!(unit.lines().any(|l| l == line), "{line} missing:\n{unit}");
        }
        let prometheus = prometheus_config(&d);
        assert!(
            prometheus.contains("targets: [\"val-b:26660\"]"),
            "{prometheus}"
        );
        assert_eq!(prometheus.matches("targets:").count(), 3);
        let readme = readme(&d, "");
        assert!(
            readme.contains("| node1 | val-a | 26666 | 26667 | 26670 |"),
            "{readme}"
        );
        assert!(dockerfile().starts_with("# Built") && dockerfile().contains("FROM scratch\n"));
    }

    /// systemd itself reads the unit, where `systemd-analyze` is installed: no unknown or
    /// malformed directive, and the hardening rates "OK" on its exposure scale.
    #[test]
    fn systemd_accepts_the_units() {
        let analyze = |args: &[&str]| {
            std::process::Command::new("systemd-analyze")
                .args(args)
                .output()
        };
        if analyze(&["--version"]).is_err() {
            eprintln!("SKIPPED systemd_accepts_the_units: no systemd-analyze on this machine");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = deployment(ComposeAddressing::Aliases);
        // The unit names the installed binary; verify checks that it exists, so point it at
        // one that does.
        let unit = systemd_unit(&d, &d.nodes[0]).replace(BINARY_PATH, "/bin/true");
        let path = dir.path().join("weft-node0.service");
        std::fs::write(&path, unit).unwrap();
        let path = path.to_str().unwrap();
        let verify = analyze(&["verify", path]).unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&verify.stdout),
            String::from_utf8_lossy(&verify.stderr)
        );
        assert!(verify.status.success() && said.trim().is_empty(), "{said}");
        let security = analyze(&["security", "--offline=true", path]).unwrap();
        let report = String::from_utf8_lossy(&security.stdout);
        let level = report
            .lines()
            .find_map(|l| l.split("exposure level for weft-node0.service: ").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no exposure level in:\n{report}"));
        assert!(level <= 2.0, "exposure {level}:\n{report}");
    }

    #[test]
    fn ldd_output_is_read_for_paths() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            parse_ldd(text),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
        assert!(parse_ldd("\tnot a dynamic executable\n").is_empty());
    }
}
