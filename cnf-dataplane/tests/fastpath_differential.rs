//! Differential test of the established-flow fast path (issue 17, "correctness first"): the same
//! sequence of random packets runs through two engines with the same five-function chain —
//! firewall (conntrack and rules), NAT (SNAT and DNAT), load balancer, rate limiter, monitor, then a
//! forwarder — one with the fast path on ([`Engine::set_fast_path`], the default) and one with it
//! off, so that every packet there runs the whole chain. Every packet's verdict and output frame
//! must be identical, and so must, before every rule change and at the end, each function's
//! counters, the firewall's rule hits, the monitor's counters, the chain's counters and the
//! conntrack / NAT entry counts.
//!
//! The packets (seeded, reproducible): mostly repeats of a bounded flow set so that flows become
//! established, in both directions (a reply is built from the translated tuple the chain put out),
//! TCP with SYN / SYN-ACK / ACK / PSH / FIN / RST, UDP, ICMP echo, IPv4 and IPv6, some VLAN-tagged,
//! some first and later fragments, some one-off flows, some at TTL 1, some malformed (cut inside
//! their IP or TCP/UDP header, or a bad IPv4 header length). Between batches the rules change at
//! random, identically on both engines: `update_firewall`, new load-balancer backends, or a
//! re-applied chain (new rules, another monitor mode, another rate-limiter key). New flows start only
//! in the first fifth of each batch: the creation of any flow state ends the fast-path entries that
//! rely on missing state, so the steady rest of the batch is where established flows can take it.
//!
//! Time cannot make the two runs diverge: both engines see each packet one after the other
//! (microseconds apart), and no state can age or run dry during the test — the conntrack, NAT and
//! load-balancer idle timeouts are an hour; the rate limiter admits 10^9 packets per second with a
//! burst of 10^6, so no bucket can empty at the rate `BPF_PROG_TEST_RUN` runs; a later fragment is
//! sent only within [`FRAG_WINDOW`] packets of its first fragment, far inside the 30 s fragment
//! timeout; and monitor sampling and latency histograms (which read the clock) are off. The fast
//! path's own entry lifetime (at most 1 s) decides only *which* path a packet takes, never what comes
//! out, so it needs no such care: that is what this test checks.
//!
//! A control run feeds a few thousand packets to two engines whose chains differ in one detail
//! (the SNAT port pool) and requires the comparison to report the difference.

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use cnf_dataplane::engine::{
    Action, ChainConfig, CountBy, Engine, FirewallConfig, FirewallRule, ForwardMode,
    ForwarderConfig, FunctionConfig, FunctionKind, Hook, IpCidr, LbBackendConfig, LbConfig,
    MonitorConfig, NatConfig, NatRule, PortRange, RateLimitKey, RateLimiterConfig,
};
use common::*;

/// Later fragments follow their first fragment within this many packets.
const FRAG_WINDOW: usize = 200;
const HOUR: Duration = Duration::from_secs(3600);
const SNAT_ADDR: &str = "203.0.113.1";
const DNAT4: &str = "192.0.2.10";
const DNAT6: &str = "2001:db8:d::10";
const VIP: &str = "192.0.2.100";
const PORTS: [u16; 8] = [22, 25, 53, 80, 443, 5353, 8080, 9999];

fn cidr(s: &str) -> IpCidr {
    s.parse().expect("cidr")
}

/// The client and server prefixes the random rules talk about.
const SRC_NETS: [[&str; 3]; 2] = [
    ["10.0.0.0/24", "10.0.1.0/24", "10.9.0.0/16"],
    ["2001:db8:1::/64", "2001:db8:2::/64", "2001:db8::/32"],
];
const DST_NETS: [[&str; 3]; 2] = [
    ["198.51.100.0/30", "192.0.2.0/24", "172.16.0.0/12"],
    ["2001:db8:5::/64", "2001:db8:d::/64", "2001:db8:e::/48"],
];

