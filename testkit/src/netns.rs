//! Network namespaces for the live tests: created with `ip`, deleted on drop, entered by a thread.

/// Runs `cmd` (inside namespace `ns` when given), asserting success.
pub fn sh(ns: Option<&str>, cmd: &[&str]) {
    let mut c = match ns {
        Some(ns) => {
            let mut c = std::process::Command::new("ip");
            c.args(["netns", "exec", ns]);
            c.args(cmd);
            c
        }
        None => {
            let mut c = std::process::Command::new(cmd[0]);
            c.args(&cmd[1..]);
            c
        }
    };
    // quiet unless it fails (ethtool -K reports every feature it changed)
    let out = c.output().expect("spawn");
    assert!(
        out.status.success(),
        "{ns:?} {cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Namespaces deleted on drop.
pub struct Namespaces(pub Vec<String>);

impl Namespaces {
    pub fn new(names: &[&str]) -> Self {
        let pid = std::process::id();
        let ns = Self(names.iter().map(|n| format!("vnft-{pid}-{n}")).collect());
        for n in &ns.0 {
            sh(None, &["ip", "netns", "add", n]);
            sh(Some(n), &["ip", "link", "set", "lo", "up"]);
        }
        ns
    }

    /// veth `a_dev` in namespace `a` <-> `b_dev` in `b`, addressed, up, checksum offload off (so receivers
    /// verify what the data plane rewrote).
    pub fn link(&self, a: usize, a_dev: &str, a_addr: &str, b: usize, b_dev: &str, b_addr: &str) {
        let (na, nb) = (&self.0[a], &self.0[b]);
        sh(
            None,
            &[
                "ip", "-n", na, "link", "add", a_dev, "type", "veth", "peer", "name", b_dev,
                "netns", nb,
            ],
        );
        for (ns, dev, addr) in [(na, a_dev, a_addr), (nb, b_dev, b_addr)] {
            sh(Some(ns), &["ip", "addr", "add", addr, "dev", dev]);
            sh(Some(ns), &["ip", "link", "set", dev, "up"]);
            sh(Some(ns), &["ethtool", "-K", dev, "tx", "off"]);
        }
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", ns])
                .status();
        }
    }
}

/// (ifindex, MAC) of `dev` in namespace `ns`, from `ip -o link`.
pub fn link_info(ns: &str, dev: &str) -> (u32, [u8; 6]) {
    let out = std::process::Command::new("ip")
        .args(["-n", ns, "-o", "link", "show", dev])
        .output()
        .expect("spawn ip");
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    let ifindex = line
        .split(':')
        .next()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("ifindex of {dev} in {ns}: {line}"));
    let mac = line
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap_or_else(|| panic!("MAC of {dev} in {ns}: {line}"));
    let mac = netkit::mac::parse(mac).unwrap_or_else(|e| panic!("{dev} in {ns}: {e}"));
    (ifindex, mac)
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
    let out = std::process::Command::new("ip")
        .args(["-n", ns, "link", "show", dev])
        .output()
        .expect("ip link show");
    out.stdout.windows(3).any(|w| w == b"xdp")
}
