//! The new-flow benchmark with real packets: the chain's NAT + LB and nftables translate every new flow (the sink
//! counts only frames that arrive translated, and the engine's counters and conntrack show one new flow per
//! frame), and the sink's check is not vacuous (untranslated frames do not count).

use std::net::Ipv4Addr;
use std::time::Duration;

use pktgen::netns::enter;
use pktgen::xdp_cps::{CpsConfig, CpsGenerator, CpsSink, SinkExpect};
use vnfctl::bench::bed::{Bed, Flow, GEN_DEV, SRV_DEV};
use vnfctl::bench::cps::{self, CpsOptions, CpsPath};

fn can_run(test: &str) -> bool {
    testkit::root_and_tools(test, &["ip", "nft", "ethtool"])
}

fn flow() -> Flow {
    Flow {
        src: "10.0.1.2:40000".parse().expect("addr"),
        dst: "10.0.0.200:9999".parse().expect("addr"),
        server: "10.0.2.10:9999".parse().expect("addr"),
        reason: "new-flow test".into(),
    }
}

#[test]
fn chain_and_nftables_create_state_for_every_new_flow() {
    if !can_run("chain_and_nftables_create_state_for_every_new_flow") {
        return;
    }
    let bed = Bed::create(flow()).expect("bed");
    let o = CpsOptions {
        duration: Duration::from_millis(300),
        rounds: 1,
        sweep: vec![0.05],
    };
    let n = cps::measure(&bed, &o, |l| eprintln!("{l}")).expect("measured");
    eprintln!("{}", cps::table(&n));
    let row = |p: CpsPath| {
        let r = n.rows.iter().find(|r| r.path == p).expect("row");
        assert!(r.skipped.is_none(), "{}: {:?}", r.name, r.skipped);
        r.best.clone().expect("a point delivered")
    };
    let plan = n.plan.clone().expect("plan");
    for p in [CpsPath::ChainNatLb, CpsPath::NftNat] {
        let b = row(p);
        let st = b.state.clone().expect("state counters");
        // the sink counts only frames from the SNAT address to a backend: a path that drops or passes
        // untranslated frames has none
        assert!(b.sink.expected > 100, "{p:?}: {b:?}");
        assert!(
            b.sink.expected as f64 >= 0.9 * b.sink.frames as f64,
            "{p:?}: most arriving frames are translated: {b:?}"
        );
        // one new flow per delivered frame, and SNAT gave them distinct ports
        assert!(
            st.created as f64 >= 0.95 * b.sink.expected as f64,
            "{p:?}: state created per frame: {st:?} for {b:?}"
        );
        assert!(
            b.sink.distinct_ports as f64 >= 0.5 * (b.sink.expected.min(64_512)) as f64,
            "{p:?}: translated source ports differ per flow: {b:?}"
        );
        assert!(st.entries > 0 && st.capacity > 0, "{p:?}: {st:?}");
    }
    let chain = row(CpsPath::ChainNatLb).state.expect("engine state");
    let lb = chain.lb_created.expect("LB counter");
    assert!(
        lb as f64 >= 0.95 * chain.created as f64,
        "the LB balanced each new flow: {chain:?}"
    );
    assert!(
        chain.entries <= cps::NAT_CT_CAPACITY,
        "the LRU never holds more than its size: {chain:?}"
    );
    // the untranslated references deliver the frames as sent
    for p in [CpsPath::Ceiling, CpsPath::KernelForward] {
        let b = row(p);
        assert!(b.sink.expected > 100, "{p:?}: {b:?}");
        assert!(b.state.is_none());
    }
    assert!(n.ratio_chain_nft.is_some());
    assert_eq!(plan.backends.len(), cps::BACKENDS as usize);
    // the bed is left clean
    let rules = vnfctl::bench::bed::sh(&bed.cnf_ns, "nft", &["list", "ruleset"]).expect("nft");
    assert!(!rules.contains(cps::NFT_CPS_TABLE), "{rules}");
}