/// A random rule set: mostly allows, a few denies, default allow three times in four.
fn random_firewall(rng: &mut Rng) -> FirewallConfig {
    let n = 1 + rng.below(40) as usize;
    let rules = (0..n)
        .map(|i| {
            let protocol = rng.pick(&[None, Some(TCP), Some(TCP), Some(UDP), Some(ICMP)]);
            let ports = matches!(protocol, None | Some(TCP) | Some(UDP));
            let fam = rng.below(2) as usize;
            FirewallRule {
                priority: i as u32,
                action: if rng.chance(75) {
                    Action::Allow
                } else {
                    Action::Deny
                },
                protocol,
                src: rng.chance(40).then(|| cidr(rng.pick(&SRC_NETS[fam]))),
                dst: rng.chance(40).then(|| cidr(rng.pick(&DST_NETS[fam]))),
                src_ports: None,
                dst_ports: (ports && rng.chance(60)).then(|| {
                    let p = rng.pick(&PORTS);
                    if rng.chance(70) {
                        PortRange::single(p)
                    } else {
                        PortRange::new(p, p.saturating_add(rng.below(2000) as u16)).expect("range")
                    }
                }),
            }
        })
        .collect();
    FirewallConfig {
        rules,
        default_action: if rng.chance(75) {
            Action::Allow
        } else {
            Action::Deny
        },
        conntrack: true,
        conntrack_timeout: HOUR,
    }
}

fn random_lb(rng: &mut Rng) -> LbConfig {
    let n = 1 + rng.below(6) as usize;
    let backends = (0..n)
        .map(|i| LbBackendConfig {
            addr: ip(&format!("172.16.1.{}", 1 + i + rng.below(3) as usize * 10)),
            port: rng.chance(50).then_some(8000 + i as u16),
            weight: 1 + rng.below(100) as u32,
        })
        .collect();
    LbConfig {
        vip: ip(VIP),
        port: Some(80),
        protocol: Some(TCP),
        backends,
        affinity_timeout: HOUR,
        table_size: 65537,
    }
}

/// The chain's configuration at one moment (what the rule changes vary).
#[derive(Clone)]
struct Setup {
    fw: FirewallConfig,
    lb: LbConfig,
    count_by: CountBy,
    rl_key: RateLimitKey,
    snat_ports: PortRange,
}

impl Setup {
    fn chain(&self) -> ChainConfig {
        let f = FunctionConfig::new;
        ChainConfig {
            functions: vec![
                f("fw", FunctionKind::Firewall(self.fw.clone())),
                f(
                    "nat",
                    FunctionKind::Nat(NatConfig {
                        rules: vec![
                            NatRule::Snat {
                                match_src: vec![cidr("10.0.0.0/16")],
                                to_addr: ip(SNAT_ADDR),
                                ports: self.snat_ports,
                            },
                            NatRule::Dnat {
                                protocol: Some(TCP),
                                match_dst: ip(DNAT4),
                                match_port: Some(8080),
                                to_addr: ip("172.16.0.10"),
                                to_port: Some(80),
                            },
                            NatRule::Dnat {
                                protocol: None,
                                match_dst: ip(DNAT6),
                                match_port: Some(53),
                                to_addr: ip("2001:db8:e::10"),
                                to_port: Some(5353),
                            },
                        ],
                        timeout: HOUR,
                    }),
                ),
                f("lb", FunctionKind::LoadBalancer(self.lb.clone())),
                f(
                    "rl",
                    FunctionKind::RateLimiter(RateLimiterConfig {
                        key: self.rl_key,
                        packets_per_sec: Some(1_000_000_000),
                        burst_packets: 1_000_000,
                        bits_per_sec: None,
                        burst_bytes: 0,
                    }),
                ),
                f(
                    "mon",
                    FunctionKind::Monitor(MonitorConfig {
                        sample_rate: 0,
                        count_by: self.count_by,
                    }),
                ),
                f(
                    "fwd",
                    FunctionKind::Forwarder(ForwarderConfig {
                        mode: ForwardMode::Tx,
                        src_mac: Some([0x02, 0xaa, 0, 0, 0, 1]),
                        dst_mac: Some([0x02, 0xbb, 0, 0, 0, 2]),
                        decrement_ttl: true,
                    }),
                ),
            ],
            ..Default::default()
        }
    }
}

/// One flow of the bounded set: the client's side, and once a packet of it came out of the chain,
/// the translated tuple its replies are addressed to.
struct Flow {
    pkt: Pkt,
    /// (source, source port or echo id, destination, destination port) as the chain put it out.
    out: Option<(IpAddr, u16, IpAddr, u16)>,
    sent: u64,
    replied: u64,
}

