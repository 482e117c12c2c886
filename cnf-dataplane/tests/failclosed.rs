//! The bypasses of issue 13, one named test each (XDP and TC, `BPF_PROG_TEST_RUN`): stacked VLAN tags,
//! long IPv6 extension-header chains, tiny first fragments, later fragments on a denied port, allowed
//! fragmented UDP, broken TCP data offsets, truncated headers and policy tightening. Every test also
//! sends the packets its policy allows and checks they pass, so none can pass by dropping everything.
//! The contract these tests hold the chain to: `docs/security.md`.

mod adversary;
mod common;

use std::time::Duration;

use adversary::*;
use cnf_dataplane::engine::abi::reason;
use cnf_dataplane::engine::{
    Action, ChainConfig, ClassifierConfig, ETHERTYPE_ARP, Engine, FirewallConfig, FirewallRule,
    FunctionConfig, FunctionKind, Hook, NonIpConfig, PortRange,
};
use common::{HOOKS, Verdicts, load, privileged, verdicts};

const A4: [u8; 4] = [10, 0, 0, 5];
const B4: [u8; 4] = [192, 0, 2, 7];
const A6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5];
const B6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7];

fn rule(priority: u32, action: Action, proto: u8, dport: u16) -> FirewallRule {
    FirewallRule {
        priority,
        action,
        protocol: Some(proto),
        src: None,
        dst: None,
        src_ports: None,
        dst_ports: Some(PortRange::single(dport)),
    }
}

/// Default deny; TCP/80 and UDP/53 allowed.
fn allow_list() -> FirewallConfig {
    FirewallConfig {
        rules: vec![
            rule(1, Action::Allow, TCP, 80),
            rule(2, Action::Allow, UDP, 53),
        ],
        default_action: Action::Deny,
        ..Default::default()
    }
}

/// Default allow; TCP/22 and UDP/161 denied.
fn deny_list() -> FirewallConfig {
    FirewallConfig {
        rules: vec![
            rule(1, Action::Deny, TCP, 22),
            rule(2, Action::Deny, UDP, 161),
        ],
        default_action: Action::Allow,
        ..Default::default()
    }
}

struct Chain {
    e: Engine,
    inst: u32,
    v: Verdicts,
    hook: Hook,
}

impl Chain {
    fn new(hook: Hook, fw: FirewallConfig, cls: Option<ClassifierConfig>) -> Self {
        Self::with_non_ip(hook, fw, cls, NonIpConfig::default())
    }

    fn with_non_ip(
        hook: Hook,
        fw: FirewallConfig,
        cls: Option<ClassifierConfig>,
        non_ip: NonIpConfig,
    ) -> Self {
        let mut e = load(hook);
        let applied = e
            .apply(&ChainConfig {
                classifier: cls.unwrap_or_default(),
                functions: vec![FunctionConfig::new("fw", FunctionKind::Firewall(fw))],
                non_ip,
                ..Default::default()
            })
            .expect("apply");
        Self {
            e,
            inst: applied.instances[0],
            v: verdicts(hook),
            hook,
        }
    }

    fn run(&self, f: &[u8]) -> u32 {
        self.e
            .test_run(f, 1)
            .unwrap_or_else(|err| panic!("{:?} test run of {f:02x?}: {err}", self.hook))
            .retval
    }

    fn pass(&self, f: &[u8], what: &str) {
        assert_eq!(
            self.run(f),
            self.v.pass,
            "{:?}: {what} must pass",
            self.hook
        );
    }

    fn drop(&self, f: &[u8], what: &str) {
        assert_eq!(
            self.run(f),
            self.v.drop,
            "{:?}: {what} must be dropped",
            self.hook
        );
    }

    fn dropped(&self, why: usize) -> u64 {
        self.e.function_stats(self.inst).expect("stats").dropped[why]
    }
}

fn v4(tags: &[(u16, u16)], proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut f = eth(tags, 0x0800);
    f.extend_from_slice(&ipv4(A4, B4, proto, 1, 0, &[], l4));
    pad60(f)
}

