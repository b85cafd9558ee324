//! Hosts of their own: a 4-validator network from `weft-testnet generate`, each node in its
//! own network namespace with its own address, joined by veth pairs and a bridge this test
//! makes (and removes). Every host's p2p port is a WAN link: the link shaper's relay
//! (`weft-testnet relay`, 10 ms ± 2 ms each way) in front of its node, so each connection
//! between two hosts crosses one shaped link. Transfers over JSON-RPC; the most advanced host
//! cut off (its link down) and healed; then agreement, exactly-once and no acknowledged tx lost.

use std::process::Command;

use weft_testnet::generate::Reach;
use weft_testnet::process::Launcher;

use crate::support::{
    Nodes, TESTNET, TestHosts, assert_each_home_holds_only_its_own_secrets, clients,
    fault_and_heal, generate, network_lock, run_and_judge, start_load, wait_all_at,
};

const HOSTS: usize = 4;
/// Where each node listens behind its host's relay (its generated port plus this).
const BEHIND_RELAY: u16 = 100;

#[test]
fn four_hosts_of_their_own_agree_through_a_cut_link() {
    let _one_network = network_lock();
    let hosts = match TestHosts::create(HOSTS) {
        Ok(hosts) => hosts,
        Err(reason) => {
            eprintln!("SKIPPED four_hosts_of_their_own_agree_through_a_cut_link: {reason}");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("network");
    let list = hosts.list();
    let network = generate(
        &out,
        &[
            "--hosts",
            &list,
            "--chain-id",
            "weft-hosts",
            "--rpc-bind",
            "host",
            "--metrics-bind",
            "host",
            "--timeouts",
            "fast",
            "--load-accounts",
            "300",
            "--no-image",
        ],
    );
    assert_eq!(network.nodes.len(), HOSTS);
    assert_each_home_holds_only_its_own_secrets(&out, &network);

    let mut nodes = Nodes::default();
    for (i, node) in network.nodes.iter().enumerate() {
        let home = out.join(&node.home);
        let inner = node.p2p_port + BEHIND_RELAY;
        weft_testnet::ceremony::configure(&home, |config| {
            config.p2p.listen = format!("/ip4/127.0.0.1/tcp/{inner}");
        })
        .unwrap();
        let relay_dir = dir.path().join(format!("relay-{i}"));
        std::fs::create_dir_all(&relay_dir).unwrap();
        let mut relay: Command = hosts.command(i, TESTNET);
        relay
            .args(["relay", "--latency", "10ms", "--jitter", "2ms", "--listen"])
            .arg(format!("{}:{}", hosts.addresses[i], node.p2p_port))
            .arg("--to")
            .arg(format!("127.0.0.1:{inner}"));
        nodes.start(&format!("relay {i}"), &relay_dir, relay);
        let mut command: Command = hosts.command(i, TESTNET);
        command.args(["node", "start", "--home"]).arg(&home);
        nodes.start(&node.name, &home, command);
    }
    let launcher = Launcher {
        program: TESTNET.into(),
        prefix: vec!["node".into()],
    };
    let manifest = network.manifest(&out, Reach::Hosts, &launcher);
    let clients = clients(&manifest);
    let all: Vec<usize> = (0..HOSTS).collect();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (report, heights) = run_and_judge(&runtime, || nodes.logs(), async {
        wait_all_at(&clients, &all, 2, "start").await;
        let load = start_load(&manifest, 100);
        load.wait_committed(0, 100, "before the faults").await;
        // The most advanced host: cut off, it keeps advertising a height the others have
        // not reached, over connections that hang rather than close. (A node once waited
        // out every sync request to such a peer and stopped voting meanwhile.)
        let mut target = 0;
        for (i, client) in clients.iter().enumerate() {
            if client.height().await.unwrap_or(0) > clients[target].height().await.unwrap_or(0) {
                target = i;
            }
        }
        fault_and_heal(
            &clients,
            &load,
            target,
            "a cut link",
            || hosts.cut(target),
            || hosts.heal(target),
        )
        .await;
        load.finish_and_check(&clients).await
    });
    eprintln!(
        "checked {heights} heights on {HOSTS} hosts and {} committed txs",
        report.committed
    );
}