fn random_flow(rng: &mut Rng) -> Flow {
    let host = |rng: &mut Rng| 1 + rng.below(20);
    let v6 = rng.chance(30);
    let (src, dst) = if v6 {
        let src = format!("2001:db8:{}::{}", 1 + rng.below(2), host(rng));
        let dst = if rng.chance(25) {
            DNAT6.to_string()
        } else {
            format!("2001:db8:5::{}", 1 + rng.below(4))
        };
        (src, dst)
    } else {
        let src = match rng.below(10) {
            0 => format!("10.9.0.{}", host(rng)),
            n => format!("10.0.{}.{}", n % 2, host(rng)),
        };
        let dst = match rng.below(10) {
            0..2 => VIP.to_string(),
            2 => DNAT4.to_string(),
            _ => format!("198.51.100.{}", 1 + rng.below(4)),
        };
        (src, dst)
    };
    let sport = 1024 + rng.below(60000) as u16;
    let dport = match (dst.as_str(), rng.below(4)) {
        (VIP, 0..3) => 80,
        (DNAT4, 0..3) => 8080,
        (DNAT6, 0..3) => 53,
        _ => rng.pick(&PORTS),
    };
    let l4 = match rng.below(10) {
        0..6 => L4::Tcp {
            sport,
            dport,
            flags: 0x02,
        },
        6..9 => L4::Udp { sport, dport },
        _ => L4::Echo {
            id: sport,
            reply: false,
        },
    };
    let mut pkt = Pkt::new(&src, &dst, l4);
    if rng.chance(10) {
        pkt.vlans = vec![1 + rng.below(4094) as u16];
    }
    Flow {
        pkt,
        out: None,
        sent: 0,
        replied: 0,
    }
}

/// TCP flags of a packet after the flow's first: mostly ACK, sometimes PSH-ACK, FIN, RST.
fn later_flags(rng: &mut Rng) -> u8 {
    match rng.below(100) {
        0..70 => 0x10,
        70..90 => 0x18,
        90..96 => 0x11,
        96..98 => 0x04,
        _ => 0x02,
    }
}

fn with_flags(l4: &L4, flags: u8) -> L4 {
    match *l4 {
        L4::Tcp { sport, dport, .. } => L4::Tcp {
            sport,
            dport,
            flags,
        },
        ref other => other.clone(),
    }
}

/// The reply of a flow whose packet came out as `out`, with `flags` for TCP.
fn reply_pkt(f: &Flow, out: (IpAddr, u16, IpAddr, u16), flags: u8) -> Pkt {
    let (src, sport, dst, dport) = out;
    let l4 = match f.pkt.l4 {
        L4::Tcp { .. } => L4::Tcp {
            sport: dport,
            dport: sport,
            flags,
        },
        L4::Udp { .. } => L4::Udp {
            sport: dport,
            dport: sport,
        },
        L4::Echo { .. } => L4::Echo {
            id: sport,
            reply: true,
        },
        L4::Other(p) => L4::Other(p),
    };
    let mut p = Pkt::new(&dst.to_string(), &src.to_string(), l4);
    p.vlans = f.pkt.vlans.clone();
    p
}

/// (source, source port / echo id, destination, destination port) of an output frame.
fn out_tuple(frame: &[u8]) -> Option<(IpAddr, u16, IpAddr, u16)> {
    let (src, dst, proto, seg) = l4_segment(frame).ok()??;
    let l4 = frame.get(seg)?;
    match proto {
        TCP | UDP if l4.len() >= 4 => Some((
            src,
            u16::from_be_bytes([l4[0], l4[1]]),
            dst,
            u16::from_be_bytes([l4[2], l4[3]]),
        )),
        ICMP | ICMPV6 if l4.len() >= 6 => {
            let id = u16::from_be_bytes([l4[4], l4[5]]);
            Some((src, id, dst, id))
        }
        _ => None,
    }
}

