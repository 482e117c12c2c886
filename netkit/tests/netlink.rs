//! The netlink operations, each checked by reading the result back twice: through netlink
//! ([`Netlink::link`]) and through `ip -j` (iproute2, an independent oracle). Namespaces are created and
//! deleted by [`netkit::netns`] and named `nl-<pid>-<test>`.

use std::net::IpAddr;
use std::process::Command;

use netkit::{Netlink, Route, VethEnd, netns};

/// Named namespaces deleted on drop.
struct Nss(Vec<String>);

impl Nss {
    fn new(test: &str, n: usize) -> Self {
        let pid = std::process::id();
        let v: Vec<String> = (0..n).map(|i| format!("nl-{pid}-{test}-{i}")).collect();
        for ns in &v {
            netns::add(ns).unwrap_or_else(|e| panic!("{e}"));
        }
        Self(v)
    }
}

impl Drop for Nss {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = netns::del(ns);
        }
    }
}

/// `ip -j -n NS ARGS` with the blanks taken out, for plain substring checks (netkit has no JSON parser).
struct Json(String);

impl Json {
    fn has(&self, key: &str, val: &str) -> bool {
        self.0.contains(&format!("\"{key}\":{val}"))
    }
}

fn ipj(ns: &str, args: &[&str]) -> Json {
    let out = Command::new("ip")
        .args(["-j", "-n", ns])
        .args(args)
        .output()
        .expect("ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Json(String::from_utf8_lossy(&out.stdout).replace(' ', ""))
}

fn skip(test: &str) -> bool {
    !testkit::root_and_tools(test, &["ip"])
}

#[test]
fn namespaces_are_created_listed_and_deleted_like_ip_netns() {
    if skip("namespaces_are_created_listed_and_deleted_like_ip_netns") {
        return;
    }
    let name = format!("nl-{}-ns", std::process::id());
    netns::add(&name).expect("add");
    assert!(netns::exists(&name) && netns::list().contains(&name));
    let listed = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip");
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&name));
    // a fresh namespace: only lo, down
    let lo = Netlink::open_in(&name)
        .expect("socket")
        .link("lo")
        .expect("lo");
    assert!(!lo.up);
    let e = netns::add(&name).expect_err("exists");
    assert!(e.to_string().contains(&name), "{e}");
    netns::del(&name).expect("del");
    assert!(!netns::exists(&name));
    let e = netns::del(&name).expect_err("gone");
    assert!(e.to_string().contains(&name), "{e}");
    assert!(netns::add("a/b").is_err() && netns::add("").is_err());
}

#[test]
fn veth_pair_across_namespaces_with_macs_up_mtu() {
    if skip("veth_pair_across_namespaces_with_macs_up_mtu") {
        return;
    }
    let ns = Nss::new("veth", 2);
    let (a, b) = (ns.0[0].as_str(), ns.0[1].as_str());
    let (ma, mb) = ([2, 0, 0, 0, 0x1a, 1], [2, 0, 0, 0, 0x1a, 2]);
    // created from a socket in neither namespace
    let mut root = Netlink::open().expect("socket");
    root.add_veth(
        VethEnd::new("nlva").mac(ma).ns(a),
        VethEnd::new("nlvb").mac(mb).ns(b),
    )
    .expect("veth");
    assert!(root.find_link("nlva").expect("read").is_none());
    let (mut na, mut nb) = (
        Netlink::open_in(a).expect("a"),
        Netlink::open_in(b).expect("b"),
    );
    let la = na.link("nlva").expect("nlva");
    assert_eq!((la.mac, la.up), (Some(ma), false));
    assert!(ipj(a, &["link", "show", "nlva"]).has("address", "\"02:00:00:00:1a:01\""));
    na.set_up("nlva", true).expect("up");
    na.set_mtu("nlva", 1400).expect("mtu");
    let mc = [2, 0, 0, 0, 0x1a, 3];
    na.set_mac("nlva", mc).expect("mac");
    let la = na.link("nlva").expect("nlva");
    assert_eq!((la.up, la.mtu, la.mac), (true, 1400, Some(mc)));
    let j = ipj(a, &["link", "show", "nlva"]);
    assert!(
        j.has("mtu", "1400") && j.has("address", "\"02:00:00:00:1a:03\""),
        "{}",
        j.0
    );
    assert!(j.0.contains("\"UP\""), "{}", j.0);
    na.set_up("nlva", false).expect("down");
    assert!(!na.link("nlva").expect("nlva").up);
    assert!(!ipj(a, &["link", "show", "nlva"]).0.contains("\"UP\""));
    assert_eq!(nb.link("nlvb").expect("nlvb").mac, Some(mb));
    // errors name the link and the namespace
    let e = na.set_up("nlnone", true).expect_err("missing");
    assert!(
        e.to_string().contains("nlnone") && e.to_string().contains(a),
        "{e}"
    );
    let e = na
        .add_veth(VethEnd::new("nlva"), VethEnd::new("nlvx"))
        .expect_err("exists");
    assert!(e.to_string().contains("nlva"), "{e}");
    assert!(na.add_bridge("a-name-longer-than-15").is_err());
    // moving and deleting: the peer goes with it
    na.set_netns("nlva", b).expect("move");
    assert!(na.find_link("nlva").expect("read").is_none());
    assert!(nb.find_link("nlva").expect("read").is_some());
    nb.del_link("nlva").expect("del");
    assert!(nb.find_link("nlvb").expect("read").is_none());
}