#[test]
fn the_sink_does_not_count_untranslated_frames() {
    if !can_run("the_sink_does_not_count_untranslated_frames") {
        return;
    }
    let bed = Bed::create(flow()).expect("bed");
    let plan = cps::plan(&bed.flow).expect("plan");
    // plain kernel forwarding: frames arrive as sent, so the translated expectation matches none of them while
    // the untranslated one matches them all
    bed.gro(&bed.cnf_ns, vnfctl::bench::bed::CNF_IN, true)
        .expect("gro");
    let cases = [
        (
            SinkExpect {
                saddr: Some(plan.snat),
                daddr_lo: plan.backends[0],
                daddr_hi: plan.backends[plan.backends.len() - 1],
                dport: Some(plan.vip.port()),
            },
            false,
        ),
        (
            SinkExpect {
                saddr: None,
                daddr_lo: *plan.vip.ip(),
                daddr_hi: *plan.vip.ip(),
                dport: Some(plan.vip.port()),
            },
            true,
        ),
    ];
    for (expect, matches) in cases {
        let srv = bed.srv_ns.clone();
        let sink = std::thread::spawn(move || {
            enter(&srv).expect("enter");
            CpsSink::attach(SRV_DEV, &expect).expect("sink")
        })
        .join()
        .expect("sink thread");
        let cfg = CpsConfig {
            ifname: GEN_DEV.into(),
            src_mac: bed.gen_mac,
            dst_mac: bed.cnf_in_mac,
            flows: plan.flows(),
            dst: plan.vip,
            ip_size: 50,
            batch: 16,
        };
        let g = bed.gen_ns.clone();
        std::thread::spawn(move || {
            enter(&g).expect("enter");
            let mut generator = CpsGenerator::new(&cfg).expect("generator");
            for _ in 0..20 {
                generator.send(100).expect("send");
                std::thread::sleep(Duration::from_millis(5));
            }
            assert_eq!(generator.flows_sent().expect("counter"), 2000);
        })
        .join()
        .expect("generator thread");
        std::thread::sleep(Duration::from_millis(100));
        let c = sink.counts().expect("counts");
        assert!(c.frames >= 1000, "frames arrive: {c:?}");
        if matches {
            assert!(c.expected >= c.frames * 9 / 10, "{c:?}");
            // the generator's source ports, each a new flow
            assert!(c.distinct_ports >= 1000, "{c:?}");
        } else {
            assert_eq!(c.expected, 0, "untranslated frames are not counted: {c:?}");
        }
        drop(sink);
    }
    assert_ne!(plan.snat, Ipv4Addr::UNSPECIFIED);
}

#[test]
fn rtt_is_measured_on_every_path_and_a_dropping_chain_gets_no_number() {
    if !can_run("rtt_is_measured_on_every_path_and_a_dropping_chain_gets_no_number") {
        return;
    }
    use cnf_dataplane::engine::{
        ChainConfig, ForwardMode, ForwarderConfig, FunctionConfig, FunctionKind,
    };
    use vnfctl::bench::rtt::{self, RttOptions, RttPath};
    let bed = Bed::create(flow()).expect("bed");
    let o = RttOptions {
        rate_pps: 5_000.0,
        duration: Duration::from_millis(300),
        rounds: 1,
    };
    let redirect = |mode| ChainConfig {
        functions: vec![FunctionConfig::new(
            "fwd",
            FunctionKind::Forwarder(ForwarderConfig {
                mode,
                dst_mac: Some(bed.srv_mac),
                ..Default::default()
            }),
        )],
        ..Default::default()
    };
    let forwarding = redirect(ForwardMode::Redirect {
        ifindex: bed.cnf_out_ifindex,
    });
    let r = rtt::measure(&bed, &forwarding, &o, |l| eprintln!("{l}")).expect("measured");
    eprintln!("{}", rtt::table(&r));
    for p in RttPath::ALL {
        let s = r.paths.iter().find(|s| s.path == p).expect("path");
        assert!(s.received * 10 >= s.sent * 9, "{p:?} answered: {s:?}");
        assert!(s.min_us > 0.0 && s.p50_us < 10_000.0, "{p:?}: {s:?}");
    }
    assert!(r.added_p50_us.is_some() && r.skipped.is_none(), "{r:?}");
    // control: a chain that drops every request yields no echo and no number
    let r = rtt::measure(&bed, &redirect(ForwardMode::Drop), &o, |l| eprintln!("{l}"))
        .expect("measured");
    let chain = r
        .paths
        .iter()
        .find(|s| s.path == RttPath::Chain)
        .expect("chain");
    assert_eq!(chain.received, 0, "{chain:?}");
    assert!(r.added_p50_us.is_none() && r.skipped.is_some(), "{r:?}");
}