fn v6(tags: &[(u16, u16)], exts: &[u8], proto: u8, l4: &[u8]) -> Vec<u8> {
    let (first, payload) = ext_chain(exts, proto, l4);
    let mut f = eth(tags, 0x86dd);
    f.extend_from_slice(&ipv6(A6, B6, first, &payload));
    pad60(f)
}

/// The reason a fragment of a datagram not seen yet is dropped with: both hooks park it until its
/// first fragment comes (`fragment_parked`; PROG_TEST_RUN runs on loopback, where nothing is
/// released, see `ebpf/lib/fragpark.h`).
const UNKNOWN_FLOW: usize = reason::FRAG_PARKED;

fn syn(dport: u16) -> Vec<u8> {
    tcp(40000, dport, 5, 0x02, b"")
}

/// `n` tags of mixed TPIDs, priority tags (VLAN id 0) among them.
fn tags(n: usize) -> Vec<(u16, u16)> {
    let tpids = [0x88a8, 0x9100, 0x8100, 0x8100];
    (0..n)
        .map(|i| (tpids[i % 4], if i % 2 == 0 { 0 } else { 100 + i as u16 }))
        .collect()
}

#[test]
fn stacked_vlan_tags_never_bypass_the_chain() {
    if !privileged() {
        return;
    }
    for hook in HOOKS {
        for cls in [None, Some(to_servers())] {
            let c = Chain::new(hook, allow_list(), cls.clone());
            for n in 0..=MAX_VLAN {
                let t = tags(n);
                c.pass(&v4(&t, TCP, &syn(80)), &format!("TCP/80 under {n} tags"));
                c.drop(&v4(&t, TCP, &syn(22)), &format!("TCP/22 under {n} tags"));
                c.pass(
                    &v6(&t, &[], UDP, &udp(1, 53, None, b"q")),
                    &format!("v6 UDP/53 under {n} tags"),
                );
                c.pass(&arp(&t), &format!("ARP under {n} tags"));
            }
            for n in [MAX_VLAN + 1, 6, 9] {
                let t = tags(n);
                c.drop(&v4(&t, TCP, &syn(22)), &format!("TCP/22 under {n} tags"));
                c.drop(
                    &v4(&t, TCP, &syn(80)),
                    &format!("TCP/80 under {n} tags (over the bound)"),
                );
            }
            assert_eq!(c.dropped(reason::ENCAP_DEPTH), 6, "{hook:?} {cls:?}");
        }
    }
}

#[test]
fn long_ipv6_extension_header_chains_never_bypass_the_chain() {
    if !privileged() {
        return;
    }
    let kinds = [
        HOPOPTS, DSTOPTS, ROUTING, AH, DSTOPTS, ROUTING, AH, DSTOPTS, DSTOPTS, ROUTING, AH, DSTOPTS,
    ];
    for hook in HOOKS {
        let tcp_only = ClassifierConfig {
            protocol: Some(TCP),
            ..Default::default()
        };
        for cls in [None, Some(tcp_only)] {
            let c = Chain::new(hook, deny_list(), cls.clone());
            for n in 0..=MAX_EXT {
                let exts = &kinds[..n];
                c.drop(
                    &v6(&[], exts, TCP, &syn(22)),
                    &format!("TCP/22 behind {n} extension headers"),
                );
                c.pass(
                    &v6(&[], exts, TCP, &syn(80)),
                    &format!("TCP/80 behind {n} extension headers"),
                );
            }
            for n in [MAX_EXT + 1, kinds.len()] {
                let exts = &kinds[..n];
                c.drop(
                    &v6(&[], exts, TCP, &syn(22)),
                    &format!("TCP/22 behind {n} extension headers"),
                );
                c.drop(
                    &v6(&[], exts, TCP, &syn(80)),
                    &format!("TCP/80 behind {n} headers (over the bound)"),
                );
            }
            // ESP and no-next-header end the walk: no ports, the address/protocol rules decide
            c.pass(
                &v6(&[], &kinds[..2], ESP, &[0u8; 16]),
                "ESP behind 2 headers",
            );
            c.pass(&v6(&[], &kinds[..2], NO_NEXT, &[]), "no next header");
            assert_eq!(c.dropped(reason::EXT_DEPTH), 4, "{hook:?} {cls:?}");
        }
    }
}

