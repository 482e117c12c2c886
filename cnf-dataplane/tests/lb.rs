//! L4 load balancer packet tests (XDP and TC): Maglev backend choice predicted from the Rust
//! table, DNAT + reply translation with valid checksums, flow affinity across backend updates.

mod common;

use std::collections::HashMap;
use std::net::IpAddr;

use cnf_dataplane::engine::maglev;
use cnf_dataplane::engine::{
    ChainConfig, Engine, FunctionConfig, FunctionKind, Hook, LbBackendConfig, LbConfig,
};
use common::*;

fn setup(hook: Hook, cfg: &LbConfig) -> (Engine, u32) {
    let mut e = load(hook);
    let applied = e
        .apply(&ChainConfig {
            functions: vec![FunctionConfig::new(
                "lb",
                FunctionKind::LoadBalancer(cfg.clone()),
            )],
            ..Default::default()
        })
        .expect("apply");
    (e, applied.instances[0])
}

/// The data plane's flow hash (nat_hash in ebpf/nf/nat.h) over struct vnf_tuple.
fn flow_hash(src: IpAddr, sport: u16, dst: IpAddr, dport: u16, proto: u8) -> u32 {
    let mut t = [0u8; 40];
    t[..16].copy_from_slice(&Engine::addr_bytes(src));
    t[16..32].copy_from_slice(&Engine::addr_bytes(dst));
    t[32..34].copy_from_slice(&sport.to_ne_bytes());
    t[34..36].copy_from_slice(&dport.to_ne_bytes());
    t[36] = proto;
    t[37] = if src.is_ipv4() { 4 } else { 6 };
    let mut h: u32 = 0x9e37_79b9;
    for w in t.chunks_exact(4) {
        h ^= u32::from_ne_bytes([w[0], w[1], w[2], w[3]]);
        h = h.wrapping_mul(0x85eb_ca6b);
        h ^= h >> 13;
    }
    h
}

/// Backend index the Maglev table assigns to a flow.
fn predict(cfg: &LbConfig, client: IpAddr, sport: u16) -> usize {
    let ids: Vec<Vec<u8>> = cfg
        .backends
        .iter()
        .map(|b| {
            let mut id = Engine::addr_bytes(b.addr).to_vec();
            id.extend_from_slice(&b.port.unwrap_or(0).to_be_bytes());
            id
        })
        .collect();
    let weights: Vec<u32> = cfg.backends.iter().map(|b| b.weight).collect();
    let table = maglev::populate_weighted(&ids, &weights, cfg.table_size as usize).expect("table");
    let h = flow_hash(client, sport, cfg.vip, 80, TCP);
    table[(h % cfg.table_size) as usize] as usize
}

fn run_ok(e: &Engine, hook: Hook, p: &Pkt) -> Vec<u8> {
    let out = e.test_run(&p.build(), 1).expect("run");
    assert_eq!(out.retval, verdicts(hook).pass, "{hook:?} {p:?}");
    verify_checksums(&out.data).unwrap_or_else(|err| panic!("{hook:?} {p:?}: {err}"));
    out.data
}

