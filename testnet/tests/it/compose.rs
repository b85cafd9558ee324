//! Docker Compose: the network `weft-testnet generate` writes for named hosts, its
//! `FROM scratch` image built from the local binary, brought up with Compose on the private
//! network it declares. Transfers over the RPC ports Compose publishes on 127.0.0.1; then
//! `kill`, `pause` and `docker network disconnect` as faults, each healed; then agreement,
//! exactly-once and no acknowledged tx lost. Everything it made (containers, network, image)
//! is removed, also when it fails. Where no Docker daemon answers, it says so and skips.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use weft_testnet::generate::{GeneratedNetwork, Reach};
use weft_testnet::process::Launcher;

use crate::support::{
    assert_each_home_holds_only_its_own_secrets, clients, fault_and_heal, generate, network_lock,
    run, run_and_judge, start_load, wait_all_at,
};

const NODES: usize = 4;

/// `docker compose` (v2) or `docker-compose` (v1), whichever answers.
fn compose_program() -> Option<Vec<String>> {
    let candidates = [vec!["docker", "compose"], vec!["docker-compose"]];
    candidates.into_iter().find_map(|argv| {
        let ok = Command::new(argv[0])
            .args(&argv[1..])
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success());
        ok.then(|| argv.into_iter().map(str::to_owned).collect())
    })
}

/// Why Docker cannot be used here, if it cannot.
fn docker_unavailable() -> Option<String> {
    match Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
    {
        Err(e) => Some(format!("no docker client ({e})")),
        Ok(o) if !o.status.success() => Some(format!(
            "no Docker daemon reachable: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Ok(_) => None,
    }
}

/// A Compose project this test brought up; `down` (containers, network, volumes) and the
/// image removed on drop.
struct Project {
    compose: Vec<String>,
    dir: PathBuf,
    name: String,
    image: String,
}

impl Project {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.compose[0]);
        command
            .args(&self.compose[1..])
            .current_dir(&self.dir)
            .args(["-p", &self.name])
            .args(args);
        command
    }

    fn run(&self, args: &[&str]) {
        run(&mut self.command(args)).unwrap_or_else(|e| panic!("{e}"));
    }

    fn container(&self, service: &str) -> String {
        let output = run(&mut self.command(&["ps", "-q", service])).unwrap();
        let id = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        assert!(!id.is_empty(), "no container for {service}");
        id
    }

    fn network(&self) -> String {
        format!("{}_weft", self.name)
    }

    fn health(&self, service: &str) -> String {
        let id = self.container(service);
        let output =
            run(Command::new("docker").args(["inspect", "-f", "{{.State.Health.Status}}", &id]))
                .unwrap();
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// The last lines each node logged, without gossipsub's warnings about a peer it cannot
    /// reach (a fault makes thousands).
    fn logs(&self) -> String {
        let all = self
            .command(&["logs", "--no-color"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let kept: Vec<&str> = all
            .lines()
            .filter(|line| !line.contains("libp2p_gossipsub"))
            .collect();
        kept[kept.len().saturating_sub(150)..].join("\n")
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = self
            .command(&["down", "-v", "--remove-orphans", "-t", "5"])
            .output();
        let _ = Command::new("docker")
            .args(["rmi", "-f", &self.image])
            .output();
    }
}

/// A base for the published RPC ports whose `NODES` ports are free now.
fn free_rpc_base() -> u16 {
    for attempt in 0..200u32 {
        let base = 42_000 + ((std::process::id() + attempt * 97) % 2_000) as u16 * 10 % 20_000;
        let free =
            (0..NODES as u16).all(|k| TcpListener::bind(("127.0.0.1", base + 10 * k)).is_ok());
        if free {
            return base;
        }
    }
    panic!("no free port range");
}

fn generate_for_compose(out: &Path, tag: &str) -> GeneratedNetwork {
    let base = free_rpc_base().to_string();
    let chain = format!("weft-compose-{tag}");
    let image = format!("weft-test-{tag}:local");
    let mut args = vec![
        "--hosts",
        "val-a,val-b,val-c,val-d",
        "--chain-id",
        &chain,
        "--timeouts",
        "fast",
        "--load-accounts",
        "300",
        "--compose-rpc-base",
        &base,
        "--image",
        &image,
    ];
    // A debug binary is hundreds of MB; its debug sections need not go into the image.
    if Command::new("strip").arg("--version").output().is_ok() {
        args.push("--strip-debug");
    }
    generate(out, &args)
}

#[test]
fn a_generated_compose_network_agrees_through_kill_pause_and_disconnect() {
    let _one_network = network_lock();
    if let Some(reason) = docker_unavailable() {
        eprintln!(
            "SKIPPED a_generated_compose_network_agrees_through_kill_pause_and_disconnect: {reason}"
        );
        return;
    }
    let Some(compose) = compose_program() else {
        eprintln!(
            "SKIPPED a_generated_compose_network_agrees_through_kill_pause_and_disconnect: no docker compose or docker-compose"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("network");
    let tag = format!("{}", std::process::id());
    let network = generate_for_compose(&out, &tag);
    assert_each_home_holds_only_its_own_secrets(&out, &network);
    let compose_text = std::fs::read_to_string(out.join("docker-compose.yml")).unwrap();
    let project = Project {
        compose,
        dir: out.clone(),
        name: network.project.clone(),
        image: format!("weft-test-{tag}:local"),
    };
    assert!(compose_text.contains(&project.image), "{compose_text}");
    project.run(&["up", "-d", "--build"]);

    let launcher = Launcher::resolve(None).unwrap();
    let manifest = network.manifest(&out, Reach::ComposePublished, &launcher);
    let clients = clients(&manifest);
    let all: Vec<usize> = (0..NODES).collect();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (report, heights) = run_and_judge(&runtime, || project.logs(), async {
        wait_all_at(&clients, &all, 2, "start").await;
        let load = start_load(&manifest, 100);
        load.wait_committed(0, 100, "before the faults").await;
        let kill = "node3";
        fault_and_heal(
            &clients,
            &load,
            3,
            "docker compose kill",
            || project.run(&["kill", kill]),
            || project.run(&["start", kill]),
        )
        .await;
        fault_and_heal(
            &clients,
            &load,
            2,
            "docker compose pause",
            || project.run(&["pause", "node2"]),
            || project.run(&["unpause", "node2"]),
        )
        .await;
        let container = project.container("node1");
        let net = project.network();
        fault_and_heal(
            &clients,
            &load,
            1,
            "docker network disconnect",
            || {
                run(Command::new("docker").args(["network", "disconnect", &net, &container]))
                    .unwrap();
            },
            || {
                // Back with its host name, as the other nodes know it.
                run(Command::new("docker")
                    .args(["network", "connect", "--alias", "val-b", &net, &container]))
                .unwrap();
            },
        )
        .await;
        load.finish_and_check(&clients).await
    });
    // Every service's healthcheck (`weft status` inside the container) passes again.
    for service in ["node0", "node1", "node2", "node3"] {
        let until = std::time::Instant::now() + crate::support::DEADLINE;
        while project.health(service) != "healthy" {
            assert!(
                std::time::Instant::now() < until,
                "{service} is {}",
                project.health(service)
            );
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
    }
    eprintln!(
        "checked {heights} heights in {NODES} containers and {} committed txs",
        report.committed
    );
}