#[test]
fn tiny_first_fragments_are_dropped() {
    if !privileged() {
        return;
    }
    let seg = tcp(40000, 80, 5, 0x02, &[7u8; 40]);
    for hook in HOOKS {
        let c = Chain::new(hook, allow_list(), Some(to_servers()));
        // control: a first fragment with the whole TCP header passes, and so do its later fragments
        let whole = fragments4(&[], A4, B4, TCP, 100, &seg, &[24]);
        for (i, f) in whole.iter().enumerate() {
            c.pass(f, &format!("fragment {i} of an allowed TCP/80 datagram"));
        }
        // RFC 1858: 8 and 16 bytes of TCP header in the first fragment (padded and not)
        for (id, first) in [(101u16, 8usize), (102, 16)] {
            let frags = fragments4(&[], A4, B4, TCP, id, &seg, &[first]);
            c.drop(
                &frags[0],
                &format!("first fragment with {first} bytes of TCP"),
            );
            let mut unpadded = eth(&[], 0x0800);
            unpadded.extend_from_slice(&ipv4(A4, B4, TCP, id, 0x2000, &[], &seg[..first]));
            c.drop(
                &unpadded,
                &format!("unpadded first fragment with {first} bytes of TCP"),
            );
            c.drop(
                &frags[1],
                &format!("the rest of tiny datagram {id} (first never recorded)"),
            );
        }
        // a data offset that reaches past the first fragment
        let long_hdr = tcp(40000, 80, 10, 0x02, &[1u8; 40]);
        let frags = fragments4(&[], A4, B4, TCP, 103, &long_hdr, &[24]);
        c.drop(&frags[0], "first fragment without the TCP options");
        // RFC 3128: a later fragment at offset 8 or 16 overlaps the TCP header of an allowed first one
        let frags = fragments4(&[], A4, B4, TCP, 104, &seg, &[24]);
        c.pass(&frags[0], "first fragment of datagram 104");
        for off8 in [1u16, 2] {
            let mut f = eth(&[], 0x0800);
            f.extend_from_slice(&ipv4(A4, B4, TCP, 104, off8 | 0x2000, &[], &[0x12; 16]));
            c.drop(
                &pad60(f),
                &format!("fragment overlapping the TCP header at offset {}", off8 * 8),
            );
        }
        // IPv6 (RFC 7112): the upper-layer header must be in the first fragment
        let (next, body) = ext_chain(&[DSTOPTS], TCP, &seg);
        let frags = fragments6(&[], (A6, B6), &[], next, 7, &body, &[8]);
        c.drop(&frags[0], "IPv6 first fragment without the TCP header");
        let frags = fragments6(&[], (A6, B6), &[HOPOPTS], TCP, 8, &seg, &[16]);
        c.drop(&frags[0], "IPv6 first fragment with 16 bytes of TCP");
        let frags = fragments6(&[], (A6, B6), &[HOPOPTS], TCP, 9, &seg, &[24]);
        c.pass(&frags[0], "IPv6 first fragment with the whole TCP header");
        assert_eq!(c.dropped(reason::TINY_FRAGMENT), 9, "{hook:?}");
    }
}

#[test]
fn later_fragments_on_a_denied_port_are_dropped() {
    if !privileged() {
        return;
    }
    for hook in HOOKS {
        let c = Chain::new(hook, deny_list(), None);
        for (i, dport, verdict_pass) in [(200u16, 22u16, false), (201, 80, true)] {
            let seg = tcp(40000, dport, 5, 0x18, &[9u8; 100]);
            let v4f = fragments4(&[(0x8100, 5)], A4, B4, TCP, i, &seg, &[24, 32]);
            let v6f = fragments6(
                &[],
                (A6, B6),
                &[DSTOPTS],
                TCP,
                u32::from(i),
                &seg,
                &[24, 32],
            );
            for (n, f) in v4f.iter().chain(&v6f).enumerate() {
                let what = format!("fragment {n} of a TCP/{dport} datagram");
                if verdict_pass {
                    c.pass(f, &what);
                } else {
                    c.drop(f, &what);
                }
            }
        }
        // a later fragment whose first fragment was never seen
        let seg = udp(5000, 9999, None, &[3u8; 64]);
        let orphan = fragments4(&[], A4, B4, UDP, 202, &seg, &[16]);
        c.drop(&orphan[1], "IPv4 fragment of an unknown datagram");
        let orphan6 = fragments6(&[], (A6, B6), &[], UDP, 202, &seg, &[16]);
        c.drop(&orphan6[1], "IPv6 fragment of an unknown datagram");
        assert_eq!(c.dropped(UNKNOWN_FLOW), 2, "{hook:?}");
        assert_eq!(
            c.dropped(reason::FW_RULE),
            6,
            "{hook:?}: every fragment of the TCP/22 datagrams"
        );
    }
}

