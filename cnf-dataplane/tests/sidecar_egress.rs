//! Sidecar mode's TC egress (`ebpf/lib/egress.h`, `engine/egress.rs`), with real packets between two
//! namespaces: the engine runs on the "pod's" own eth0, a stateful default-deny firewall on ingress. The
//! replies of the flows the pod opens pass (and only they), through live updates, on both hooks; detaching
//! the egress program takes that away again. A port mapping (DNAT) on ingress has its replies translated back
//! on egress. The daemon's part (egress attached for a chain with `spec.target`, and again at re-adoption) is
//! in cnf-dataplane-daemon's tests/sidecar_egress.rs.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use cnf_dataplane::engine::{
    Action, ChainConfig, Engine, FirewallConfig, FirewallRule, FunctionConfig, FunctionKind, Hook,
    NatConfig, NatRule,
};
use common::{Namespaces, UDP, allow_udp_to, hook_tests};

fn chain(rules: Vec<FirewallRule>) -> ChainConfig {
    ChainConfig {
        functions: vec![FunctionConfig::new(
            "fw",
            FunctionKind::Firewall(FirewallConfig {
                rules,
                default_action: Action::Deny,
                conntrack: true,
                ..Default::default()
            }),
        )],
        ..Default::default()
    }
}

/// In `ns`: `n` datagrams from `from` to `to`, each waiting 300 ms for an answer from `to`; how many were
/// answered.
fn calls(ns: &str, from: SocketAddr, to: SocketAddr, n: usize) -> usize {
    common::udp_calls(ns, from, to, n, Duration::from_millis(300))
}

fn run(hook: Hook, tag: &str) {
    let ns = Namespaces::new(&[&format!("egc{tag}"), &format!("egp{tag}")]);
    ns.link(0, "eth0", "10.98.0.1/24", 1, "eth0", "10.98.0.2/24");
    let (client, pod) = (ns.0[0].clone(), ns.0[1].clone());
    // IPv6 too, with permanent neighbours (the default-deny chain drops neighbour discovery: no rule allows it)
    for (n, own, peer, peer_ns) in [
        (&client, "fd00:98::1/64", "fd00:98::2", &pod),
        (&pod, "fd00:98::2/64", "fd00:98::1", &client),
    ] {
        common::sh(Some(n), &["ip", "addr", "add", own, "dev", "eth0", "nodad"]);
        let (_, mac) = common::link_info(peer_ns, "eth0");
        let mac = mac.map(|b| format!("{b:02x}")).join(":");
        common::sh(
            Some(n),
            &[
                "ip",
                "neigh",
                "replace",
                peer,
                "lladdr",
                &mac,
                "dev",
                "eth0",
                "nud",
                "permanent",
            ],
        );
    }
    let addr = |s: &str| -> SocketAddr { s.parse().expect("addr") };
    let service = addr("10.98.0.1:7001");

    // the engine lives on a thread inside the pod's namespace (it attaches to the pod's eth0 by name)
    let (to_engine, commands) = std::sync::mpsc::channel::<&'static str>();
    let (to_test, answers) = std::sync::mpsc::channel::<String>();
    let pod_ns = pod.clone();
    let engine = std::thread::spawn(move || {
        common::enter(&pod_ns);
        let mut e = Engine::load(hook).expect("load");
        let applied = e
            .apply(&chain(vec![allow_udp_to(8080, 10)]))
            .expect("apply");
        let info = e.attach("eth0").expect("attach ingress");
        e.attach_egress("eth0").expect("attach egress");
        assert_eq!(e.egress_interfaces(), vec!["eth0"]);
        to_test.send(info.mode.to_string()).expect("answer");
        for cmd in commands {
            let answer = match cmd {
                "update" => {
                    // a new generation with another policy version: pod entries are not re-checked
                    e.apply(&chain(vec![allow_udp_to(8080, 10), allow_udp_to(8081, 20)]))
                        .expect("apply generation 2");
                    "ok".to_string()
                }
                "entries" => e.conntrack_entries(applied.instances[0]).to_string(),
                "detach-egress" => {
                    e.detach_egress().expect("detach egress");
                    assert!(e.egress_interfaces().is_empty());
                    "ok".to_string()
                }
                _ => {
                    e.attach_egress("eth0").expect("attach egress again");
                    e.detach().expect("detach");
                    assert!(
                        e.egress_interfaces().is_empty(),
                        "detach removes egress too"
                    );
                    "ok".to_string()
                }
            };
            to_test.send(answer).expect("answer");
        }
    });
    let ask = |cmd: &'static str| -> String {
        to_engine.send(cmd).expect("command");
        answers
            .recv_timeout(Duration::from_secs(30))
            .expect("engine answers")
    };
    let mode = answers
        .recv_timeout(Duration::from_secs(60))
        .expect("attached");
    eprintln!("{hook:?}: chain attached with {mode}, vnf_egress on TC egress");

    // control: an allowed inbound flow passes, so nothing below passes by dropping everything
    let echo = common::udp_echo(&pod, addr("10.98.0.2:8080"), Duration::from_millis(800));
    assert_eq!(
        calls(&client, addr("10.98.0.1:5000"), addr("10.98.0.2:8080"), 5),
        5,
        "{hook:?}: allowed inbound flow"
    );
    assert_eq!(echo.join().expect("echo"), 5);

    // the pod's own flow: replies pass the default-deny firewall
    let echo = common::udp_echo(&client, service, Duration::from_millis(2500));
    assert_eq!(
        calls(&pod, addr("10.98.0.2:41000"), service, 5),
        5,
        "{hook:?}: replies of the pod's own flow"
    );
    // not a reply: another client port to the pod's port, and a port no rule allows
    assert_eq!(
        calls(&client, addr("10.98.0.1:7002"), addr("10.98.0.2:41000"), 3),
        0,
        "{hook:?}: a new inbound flow to the pod's port is not a reply"
    );
    // the same over IPv6
    let echo6 = common::udp_echo(
        &client,
        addr("[fd00:98::1]:7001"),
        Duration::from_millis(1500),
    );
    assert_eq!(
        calls(
            &pod,
            addr("[fd00:98::2]:41000"),
            addr("[fd00:98::1]:7001"),
            3
        ),
        3,
        "{hook:?}: replies of the pod's own IPv6 flow"
    );
    assert_eq!(
        calls(
            &client,
            addr("[fd00:98::1]:7002"),
            addr("[fd00:98::2]:41000"),
            2
        ),
        0,
        "{hook:?}: a new inbound IPv6 flow to the pod's port is not a reply"
    );
    assert_eq!(echo6.join().expect("echo"), 3);
    assert!(ask("entries").parse::<usize>().expect("count") >= 3);

    // a live update (new generation, new policy version): the recorded flow keeps its replies, and the new
    // generation records new flows
    assert_eq!(ask("update"), "ok");
    assert_eq!(
        calls(&pod, addr("10.98.0.2:41000"), service, 3),
        3,
        "{hook:?}: the pod's flow across a live update"
    );
    assert_eq!(
        calls(&pod, addr("10.98.0.2:41001"), service, 3),
        3,
        "{hook:?}: a new pod flow under generation 2"
    );

    // without the egress program, a new flow the pod opens gets no reply (what sidecar mode did before)
    assert_eq!(ask("detach-egress"), "ok");
    assert_eq!(
        calls(&pod, addr("10.98.0.2:41002"), service, 3),
        0,
        "{hook:?}: replies without the egress program"
    );
    assert_eq!(echo.join().expect("echo"), 5 + 3 + 3 + 3);

    assert_eq!(ask("detach"), "ok");
    drop(to_engine);
    engine.join().expect("engine thread");
}