#[test]
fn addresses_routes_and_neighbours() {
    if skip("addresses_routes_and_neighbours") {
        return;
    }
    let ns = Nss::new("addr", 1);
    let a = ns.0[0].as_str();
    let mut nl = Netlink::open_in(a).expect("socket");
    nl.add_veth(VethEnd::new("nlx0"), VethEnd::new("nlx1"))
        .expect("veth");
    nl.set_up("nlx0", true).expect("up");
    nl.set_up("nlx1", true).expect("up");
    addresses(&mut nl, a);
    routes(&mut nl, a);
    neighbours(&mut nl, a);
}

/// Addresses on `nlx0` in namespace `a` (v4, v6 without DAD, refused twice or with a bad prefix), the
/// global addresses of lo flushed, and detaching XDP where none is.
fn addresses(nl: &mut Netlink, a: &str) {
    let v4: IpAddr = "192.0.2.1".parse().expect("v4");
    let v6: IpAddr = "2001:db8::1".parse().expect("v6");
    nl.add_addr("nlx0", v4, 24, false).expect("v4");
    nl.add_addr("nlx0", v6, 64, true).expect("v6");
    let j = ipj(a, &["addr", "show", "dev", "nlx0"]);
    assert!(
        j.has("local", "\"192.0.2.1\"") && j.has("prefixlen", "24"),
        "{}",
        j.0
    );
    assert!(j.has("local", "\"2001:db8::1\""), "{}", j.0);
    // nodad: the address is not tentative (the kernel's own link-local one is, for a while)
    let entry =
        j.0.split("\"local\":\"2001:db8::1\"")
            .nth(1)
            .expect("v6 entry");
    let entry = &entry[..entry.find('}').expect("end of entry")];
    assert!(
        entry.contains("\"nodad\":true") && !entry.contains("tentative"),
        "{}",
        j.0
    );
    let e = nl.add_addr("nlx0", v4, 24, false).expect_err("twice");
    assert!(
        e.to_string().contains("192.0.2.1/24") && e.to_string().contains("nlx0"),
        "{e}"
    );
    assert!(nl.add_addr("nlx0", v4, 33, false).is_err());
    let got = nl.addrs("nlx0").expect("addrs");
    assert!(
        got.contains(&netkit::addr::Addr {
            addr: v4,
            plen: 24,
            scope: 0
        }),
        "{got:?}"
    );
    assert!(got.iter().any(|a| a.addr == v6 && a.plen == 64), "{got:?}");
    // flush the global addresses of lo (VIPs), keeping 127.0.0.1 (scope host)
    nl.set_up("lo", true).expect("lo up");
    let vip: IpAddr = "198.18.0.7".parse().expect("vip");
    nl.add_addr("lo", vip, 32, false).expect("vip");
    assert!(ipj(a, &["addr", "show", "dev", "lo"]).has("local", "\"198.18.0.7\""));
    assert_eq!(nl.flush_global_addrs("lo").expect("flush"), 1);
    let lo = ipj(a, &["addr", "show", "dev", "lo"]);
    assert!(
        !lo.has("local", "\"198.18.0.7\"") && lo.has("local", "\"127.0.0.1\""),
        "{}",
        lo.0
    );
    let e = nl.del_addr("lo", vip, 32).expect_err("gone");
    assert!(e.to_string().contains("198.18.0.7/32"), "{e}");
    // detaching XDP where none is attached is accepted, as ip link set xdp off
    nl.detach_xdp("nlx0").expect("xdp off");
    assert!(!nl.link("nlx0").expect("nlx0").xdp);
}

