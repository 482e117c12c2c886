//! Network namespaces for the live tests: created and configured through netlink (`netkit`, no `ip`
//! binary), deleted on drop, entered by a thread.

use std::net::IpAddr;

/// Runs `cmd` (inside namespace `ns` when given), asserting success.
pub fn sh(ns: Option<&str>, cmd: &[&str]) {
    let mut c = std::process::Command::new(cmd[0]);
    c.args(&cmd[1..]);
    // quiet unless it fails (ethtool -K reports every feature it changed)
    let out = match ns {
        Some(ns) => netkit::netns::output(ns, &mut c).unwrap_or_else(|e| panic!("{e}")),
        None => c.output().expect("spawn"),
    };
    assert!(
        out.status.success(),
        "{ns:?} {cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A netlink socket in namespace `ns` (the test fails if there is none).
pub fn netlink(ns: &str) -> netkit::Netlink {
    netkit::Netlink::open_in(ns).unwrap_or_else(|e| panic!("{e}"))
}

/// `ADDR/PLEN` as an address and a prefix length.
pub fn cidr(s: &str) -> (IpAddr, u8) {
    let (a, p) = s
        .split_once('/')
        .unwrap_or_else(|| panic!("{s}: not ADDR/PLEN"));
    (
        a.parse().unwrap_or_else(|e| panic!("{s}: {e}")),
        p.parse().unwrap_or_else(|e| panic!("{s}: {e}")),
    )
}

/// Namespaces deleted on drop.
pub struct Namespaces(pub Vec<String>);

impl Namespaces {
    pub fn new(names: &[&str]) -> Self {
        let pid = std::process::id();
        let ns = Self(names.iter().map(|n| format!("vnft-{pid}-{n}")).collect());
        for n in &ns.0 {
            netkit::netns::add(n).unwrap_or_else(|e| panic!("{e}"));
            netlink(n)
                .set_up("lo", true)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        ns
    }

    /// veth `a_dev` in namespace `a` <-> `b_dev` in `b`, addressed, up, checksum offload off (so receivers
    /// verify what the data plane rewrote).
    pub fn link(&self, a: usize, a_dev: &str, a_addr: &str, b: usize, b_dev: &str, b_addr: &str) {
        let (na, nb) = (&self.0[a], &self.0[b]);
        netlink(na)
            .add_veth(
                netkit::VethEnd::new(a_dev),
                netkit::VethEnd::new(b_dev).ns(nb),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        for (ns, dev, addr) in [(na, a_dev, a_addr), (nb, b_dev, b_addr)] {
            let (ip, plen) = cidr(addr);
            let mut nl = netlink(ns);
            nl.add_addr(dev, ip, plen, false)
                .and_then(|()| nl.set_up(dev, true))
                .unwrap_or_else(|e| panic!("{e}"));
            let off = netkit::ns::NsGuard::enter(ns)
                .map_err(|e| e.to_string())
                .and_then(|_g| {
                    netkit::ethtool::set_tx_checksum(dev, false).map_err(|e| e.to_string())
                });
            if let Err(e) = off {
                panic!("tx checksum off on {dev} in {ns}: {e}");
            }
        }
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = netkit::netns::del(ns);
        }
    }
}

/// (ifindex, MAC) of `dev` in namespace `ns`, read through netlink.
pub fn link_info(ns: &str, dev: &str) -> (u32, [u8; 6]) {
    let l = netlink(ns).link(dev).unwrap_or_else(|e| panic!("{e}"));
    let mac = l
        .mac
        .unwrap_or_else(|| panic!("{dev} in {ns} has no MAC address"));
    (l.index, mac)
}

/// Moves the calling thread into namespace `ns` for good (the test fails if it cannot).
pub fn enter(ns: &str) {
    if let Err(e) = netkit::ns::enter(ns) {
        panic!("{e}");
    }
}

/// Runs `f` on a thread inside network namespace `ns`.
pub fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            enter(ns);
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

// ---- the daemon as a process ----

/// `GET /metrics` from `addr` inside namespace `ns` (HTTP/1.0, the whole body).
pub fn scrape_metrics(ns: &str, addr: &str) -> String {
    use std::io::{Read, Write};
    std::thread::scope(|s| {
        s.spawn(|| {
            enter(ns);
            let mut c = std::net::TcpStream::connect(addr).expect("metrics port");
            c.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
                .expect("request");
            let mut body = String::new();
            c.read_to_string(&mut body).expect("response");
            body
        })
        .join()
        .expect("scrape thread")
    })
}

/// The value of the first metric line starting with `prefix` (name and labels).
pub fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// True when interface `dev` in namespace `ns` has an XDP program attached.
pub fn xdp_on(ns: &str, dev: &str) -> bool {
    netlink(ns).link(dev).unwrap_or_else(|e| panic!("{e}")).xdp
}