/// A frame cut inside its L4 header, or (`l3`: only XDP, `BPF_PROG_TEST_RUN` refuses such skbs for
/// TC) inside its IP header or an IPv4 frame with a header length below 5 words.
fn malformed(rng: &mut Rng, p: &Pkt, l3_too: bool) -> Vec<u8> {
    let mut f = p.build();
    let l3 = 14 + 4 * p.vlans.len();
    if l3_too && p.src.is_ipv4() && rng.chance(30) {
        f[l3] = 0x40 | rng.below(5) as u8;
        return f;
    }
    let ip_len = if p.src.is_ipv4() { 20 } else { 40 };
    let cut = if l3_too && rng.chance(50) {
        l3 + 1 + rng.below(ip_len - 1) as usize
    } else {
        l3 + ip_len as usize + 1 + rng.below(7) as usize
    };
    f.truncate(cut.min(f.len() - 1));
    f
}

/// What the generator sent, by kind.
#[derive(Debug, Default)]
struct Mix {
    packets: u64,
    /// Packets of a flow (direction) already seen before.
    repeats: u64,
    replies: u64,
    one_off: u64,
    fragments: u64,
    malformed: u64,
    v6: u64,
    vlan: u64,
    tcp_fin_rst: u64,
}

/// The packet generator over a bounded flow set.
struct Gen {
    rng: Rng,
    flows: Vec<Flow>,
    /// (packet index, first fragment) of recent first fragments.
    firsts: Vec<(usize, Pkt)>,
    mix: Mix,
    /// Malformed frames may be cut inside the IP header (XDP).
    l3_malformed: bool,
    /// No new flows (no one-off flows, no first packet of a flow of the set): the stretch of a
    /// batch in which the fast path's entries can live (a new flow's state ends those of flows
    /// that rely on missing state, e.g. untranslated by the load balancer).
    steady: bool,
}

/// What a generated packet was, so its output can teach the generator the flow's translation.
enum Sent {
    Forward(usize),
    Other,
}

impl Gen {
    fn new(seed: u64, nflows: usize, l3_malformed: bool) -> Self {
        let mut rng = Rng(seed);
        let flows = (0..nflows).map(|_| random_flow(&mut rng)).collect();
        Self {
            rng,
            flows,
            firsts: Vec::new(),
            mix: Mix::default(),
            l3_malformed,
            steady: false,
        }
    }

    /// A flow index, skewed towards the first ones (a few heavy flows, a long tail); when steady,
    /// one that has started (if one of a few tries finds one).
    fn pick_flow(&mut self) -> usize {
        let n = self.flows.len() as u64;
        let mut k = 0;
        for _ in 0..8 {
            let a = self.rng.below(n);
            let b = self.rng.below(n);
            k = a.min(b) as usize;
            if !self.steady || self.flows[k].sent > 0 {
                break;
            }
        }
        k
    }

    fn next(&mut self, i: usize) -> (Vec<u8>, Sent) {
        self.firsts.retain(|(at, _)| i - at < FRAG_WINDOW);
        self.mix.packets += 1;
        let roll = self.rng.below(1000);
        let (frame, sent) = if roll < 30 {
            self.mix.malformed += 1;
            let k = self.pick_flow();
            let p = self.flows[k].pkt.clone();
            (malformed(&mut self.rng, &p, self.l3_malformed), Sent::Other)
        } else if roll < 50 && !self.steady {
            self.mix.one_off += 1;
            let f = random_flow(&mut self.rng);
            self.note(&f.pkt);
            (f.pkt.build(), Sent::Other)
        } else if roll < 70 {
            self.mix.fragments += 1;
            let k = self.pick_flow();
            let mut p = self.flows[k].pkt.clone();
            p.l4 = with_flags(&p.l4, 0x10);
            p.frag = Frag::First;
            self.firsts.push((i, p.clone()));
            self.note(&p);
            (p.build(), Sent::Other)
        } else if roll < 85 && !self.firsts.is_empty() {
            self.mix.fragments += 1;
            let j = self.rng.below(self.firsts.len() as u64) as usize;
            let mut p = self.firsts[j].1.clone();
            p.frag = Frag::Later(1 + self.rng.below(20) as u16);
            p.payload = vec![0x5a; 8 * (1 + self.rng.below(4) as usize)];
            self.note(&p);
            (p.build(), Sent::Other)
        } else {
            let k = self.pick_flow();
            let reply = self.flows[k].out.filter(|_| self.rng.chance(40));
            let ttl1 = self.rng.chance(1);
            let f = &mut self.flows[k];
            let (mut p, sent) = match reply {
                Some(out) => {
                    let flags = if f.replied == 0 {
                        0x12
                    } else {
                        later_flags(&mut self.rng)
                    };
                    if f.replied > 0 {
                        self.mix.repeats += 1;
                    }
                    f.replied += 1;
                    self.mix.replies += 1;
                    (reply_pkt(f, out, flags), Sent::Other)
                }
                None => {
                    let flags = if f.sent == 0 {
                        0x02
                    } else {
                        later_flags(&mut self.rng)
                    };
                    if f.sent > 0 {
                        self.mix.repeats += 1;
                    }
                    f.sent += 1;
                    let mut p = f.pkt.clone();
                    p.l4 = with_flags(&p.l4, flags);
                    (p, Sent::Forward(k))
                }
            };
            if ttl1 {
                p.ttl = 1;
            }
            self.note(&p);
            (p.build(), sent)
        };
        (frame, sent)
    }