/// Default routes (v4, v6), a prefix via an on-link gateway outside every prefix, a link route, and the
/// error naming a route whose gateway is unreachable.
fn routes(nl: &mut Netlink, a: &str) {
    // routes: default via (v4, v6), a prefix via an on-link gateway outside every prefix, a link route
    nl.add_route(&Route::default_via("192.0.2.254".parse().expect("gw")))
        .expect("default v4");
    nl.add_route(&Route::default_via("2001:db8::fe".parse().expect("gw")).dev("nlx0"))
        .expect("default v6");
    nl.add_route(
        &Route::to("198.51.100.0".parse().expect("dst"), 24)
            .via("203.0.113.9".parse().expect("gw"))
            .dev("nlx1")
            .onlink(),
    )
    .expect("onlink");
    nl.add_route(&Route::to("203.0.113.0".parse().expect("dst"), 25).dev("nlx1"))
        .expect("dev route");
    let r4 = ipj(a, &["-4", "route", "show"]);
    assert!(
        r4.has("dst", "\"default\"") && r4.has("gateway", "\"192.0.2.254\""),
        "{}",
        r4.0
    );
    assert!(
        r4.0.contains("\"dst\":\"198.51.100.0/24\",\"gateway\":\"203.0.113.9\",\"dev\":\"nlx1\""),
        "{}",
        r4.0
    );
    assert!(r4.0.contains("\"onlink\""), "{}", r4.0);
    assert!(
        r4.0.contains("\"dst\":\"203.0.113.0/25\",\"dev\":\"nlx1\",\"scope\":\"link\""),
        "{}",
        r4.0
    );
    let r6 = ipj(a, &["-6", "route", "show", "default"]);
    assert!(r6.has("gateway", "\"2001:db8::fe\""), "{}", r6.0);
    // without onlink the kernel refuses an unreachable gateway, and the error says which route
    let e = nl
        .add_route(
            &Route::to("198.51.100.128".parse().expect("dst"), 25)
                .via("203.0.113.200".parse().expect("gw")),
        )
        .expect_err("unreachable gateway");
    assert!(
        e.to_string()
            .contains("198.51.100.128/25 via 203.0.113.200"),
        "{e}"
    );
}

/// Permanent neighbours, replaced in place.
fn neighbours(nl: &mut Netlink, a: &str) {
    // permanent neighbours, replaced in place
    let mac = [2, 0, 0, 0, 0x1b, 1];
    nl.replace_neigh("nlx0", "192.0.2.2".parse().expect("n4"), mac)
        .expect("n4");
    nl.replace_neigh("nlx0", "2001:db8::2".parse().expect("n6"), mac)
        .expect("n6");
    nl.replace_neigh(
        "nlx0",
        "2001:db8::2".parse().expect("n6"),
        [2, 0, 0, 0, 0x1b, 2],
    )
    .expect("replace");
    let n = ipj(a, &["neigh", "show", "dev", "nlx0"]);
    assert!(
        n.0.contains(
            "\"dst\":\"192.0.2.2\",\"lladdr\":\"02:00:00:00:1b:01\",\"state\":[\"PERMANENT\"]"
        ),
        "{}",
        n.0
    );
    assert!(
        n.0.contains(
            "\"dst\":\"2001:db8::2\",\"lladdr\":\"02:00:00:00:1b:02\",\"state\":[\"PERMANENT\"]"
        ),
        "{}",
        n.0
    );
}

#[test]
fn bridges_and_their_ports() {
    if skip("bridges_and_their_ports") {
        return;
    }
    let ns = Nss::new("br", 2);
    let (a, b) = (ns.0[0].as_str(), ns.0[1].as_str());
    let mut nl = Netlink::open_in(a).expect("socket");
    nl.add_bridge("nlbr0").expect("bridge");
    nl.add_veth(VethEnd::new("nlp0"), VethEnd::new("nlp1").ns(b))
        .expect("veth");
    // a control: a link that is no port has no master
    assert_eq!(nl.link("nlp0").expect("port").master, None);
    nl.set_master("nlp0", "nlbr0").expect("enslave");
    let br = nl.link("nlbr0").expect("bridge");
    assert_eq!(nl.link("nlp0").expect("port").master, Some(br.index));
    let j = ipj(a, &["link", "show", "nlp0"]);
    assert!(j.has("master", "\"nlbr0\""), "{}", j.0);
    assert!(ipj(a, &["-d", "link", "show", "nlbr0"]).has("info_kind", "\"bridge\""));
    let e = nl.set_master("nlp0", "nlnobr").expect_err("no bridge");
    assert!(e.to_string().contains("nlnobr"), "{e}");
}

#[test]
fn a_program_started_in_a_namespace_sees_its_links() {
    if skip("a_program_started_in_a_namespace_sees_its_links") {
        return;
    }
    let ns = Nss::new("exec", 1);
    let mut nl = Netlink::open_in(&ns.0[0]).expect("socket");
    nl.add_bridge("nlexec0").expect("bridge");
    let out = netns::output(&ns.0[0], Command::new("ip").args(["-o", "link"])).expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("nlexec0"), "{text}");
    // control: the same program outside does not
    let out = Command::new("ip")
        .args(["-o", "link"])
        .output()
        .expect("run");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("nlexec0"));
    let e = netns::output("nl-no-such-ns", &mut Command::new("true")).expect_err("missing");
    assert!(e.to_string().contains("nl-no-such-ns"), "{e}");
}