#[test]
fn flows_are_spread_by_maglev_and_replies_are_translated() {
    if !privileged() {
        return;
    }
    let backends = ["10.0.1.1", "10.0.1.2", "10.0.1.3", "10.0.1.4"];
    for hook in HOOKS {
        let cfg = lb_config("192.0.2.100", Some(TCP), &backends);
        let (e, inst) = setup(hook, &cfg);
        let mut per_backend: HashMap<usize, usize> = HashMap::new();
        for i in 0..200u16 {
            let client = format!("198.51.100.{}", 1 + i % 50);
            let sport = 20000 + i;
            let req = Pkt::tcp(&client, sport, "192.0.2.100", 80);
            let out = run_ok(&e, hook, &req);
            let b = predict(&cfg, ip(&client), sport);
            assert_eq!(
                out,
                Pkt::tcp(&client, sport, backends[b], 8080).build(),
                "{hook:?} flow {i} not DNATed to predicted backend {b}"
            );
            *per_backend.entry(b).or_default() += 1;
            let reply = Pkt::tcp(backends[b], 8080, &client, sport);
            let back = run_ok(&e, hook, &reply);
            assert_eq!(back, Pkt::tcp("192.0.2.100", 80, &client, sport).build());
        }
        assert_eq!(per_backend.len(), 4, "{hook:?}: {per_backend:?}");
        assert!(
            per_backend.values().all(|&n| n >= 25),
            "{hook:?} skewed: {per_backend:?}"
        );
        // every reply hit its translation entry
        assert_eq!(e.function_stats(inst).expect("stats").aux, 200);
        // non-VIP traffic and other protocols pass untouched
        for p in [
            Pkt::tcp("198.51.100.1", 1, "192.0.2.101", 80),
            Pkt::tcp("198.51.100.1", 1, "192.0.2.100", 81),
            Pkt::udp("198.51.100.1", 1, "192.0.2.100", 80),
        ] {
            let f = p.build();
            assert_eq!(e.test_run(&f, 1).expect("run").data, f, "{hook:?} {p:?}");
        }
    }
}

#[test]
fn established_flows_keep_their_backend_across_updates() {
    if !privileged() {
        return;
    }
    let backends = ["2001:db8:1::1", "2001:db8:1::2", "2001:db8:1::3"];
    for hook in HOOKS {
        let cfg = lb_config("2001:db8::100", Some(TCP), &backends);
        let (mut e, inst) = setup(hook, &cfg);
        // find a flow on backend 0, then remove backend 0
        let (client, sport) = (0..1000u16)
            .map(|s| ("2001:db8:c::1", 30000 + s))
            .find(|(c, s)| predict(&cfg, ip(c), *s) == 0)
            .expect("some flow maps to backend 0");
        let req = Pkt::tcp(client, sport, "2001:db8::100", 80);
        let to_b0 = Pkt::tcp(client, sport, backends[0], 8080).build();
        assert_eq!(run_ok(&e, hook, &req), to_b0);

        let smaller = lb_config("2001:db8::100", Some(TCP), &backends[1..]);
        e.update_load_balancer(inst, &smaller).expect("update");
        assert_eq!(run_ok(&e, hook, &req), to_b0, "{hook:?}: affinity lost");
        // new flows never go to the removed backend and follow the new table
        for s in 0..100u16 {
            let c = "2001:db8:d::7";
            let out = run_ok(&e, hook, &Pkt::tcp(c, 40000 + s, "2001:db8::100", 80));
            let b = predict(&smaller, ip(c), 40000 + s);
            assert_eq!(out, Pkt::tcp(c, 40000 + s, backends[1 + b], 8080).build());
        }
        assert!(e.update_load_balancer(inst + 1, &smaller).is_err());
    }
}

#[test]
fn invalid_load_balancers_are_rejected() {
    if !privileged() {
        return;
    }
    let mut e = load(Hook::Xdp);
    let mut mixed = lb_config("192.0.2.1", Some(TCP), &["10.0.0.1"]);
    mixed.backends.push(LbBackendConfig {
        addr: ip("2001:db8::1"),
        port: None,
        weight: 1,
    });
    let empty = lb_config("192.0.2.1", Some(TCP), &[]);
    let dup = lb_config("192.0.2.1", Some(TCP), &["10.0.0.1", "10.0.0.1"]);
    let mut icmp = lb_config("192.0.2.1", Some(TCP), &["10.0.0.1"]);
    icmp.protocol = Some(ICMP);
    for cfg in [mixed, empty, dup, icmp] {
        let chain = ChainConfig {
            functions: vec![FunctionConfig::new(
                "lb",
                FunctionKind::LoadBalancer(cfg.clone()),
            )],
            ..Default::default()
        };
        assert!(e.apply(&chain).is_err(), "{cfg:?} accepted");
    }
}