/// Design (docs/security.md): a later fragment that arrives before its first fragment is dropped
/// (`fragment_unknown_flow`); every fragment that arrives after the first passes.
#[test]
fn allowed_fragmented_udp_is_delivered() {
    if !privileged() {
        return;
    }
    for hook in HOOKS {
        let c = Chain::new(hook, allow_list(), Some(to_servers()));
        let dns = udp(5353, 53, None, &[0x44; 300]);
        let other = udp(5353, 54, None, &[0x44; 300]);
        for (id, sizes) in [
            (300u16, vec![8usize, 16]),
            (301, vec![104, 104]),
            (302, vec![256]),
        ] {
            for f in fragments4(&[], A4, B4, UDP, id, &dns, &sizes) {
                c.pass(&f, &format!("fragment of allowed UDP/53 datagram {id}"));
            }
            for f in fragments6(
                &[(0x88a8, 1), (0x8100, 2)],
                (A6, B6),
                &[HOPOPTS],
                UDP,
                u32::from(id),
                &dns,
                &sizes,
            ) {
                c.pass(
                    &f,
                    &format!("IPv6 fragment of allowed UDP/53 datagram {id}"),
                );
            }
            for f in fragments4(&[], A4, B4, UDP, id + 50, &other, &sizes) {
                c.drop(
                    &f,
                    &format!("fragment of denied UDP/54 datagram {}", id + 50),
                );
            }
        }
        // out of order: the last fragment overtakes the first
        let frags = fragments4(&[], A4, B4, UDP, 310, &dns, &[104, 104]);
        c.drop(&frags[2], "last fragment before the first (not yet known)");
        c.pass(&frags[0], "first fragment");
        c.pass(&frags[1], "middle fragment after the first");
        c.pass(&frags[2], "the last fragment again, after the first");
        assert_eq!(c.dropped(UNKNOWN_FLOW), 1, "{hook:?}");
    }
}

/// A frame of EtherType `t` (an IEEE local experimental payload), under `tags`.
fn ether(tags: &[(u16, u16)], t: u16) -> Vec<u8> {
    let mut f = eth(tags, t);
    f.extend_from_slice(&[0x5a; 32]);
    pad60(f)
}

const LLDP: u16 = 0x88cc;
const EXPERIMENTAL: u16 = 0x88b5;