    fn note(&mut self, p: &Pkt) {
        self.mix.v6 += u64::from(p.src.is_ipv6());
        self.mix.vlan += u64::from(!p.vlans.is_empty());
        if let L4::Tcp { flags, .. } = p.l4 {
            self.mix.tcp_fin_rst += u64::from(flags & 0x05 != 0);
        }
    }

    /// Learns the translated tuple of flow `k` from the frame the chain put out for it.
    fn learn(&mut self, sent: &Sent, out: &[u8]) {
        if let Sent::Forward(k) = *sent
            && let Some(t) = out_tuple(out)
        {
            self.flows[k].out = Some(t);
        }
    }
}

/// The counters both engines must agree on: per function (instance order), firewall hits by
/// priority, monitor classes and keyed counters, chain totals, conntrack and NAT entries.
fn snapshot(e: &Engine, inst: &[u32]) -> String {
    let mut s = String::new();
    for (pos, &i) in inst.iter().enumerate() {
        let st = e.function_stats(i).expect("function stats");
        s += &format!(
            "fn {pos}: in {} bytes {} passed {} aux {} dropped {:?}\n",
            st.packets_in, st.bytes_in, st.passed, st.aux, st.dropped
        );
    }
    let hits: BTreeMap<u32, u64> = e.firewall_hits_by_priority(inst[0]).expect("fw hits");
    s += &format!("fw hits {hits:?}\n");
    s += &format!("conntrack {}\n", e.conntrack_entries(inst[0]));
    s += &format!("nat {}\n", e.nat_entries(inst[1]));
    let classes: Vec<(u64, u64)> = e
        .monitor_classes(inst[4])
        .expect("monitor classes")
        .iter()
        .map(|c| (c.packets, c.bytes))
        .collect();
    s += &format!("monitor classes {classes:?}\n");
    let keyed: BTreeMap<u32, (u64, u64)> = e
        .monitor_keyed(inst[4])
        .expect("monitor keyed")
        .into_iter()
        .map(|(k, c)| (k, (c.packets, c.bytes)))
        .collect();
    s += &format!("monitor keyed {keyed:?}\n");
    let c = e.chain_totals().expect("chain totals");
    s += &format!(
        "chain classified {} bypassed {} completed {} broken {}\n",
        c.classified, c.bypassed, c.completed, c.broken
    );
    s
}

fn same_counters(fast: &Engine, slow: &Engine, inst: &[u32], when: &str) -> Result<(), String> {
    let (a, b) = (snapshot(fast, inst), snapshot(slow, inst));
    if a == b {
        Ok(())
    } else {
        Err(format!(
            "counters differ {when}:\nfast path on:\n{a}fast path off:\n{b}"
        ))
    }
}

/// Both engines, their chain's instances and configuration.
struct Pair {
    fast: Engine,
    slow: Engine,
    inst: Vec<u32>,
    setup: Setup,
}

