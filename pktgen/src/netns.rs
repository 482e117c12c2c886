//! Network-namespace test beds: two namespaces joined by a veth pair, removed again on drop
//! (an RAII guard), plus helpers to run code or commands inside a namespace.
//!
//! Names are unique per process and per pair (`pktgen-<pid>-<n>-a`), so tests can run in
//! parallel with each other and with other test binaries. Namespaces left behind by a process
//! that died without unwinding are swept when the next pair is created.
//!
//! Addresses come from the documentation ranges (192.0.2.0/24 and 2001:db8::/64), which are
//! never routed: each pair is an isolated link, so every pair may reuse them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use netkit::VethEnd;
use thiserror::Error;

/// Namespace-helper errors.
#[derive(Debug, Error)]
pub enum NetnsError {
    /// A command failed.
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        cmd: String,
        /// Its exit status.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// A netlink request (link, address, neighbour) failed.
    #[error(transparent)]
    Netlink(#[from] netkit::NlError),
    /// A namespace could not be created, deleted or entered, or a program started in it.
    #[error(transparent)]
    Netns(#[from] netkit::netns::NetnsError),
    /// A command could not be started, or a namespace file could not be opened.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

const PREFIX: &str = "pktgen-";
/// MAC address of A's veth (locally administered; every pair is its own isolated link).
pub const MAC_A: &str = "02:00:00:00:00:01";
/// MAC address of B's veth.
pub const MAC_B: &str = "02:00:00:00:00:02";
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Runs a command to completion, turning a non-zero exit into an error with its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String, NetnsError> {
    let cmd = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| NetnsError::Io {
            context: format!("spawn `{cmd}`"),
            source,
        })?;
    if !out.status.success() {
        return Err(NetnsError::Command {
            cmd,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `program args...` inside namespace `ns` (a child forked by a thread in `ns`: netlink, ioctls and
/// `/proc/net` see that namespace), turning a non-zero exit into an error with its stderr.
pub fn exec_in(ns: &str, program: &str, args: &[&str]) -> Result<String, NetnsError> {
    let cmd = format!("{program} {} (in {ns})", args.join(" "));
    let out = netkit::netns::output(ns, Command::new(program).args(args))?;
    if !out.status.success() {
        return Err(NetnsError::Command {
            cmd,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn mac(s: &str) -> [u8; 6] {
    netkit::mac::parse(s).unwrap_or_default()
}

/// Moves the **calling thread** into namespace `ns` (`setns` affects only this thread).
pub fn enter(ns: &str) -> Result<(), NetnsError> {
    netkit::ns::enter(ns).map_err(|e| NetnsError::Io {
        context: format!("setns {ns}"),
        source: std::io::Error::other(e),
    })
}

/// Spawns a thread that enters namespace `ns` and then runs `f`.
pub fn spawn_in<T, F>(ns: &str, f: F) -> std::thread::JoinHandle<Result<T, NetnsError>>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let ns = ns.to_string();
    std::thread::spawn(move || {
        enter(&ns)?;
        Ok(f())
    })
}

/// Deletes namespaces named `pktgen-<pid>-...` whose process no longer exists.
fn sweep_stale() {
    for name in netkit::netns::list() {
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = netkit::netns::del(&name);
        }
    }
}

/// Two namespaces `a` and `b` joined by a veth pair, deleted on drop.
#[derive(Debug)]
pub struct NetnsPair {
    /// Namespace of side A.
    pub a: String,
    /// Namespace of side B.
    pub b: String,
    /// veth interface in A.
    pub veth_a: String,
    /// veth interface in B.
    pub veth_b: String,
    created: Vec<String>,
}

impl NetnsPair {
    /// IPv4 address of side A.
    pub const ADDR4_A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    /// IPv4 address of side B.
    pub const ADDR4_B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
    /// IPv6 address of side A.
    pub const ADDR6_A: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
    /// IPv6 address of side B.
    pub const ADDR6_B: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

    /// Creates the namespaces and the veth pair, with addresses configured and links up.
    pub fn create() -> Result<Self, NetnsError> {
        sweep_stale();
        let pid = std::process::id();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut pair = Self {
            a: format!("{PREFIX}{pid}-{n}-a"),
            b: format!("{PREFIX}{pid}-{n}-b"),
            // Interface names are limited to 15 bytes.
            veth_a: format!("pg{pid:x}x{n:x}a"),
            veth_b: format!("pg{pid:x}x{n:x}b"),
            created: Vec::new(),
        };
        for ns in [pair.a.clone(), pair.b.clone()] {
            netkit::netns::add(&ns)?;
            pair.created.push(ns);
        }
        let (a, b, va, vb) = (&pair.a, &pair.b, &pair.veth_a, &pair.veth_b);
        netkit::Netlink::open()?.add_veth(
            VethEnd::new(va).mac(mac(MAC_A)).ns(a),
            VethEnd::new(vb).mac(mac(MAC_B)).ns(b),
        )?;
        // Permanent neighbour entries: no ARP/NDP, so the first packet is never held back or
        // lost while IPv6 link-local DAD is still running (which takes about two seconds).
        for (ns, dev, v4, v6, peer4, peer6, peer_mac) in [
            (
                a,
                va,
                Self::ADDR4_A,
                Self::ADDR6_A,
                Self::ADDR4_B,
                Self::ADDR6_B,
                MAC_B,
            ),
            (
                b,
                vb,
                Self::ADDR4_B,
                Self::ADDR6_B,
                Self::ADDR4_A,
                Self::ADDR6_A,
                MAC_A,
            ),
        ] {
            let mut nl = netkit::Netlink::open_in(ns)?;
            nl.set_up("lo", true)?;
            nl.add_addr(dev, v4.into(), 24, false)?;
            nl.add_addr(dev, v6.into(), 64, true)?;
            for peer in [IpAddr::V4(peer4), IpAddr::V6(peer6)] {
                nl.replace_neigh(dev, peer, mac(peer_mac))?;
            }
            nl.set_up(dev, true)?;
        }
        Ok(pair)
    }

    /// Address of side B in the family asked for.
    pub fn addr_b(&self, ipv6: bool) -> IpAddr {
        if ipv6 {
            IpAddr::V6(Self::ADDR6_B)
        } else {
            IpAddr::V4(Self::ADDR4_B)
        }
    }

    /// Impairs traffic arriving at B's veth (see [`Impairment`]). Call once per pair.
    ///
    /// Built from what a minimal kernel has (no `sch_netem`, no `act_gact`): a `clsact` qdisc, a
    /// classic-BPF classifier that matches with probability `p` using the `ld rand` ancillary
    /// load, and an `act_mirred` action that either steals the packet into B's loopback (where
    /// its foreign destination MAC gets it dropped silently) or mirrors a copy back into B's
    /// ingress (a duplicate, which may itself be duplicated again).
    pub fn impair_b_ingress(&self, imp: Impairment) -> Result<(), NetnsError> {
        let (p, action): (f64, &[&str]) = match imp {
            Impairment::Drop(p) => (p, &["mirred", "egress", "redirect", "dev", "lo"]),
            Impairment::Duplicate(p) => (
                p,
                &["mirred", "ingress", "mirror", "dev", self.veth_b.as_str()],
            ),
        };
        let bytecode = random_match_bytecode(p);
        run(
            "tc",
            &["-n", &self.b, "qdisc", "add", "dev", &self.veth_b, "clsact"],
        )?;
        let mut args = vec![
            "-n",
            &self.b,
            "filter",
            "add",
            "dev",
            &self.veth_b,
            "ingress",
            "protocol",
            "all",
            "bpf",
            "bytecode",
            &bytecode,
            "action",
        ];
        args.extend_from_slice(action);
        run("tc", &args).map(|_| ())
    }
}

/// A packet impairment applied at B's ingress.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Impairment {
    /// Drop each packet with this probability.
    Drop(f64),
    /// Duplicate each packet with this probability (copies can be copied again, so the expected
    /// number of duplicates per packet is `p / (1 - p)`).
    Duplicate(f64),
}

/// Classic BPF (tc `bytecode` syntax) that matches a packet with probability `p`:
/// `ld rand; jge #threshold, nomatch; ret #-1 (match); ret #0 (no match)`.
pub fn random_match_bytecode(p: f64) -> String {
    // SKF_AD_OFF (-0x1000) + SKF_AD_RANDOM (56), as an unsigned 32-bit offset.
    const LD_RAND: u32 = 0xFFFF_F000 + 56;
    let threshold = (p.clamp(0.0, 1.0) * 4_294_967_296.0).min(u32::MAX as f64) as u32;
    format!(
        "4,32 0 0 {LD_RAND},53 1 0 {threshold},6 0 0 {},6 0 0 0",
        u32::MAX
    )
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        // Deleting a namespace destroys its end of the veth, and with it the peer.
        for ns in self.created.drain(..) {
            if let Err(e) = netkit::netns::del(&ns) {
                eprintln!("pktgen: could not delete namespace {ns}: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_reports_failures_with_stderr() {
        assert_eq!(run("sh", &["-c", "echo hi"]).expect("runs"), "hi\n");
        let e = run("sh", &["-c", "echo oops >&2; exit 3"]).expect_err("fails");
        let msg = e.to_string();
        assert!(msg.contains("oops") && msg.contains('3'), "{msg}");
        assert!(run("/nonexistent/program", &[]).is_err());
    }

    #[test]
    fn random_match_bytecode_scales_the_threshold() {
        assert_eq!(
            random_match_bytecode(0.25),
            "4,32 0 0 4294963256,53 1 0 1073741824,6 0 0 4294967295,6 0 0 0"
        );
        assert!(random_match_bytecode(0.0).contains("53 1 0 0,"));
        assert!(random_match_bytecode(2.0).contains("53 1 0 4294967295,"));
    }

    #[test]
    fn pair_is_created_reachable_and_removed_on_drop() {
        if !testkit::can_run_netns_tests("pair_is_created_reachable_and_removed_on_drop") {
            return;
        }
        let pair = NetnsPair::create().expect("create pair");
        let (a, b) = (pair.a.clone(), pair.b.clone());
        let link = netkit::Netlink::open_in(&b)
            .and_then(|mut nl| nl.link(&pair.veth_b))
            .expect("link");
        assert!(link.up && link.mac == Some(mac(MAC_B)), "{link:?}");
        // iproute2 as an independent oracle for the neighbours
        let neigh = run("ip", &["-n", &a, "neigh", "show", "dev", &pair.veth_a]).expect("neigh");
        assert!(
            neigh.contains("2001:db8::2") && neigh.contains("PERMANENT"),
            "{neigh}"
        );
        let listed = netkit::netns::list();
        assert!(listed.contains(&a) && listed.contains(&b));
        let inside = exec_in(&a, "cat", &["/proc/net/dev"]).expect("cat");
        assert!(
            inside.contains(&pair.veth_a) && !inside.contains(&pair.veth_b),
            "{inside}"
        );
        let e = exec_in(&a, "sh", &["-c", "echo nope >&2; exit 4"]).expect_err("fails");
        assert!(
            e.to_string().contains("nope") && e.to_string().contains(&a),
            "{e}"
        );
        drop(pair);
        let listed = netkit::netns::list();
        assert!(!listed.contains(&a) && !listed.contains(&b), "{listed:?}");
    }
}