/// `spec.nonIp`: a filtering chain passes the non-IP EtherTypes it lists (default ARP) and drops the
/// rest with reason `non_ip`, whatever the firewall's default action; IP is still judged by the rules.
#[test]
fn non_ip_traffic_is_chosen_per_chain() {
    if !privileged() {
        return;
    }
    for hook in HOOKS {
        // the default, on a default-deny and a default-allow firewall
        for fw in [allow_list(), deny_list()] {
            let c = Chain::new(hook, fw, None);
            c.pass(&arp(&[]), "ARP (default list)");
            c.pass(&arp(&tags(2)), "ARP under two tags (default list)");
            c.drop(&lldp(), "LLDP (not in the default list)");
            c.drop(&ether(&[(0x8100, 7)], LLDP), "tagged LLDP");
            c.drop(&ether(&[], EXPERIMENTAL), "an unlisted EtherType");
            c.pass(&v4(&[], TCP, &syn(80)), "control: allowed TCP/80");
            assert_eq!(c.dropped(reason::NON_IP), 3, "{hook:?}");
            assert_eq!(c.dropped(reason::FW_DEFAULT), 0, "{hook:?}");
        }
        // LLDP chosen: passes, tagged or not; ARP still listed; the rest still dropped; IP by the rules
        let c = Chain::with_non_ip(
            hook,
            allow_list(),
            None,
            NonIpConfig {
                allow: vec![ETHERTYPE_ARP, LLDP],
            },
        );
        c.pass(&lldp(), "LLDP (allowed)");
        c.pass(&ether(&[(0x8100, 7)], LLDP), "tagged LLDP (allowed)");
        c.pass(&arp(&[]), "ARP (allowed)");
        c.drop(&ether(&[], EXPERIMENTAL), "control: an unlisted EtherType");
        c.pass(&v4(&[], TCP, &syn(80)), "control: allowed TCP/80");
        c.drop(&v4(&[], TCP, &syn(22)), "control: denied TCP/22");
        assert_eq!(c.dropped(reason::NON_IP), 1, "{hook:?}");
        // a list without ARP drops ARP; a hex EtherType passes
        let c = Chain::with_non_ip(
            hook,
            deny_list(),
            Some(to_servers()),
            NonIpConfig {
                allow: vec![EXPERIMENTAL],
            },
        );
        c.pass(&ether(&[], EXPERIMENTAL), "the listed EtherType");
        c.drop(
            &arp(&[]),
            "ARP, not listed (enters despite the IP classifier)",
        );
        c.drop(&lldp(), "LLDP, not listed");
        c.drop(&v4(&[], TCP, &syn(22)), "control: denied TCP/22");
        c.pass(&v4(&[], UDP, &udp(1, 53, None, b"q")), "control: UDP/53");
        assert_eq!(c.dropped(reason::NON_IP), 2, "{hook:?}");
        // the same without a classifier
        let c = Chain::with_non_ip(
            hook,
            deny_list(),
            None,
            NonIpConfig {
                allow: vec![EXPERIMENTAL],
            },
        );
        c.pass(&ether(&[], EXPERIMENTAL), "the listed EtherType");
        c.drop(&arp(&[]), "ARP, not listed");
        c.pass(&v4(&[], UDP, &udp(1, 53, None, b"q")), "control: UDP/53");
        assert_eq!(c.dropped(reason::NON_IP), 1, "{hook:?}");
        // the engine refuses IP, VLAN and 802.3-length values, and lists over the bound
        let mut e = load(hook);
        for bad in [
            vec![0x0800],
            vec![0x86dd],
            vec![0x8100],
            vec![0x88a8],
            vec![0x9100],
            vec![0x05dc],
        ] {
            let err = e
                .apply(&ChainConfig {
                    functions: vec![FunctionConfig::new(
                        "fw",
                        FunctionKind::Firewall(allow_list()),
                    )],
                    non_ip: NonIpConfig { allow: bad.clone() },
                    ..Default::default()
                })
                .expect_err("refused");
            assert!(err.to_string().contains("non-IP"), "{bad:x?}: {err}");
        }
        let nine = NonIpConfig {
            allow: (0x9000..0x9009).collect(),
        };
        assert!(nine.check().is_err(), "nine EtherTypes accepted");
    }
}