impl Pair {
    fn new(hook: Hook, fast: Setup, slow: Setup) -> Self {
        let mut f = load(hook);
        let mut s = load(hook);
        f.set_fast_path(true).expect("fast path on");
        s.set_fast_path(false).expect("fast path off");
        assert!(f.fast_path() && !s.fast_path());
        let a = f.apply(&fast.chain()).expect("apply (fast)");
        let b = s.apply(&slow.chain()).expect("apply (slow)");
        assert_eq!(a.instances, b.instances, "both engines number alike");
        Self {
            fast: f,
            slow: s,
            inst: a.instances,
            setup: fast,
        }
    }

    /// One random rule change, identical on both engines; returns what it was.
    fn change(&mut self, rng: &mut Rng) -> &'static str {
        match rng.below(4) {
            0 | 1 => {
                let fw = random_firewall(rng);
                for e in [&mut self.fast, &mut self.slow] {
                    e.update_firewall(self.inst[0], &fw)
                        .expect("update_firewall");
                }
                self.setup.fw = fw;
                "update_firewall"
            }
            2 => {
                let lb = random_lb(rng);
                for e in [&mut self.fast, &mut self.slow] {
                    e.update_load_balancer(self.inst[2], &lb)
                        .expect("update lb");
                }
                self.setup.lb = lb;
                "lb backends"
            }
            _ => {
                if rng.chance(50) {
                    self.setup.fw = random_firewall(rng);
                }
                self.setup.count_by =
                    rng.pick(&[CountBy::Protocol, CountBy::DestinationPort, CountBy::Dscp]);
                self.setup.rl_key = rng.pick(&[
                    RateLimitKey::Global,
                    RateLimitKey::SourceIp,
                    RateLimitKey::Flow,
                ]);
                let chain = self.setup.chain();
                let a = self.fast.apply(&chain).expect("re-apply (fast)");
                let b = self.slow.apply(&chain).expect("re-apply (slow)");
                assert_eq!(a.instances, b.instances, "both engines number alike");
                self.inst = a.instances;
                "re-applied chain"
            }
        }
    }
}

/// Verdict counts of a run.
#[derive(Debug, Default)]
struct Outcomes {
    by_code: BTreeMap<u32, u64>,
    rewritten: u64,
}

/// Runs `packets` packets in batches with random rule changes between them; the first difference
/// is the error.
fn run(pair: &mut Pair, seed: u64, packets: usize) -> Result<(Mix, Outcomes), String> {
    let mut g = Gen::new(seed, 400, pair.fast.hook() == Hook::Xdp);
    let mut rng = Rng(seed ^ 0x9e37_79b9_7f4a_7c15);
    let mut seen = Outcomes::default();
    let mut changes: BTreeMap<&str, u64> = BTreeMap::new();
    let (mut batch_end, mut steady_from) = (0, 0);
    for i in 0..packets {
        if i == batch_end {
            if i > 0 {
                same_counters(
                    &pair.fast,
                    &pair.slow,
                    &pair.inst,
                    &format!("before packet {i}"),
                )?;
                *changes.entry(pair.change(&mut rng)).or_default() += 1;
            }
            let len = 1000 + rng.below(7000) as usize;
            batch_end = i + len;
            // new flows start in the first fifth of a batch only
            steady_from = i + len / 5;
        }
        g.steady = i >= steady_from;
        let (frame, sent) = g.next(i);
        let a = pair
            .fast
            .test_run(&frame, 1)
            .map_err(|e| format!("packet {i}: {e}"))?;
        let b = pair
            .slow
            .test_run(&frame, 1)
            .map_err(|e| format!("packet {i}: {e}"))?;
        if a.retval != b.retval || a.data != b.data {
            return Err(format!(
                "packet {i} (seed {seed:#x}) differs: fast path on -> {} {:02x?}, off -> {} {:02x?}\ninput {frame:02x?}",
                a.retval, a.data, b.retval, b.data
            ));
        }
        *seen.by_code.entry(a.retval).or_default() += 1;
        seen.rewritten += u64::from(a.data != frame);
        g.learn(&sent, &a.data);
    }
    same_counters(&pair.fast, &pair.slow, &pair.inst, "at the end")?;
    eprintln!("rule changes: {changes:?}");
    Ok((g.mix, seen))
}

/// Packets that took the fast path (`ChainCounters::fast`, a field of the fast path's own
/// counters), read by name so that this test runs on a build without it too; `None` there.
fn fast_path_packets(e: &Engine) -> Option<u64> {
    let c = e.chain_totals().expect("chain totals");
    serde_json::to_value(&c).ok()?.get("fast")?.as_u64()
}