hook_tests!(
    run: replies_of_the_pods_own_flows_pass_and_only_they_xdp,
    replies_of_the_pods_own_flows_pass_and_only_they_tc
);

/// A port mapping in front of the pod (DNAT pod:80 -> pod:8080, UDP): the replies leave by the pod's egress,
/// where vnf_egress translates them back to pod:80; without it the client sees them come from 8080.
fn port_mapping(hook: Hook, tag: &str) {
    let ns = Namespaces::new(&[&format!("pmc{tag}"), &format!("pmp{tag}")]);
    ns.link(0, "eth0", "10.97.0.1/24", 1, "eth0", "10.97.0.2/24");
    let (client, pod) = (ns.0[0].clone(), ns.0[1].clone());
    let addr = |s: &str| -> SocketAddr { s.parse().expect("addr") };
    let (to_engine, commands) = std::sync::mpsc::channel::<&'static str>();
    let (to_test, answers) = std::sync::mpsc::channel::<String>();
    let pod_ns = pod.clone();
    let engine = std::thread::spawn(move || {
        common::enter(&pod_ns);
        let mut e = Engine::load(hook).expect("load");
        e.apply(&ChainConfig {
            functions: vec![FunctionConfig::new(
                "portmap",
                FunctionKind::Nat(NatConfig {
                    rules: vec![NatRule::Dnat {
                        protocol: Some(UDP),
                        match_dst: "10.97.0.2".parse().expect("ip"),
                        match_port: Some(80),
                        to_addr: "10.97.0.2".parse().expect("ip"),
                        to_port: Some(8080),
                    }],
                    timeout: Duration::from_secs(60),
                }),
            )],
            ..Default::default()
        })
        .expect("apply");
        e.attach("eth0").expect("attach ingress");
        e.attach_egress("eth0").expect("attach egress");
        to_test.send("attached".into()).expect("answer");
        for cmd in commands {
            match cmd {
                "detach-egress" => e.detach_egress().expect("detach egress"),
                _ => e.detach().expect("detach"),
            }
            to_test.send("ok".into()).expect("answer");
        }
    });
    let ask = |cmd: &'static str| {
        to_engine.send(cmd).expect("command");
        answers
            .recv_timeout(Duration::from_secs(30))
            .expect("engine answers")
    };
    answers
        .recv_timeout(Duration::from_secs(60))
        .expect("attached");

    let echo = common::udp_echo(&pod, addr("10.97.0.2:8080"), Duration::from_millis(2000));
    assert_eq!(
        calls(&client, addr("10.97.0.1:5000"), addr("10.97.0.2:80"), 5),
        5,
        "{hook:?}: replies come from the address and port the client called"
    );
    // without the egress program the replies leave untranslated (from 8080): none matches what was called
    ask("detach-egress");
    assert_eq!(
        calls(&client, addr("10.97.0.1:5000"), addr("10.97.0.2:80"), 3),
        0,
        "{hook:?}: untranslated replies"
    );
    assert_eq!(echo.join().expect("echo"), 5 + 3, "{hook:?}: the mapping");
    ask("detach");
    drop(to_engine);
    engine.join().expect("engine thread");
}

hook_tests!(
    port_mapping: a_port_mapping_translates_the_pods_replies_back_xdp,
    a_port_mapping_translates_the_pods_replies_back_tc
);