/// The park of fragments that overtake their first one (both hooks, docs/security.md section 4) is
/// bounded: at most `PARK_PER_DGRAM` frames per datagram and `PARK_MAX` in all, the rest dropped as
/// `fragment_unknown_flow`; parked frames past the timeout are reclaimed (`fragment_expired`) when the
/// park is full. PROG_TEST_RUN runs on loopback, where frames are parked but never released (the sweep
/// of a live XDP chain: `live_xdp_delivers_reordered_allowed_fragments_and_never_denied_ones`).
#[test]
fn the_fragment_park_is_bounded_and_expires() {
    if !privileged() {
        return;
    }
    for hook in HOOKS {
        let c = Chain::new(hook, allow_list(), None);
        let dns = udp(5353, 53, None, &[0x44; 200]);
        let one = fragments4(&[], A4, B4, UDP, 1, &dns, &[16; 12]);
        for f in &one[1..=PARK_PER_DGRAM + 2] {
            c.drop(f, "a fragment overtaking its first");
        }
        assert_eq!(
            c.dropped(reason::FRAG_PARKED),
            PARK_PER_DGRAM as u64,
            "{hook:?}"
        );
        assert_eq!(c.dropped(reason::FRAG_UNKNOWN), 2);
        // a flood of orphans, one per datagram: the park fills and holds
        let flood = PARK_MAX - PARK_PER_DGRAM + 20;
        for id in 0..flood {
            let frags = fragments4(&[], A4, B4, UDP, 2 + id as u16, &dns, &[104]);
            c.drop(&frags[1], "an orphan of the flood");
        }
        assert_eq!(c.dropped(reason::FRAG_PARKED), PARK_MAX as u64);
        assert_eq!(c.dropped(reason::FRAG_UNKNOWN), 2 + 20);
        assert_eq!(c.dropped(reason::FRAG_EXPIRED), 0);
        // control: allowed traffic still passes while the park is full
        c.pass(
            &v4(&[], UDP, &udp(1, 53, None, b"q")),
            "unfragmented UDP/53",
        );
        for f in fragments4(&[], A4, B4, UDP, 5000, &dns, &[104]) {
            c.pass(&f, "an in-order allowed datagram");
        }
        // past the timeout (1 s), the next orphan reclaims the expired frames and is parked
        std::thread::sleep(Duration::from_millis(1300));
        let frags = fragments4(&[], A4, B4, UDP, 6000, &dns, &[104]);
        c.drop(&frags[1], "an orphan after the timeout");
        assert_eq!(c.dropped(reason::FRAG_EXPIRED), PARK_MAX as u64);
        assert_eq!(c.dropped(reason::FRAG_PARKED), PARK_MAX as u64 + 1);
        assert_eq!(c.dropped(reason::FRAG_UNKNOWN), 2 + 20);
    }
}

#[test]
fn broken_tcp_data_offsets_are_dropped() {
    if !privileged() {
        return;
    }
    for hook in HOOKS {
        let c = Chain::new(hook, allow_list(), Some(to_servers()));
        for doff in 0..5u8 {
            let mut seg = tcp(40000, 80, 5, 0x02, b"data");
            seg[12] = doff << 4;
            c.drop(&v4(&[], TCP, &seg), &format!("TCP data offset {doff}"));
            c.drop(
                &v6(&[], &[], TCP, &seg),
                &format!("v6 TCP data offset {doff}"),
            );
        }
        // a header longer than the segment
        let mut long = tcp(40000, 80, 5, 0x02, b"0123456789");
        long[12] = 15 << 4;
        c.drop(
            &v4(&[], TCP, &long),
            "TCP data offset 15 in a 30-byte segment",
        );
        // controls: options within the segment pass
        c.pass(
            &v4(&[], TCP, &tcp(40000, 80, 5, 0x02, b"data")),
            "TCP data offset 5",
        );
        c.pass(
            &v4(&[], TCP, &tcp(40000, 80, 8, 0x02, b"data")),
            "TCP data offset 8",
        );
        c.pass(
            &v4(&[], TCP, &tcp(40000, 80, 15, 0x02, b"")),
            "TCP data offset 15, 60-byte header",
        );
        assert_eq!(c.dropped(reason::MALFORMED), 11, "{hook:?}");
    }
}