fn initial(rng: &mut Rng) -> Setup {
    Setup {
        fw: random_firewall(rng),
        lb: random_lb(rng),
        count_by: CountBy::Protocol,
        rl_key: RateLimitKey::SourceIp,
        snat_ports: PortRange::new(20000, 29999).expect("range"),
    }
}

fn differential(hook: Hook, packets: usize, seed: u64) {
    let v = verdicts(hook);
    let mut rng = Rng(seed);
    let setup = initial(&mut rng);
    let mut pair = Pair::new(hook, setup.clone(), setup);
    let t0 = Instant::now();
    let (mix, seen) = run(&mut pair, seed, packets).unwrap_or_else(|e| panic!("{hook:?}: {e}"));
    let fw = pair.fast.function_stats(pair.inst[0]).expect("fw stats");
    eprintln!(
        "{hook:?}: {} packets identical with the fast path on and off in {:.1?}: {} established \
         repeats, {} replies, {} one-off flows, {} fragments, {} malformed, {} IPv6, {} VLAN, \
         {} TCP FIN/RST; verdicts {:?}, {} frames rewritten; firewall conntrack hits (this \
         instance) {}",
        mix.packets,
        t0.elapsed(),
        mix.repeats,
        mix.replies,
        mix.one_off,
        mix.fragments,
        mix.malformed,
        mix.v6,
        mix.vlan,
        mix.tcp_fin_rst,
        seen.by_code,
        seen.rewritten,
        fw.aux,
    );
    match (fast_path_packets(&pair.fast), fast_path_packets(&pair.slow)) {
        (Some(on), Some(off)) => {
            eprintln!(
                "{hook:?}: {on} of {} packets took the fast path ({off} with it off)",
                mix.packets
            );
            assert_eq!(
                off, 0,
                "{hook:?}: the engine with the fast path off took it"
            );
            assert!(
                on > 0,
                "{hook:?}: no packet took the fast path: nothing was compared"
            );
        }
        _ => eprintln!("{hook:?}: this build counts no fast-path packets (no ChainCounters::fast)"),
    }
    // the sequence is what the test claims: mostly established repeats, both outcomes, rewrites
    let n = mix.packets;
    assert!(mix.repeats * 10 > n * 7, "repeats {} of {n}", mix.repeats);
    assert!(mix.replies * 10 > n, "replies {} of {n}", mix.replies);
    let tx = seen.by_code.get(&v.tx).copied().unwrap_or(0);
    let drop = seen.by_code.get(&v.drop).copied().unwrap_or(0);
    assert!(
        tx * 2 > n,
        "forwarded {tx} of {n}: the chain must not drop everything"
    );
    assert!(
        drop * 50 > n,
        "dropped {drop} of {n}: the rules must deny some"
    );
    assert!(
        seen.rewritten * 2 > n,
        "rewritten {} of {n}",
        seen.rewritten
    );
}

#[test]
fn xdp_fast_path_on_and_off_agree_on_120k_packets() {
    if !privileged() {
        return;
    }
    differential(Hook::Xdp, 120_000, 0xfa57_0001);
}

#[test]
fn tc_fast_path_on_and_off_agree() {
    if !privileged() {
        return;
    }
    differential(Hook::Tc, 30_000, 0xfa57_0002);
}

/// The control: two engines whose chains differ only in the SNAT port pool must be told apart.
#[test]
fn the_comparison_catches_a_difference() {
    if !privileged() {
        return;
    }
    let mut rng = Rng(0xfa57_0003);
    let setup = initial(&mut rng);
    let mut other = setup.clone();
    other.snat_ports = PortRange::new(40000, 49999).expect("range");
    let mut pair = Pair::new(Hook::Xdp, setup, other);
    match run(&mut pair, 0xfa57_0003, 5000) {
        Ok((mix, _)) => panic!(
            "{} packets through different chains compared equal",
            mix.packets
        ),
        Err(e) => {
            assert!(e.contains("differs"), "{e}");
            eprintln!("control caught: {}", e.lines().next().unwrap_or_default());
        }
    }
}