#[test]
fn truncated_headers_never_bypass_the_chain() {
    if !privileged() {
        return;
    }
    for hook in HOOKS {
        let c = Chain::new(hook, allow_list(), Some(to_servers()));
        let good4 = v4(&[], UDP, &udp(1, 53, None, b"query"));
        let good6 = v6(&[], &[HOPOPTS], UDP, &udp(1, 53, None, b"query"));
        c.pass(&good4, "intact IPv4 UDP/53");
        c.pass(&good6, "intact IPv6 UDP/53");
        let mut bad: Vec<(Vec<u8>, &str)> = Vec::new();
        let mut tot = good4.clone();
        tot[16..18].copy_from_slice(&200u16.to_be_bytes());
        bad.push((tot, "IPv4 total length beyond the frame"));
        bad.push((
            v4(&[], UDP, &udp(1, 53, Some(200), b"query")),
            "UDP length beyond the payload",
        ));
        bad.push((
            v4(&[], UDP, &udp(1, 53, Some(4), b"query")),
            "UDP length below 8",
        ));
        bad.push((
            v4(&[], UDP, &[0, 1, 0, 53]),
            "UDP header cut (padded frame)",
        ));
        bad.push((
            v4(&[], TCP, &syn(80)[..12]),
            "TCP header cut (padded frame)",
        ));
        bad.push((
            v4(&[], ICMP, &[8, 0, 0, 0]),
            "ICMP header cut (padded frame)",
        ));
        let mut plen = good6.clone();
        plen[14 + 4..14 + 6].copy_from_slice(&300u16.to_be_bytes());
        bad.push((plen, "IPv6 payload length beyond the frame"));
        let mut ext = v6(&[], &[HOPOPTS], UDP, &udp(1, 53, None, b"query"));
        ext[14 + 40 + 1] = 20; // hop-by-hop header of 168 bytes in a 29-byte payload
        bad.push((ext, "IPv6 extension header beyond the payload"));
        bad.push((
            v6(&[], &[], UDP, &udp(1, 53, None, b"")[..6]),
            "IPv6 UDP header cut",
        ));
        let mut vlan = eth(&[(0x8100, 5)], 0x0800);
        vlan.truncate(16);
        bad.push((vlan, "VLAN tag cut"));
        for (f, what) in &bad {
            c.drop(f, what);
        }
        assert_eq!(c.dropped(reason::MALFORMED), bad.len() as u64, "{hook:?}");
    }
}

#[test]
fn tightening_a_policy_stops_established_flows() {
    if !privileged() {
        return;
    }
    let allow = |ports: &[u16]| FirewallConfig {
        rules: ports
            .iter()
            .enumerate()
            .map(|(i, p)| rule(i as u32 + 1, Action::Allow, TCP, *p))
            .collect(),
        default_action: Action::Deny,
        conntrack: true,
        conntrack_timeout: Duration::from_secs(60),
    };
    let pkt = |src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16| {
        let mut f = eth(&[], 0x0800);
        f.extend_from_slice(&ipv4(
            src,
            dst,
            TCP,
            1,
            0,
            &[],
            &tcp(sport, dport, 5, 0x10, b"x"),
        ));
        pad60(f)
    };
    for hook in HOOKS {
        for in_place in [true, false] {
            let mut c = Chain::new(hook, allow(&[80, 22]), None);
            let web = (pkt(A4, 40000, B4, 80), pkt(B4, 80, A4, 40000));
            let ssh = (pkt(A4, 40001, B4, 22), pkt(B4, 22, A4, 40001));
            for (req, reply) in [&web, &ssh] {
                c.drop(reply, "reply before its request");
                c.pass(req, "request");
                c.pass(reply, "reply of an allowed flow");
            }
            let tighter = allow(&[80]);
            if in_place {
                c.e.update_firewall(c.inst, &tighter).expect("update");
            } else {
                let applied =
                    c.e.apply(&ChainConfig {
                        functions: vec![FunctionConfig::new("fw", FunctionKind::Firewall(tighter))],
                        ..Default::default()
                    })
                    .expect("apply");
                assert_ne!(
                    applied.instances[0], c.inst,
                    "a changed function gets a new instance"
                );
                c.inst = applied.instances[0];
            }
            let hits = c.e.function_stats(c.inst).expect("stats").aux;
            c.drop(&ssh.1, "reply of a flow the new policy denies");
            c.drop(&ssh.0, "request of a flow the new policy denies");
            c.pass(&web.1, "reply of a flow the new policy still allows");
            c.pass(&web.0, "request of a flow the new policy still allows");
            let s = c.e.function_stats(c.inst).expect("stats");
            assert_eq!(
                s.aux,
                hits + 2,
                "{hook:?}: the allowed flow kept its state (conntrack hits)"
            );
            assert_eq!(
                c.e.conntrack_entries(c.inst),
                1,
                "{hook:?} in place {in_place}: the denied flow is gone"
            );
        }
    }
}
