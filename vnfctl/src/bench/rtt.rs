//! RTT added: the round-trip time the chain adds over a bare XDP redirect (and over plain kernel forwarding), at a
//! fixed request rate, request-response through the bench bed, the paths alternating in one run.
//!
//! The client (a UDP socket in the generator namespace, bound to the bed's source address) sends one pktgen
//! header per request at `rate` requests per second to the service address, stamped with `CLOCK_REALTIME` just
//! before `sendto`; an XDP reflector on the server's veth (`cps_echo` of `ebpf/pktgen_cps.c`) sends every request
//! straight back with addresses and ports swapped; the round trip is the kernel's receive timestamp of the echo
//! (`SO_TIMESTAMPNS`) − the stamp. No user-space wake-up sits inside the round trip: on a loaded 2-core machine a
//! user-space echo (`pktgen serve`) and a receive thread add milliseconds of scheduling delay that swamp the
//! microseconds measured. Requests cross the middle box under test (the bare redirect, the chain on XDP, or
//! nothing: kernel forwarding); the echoes come back through the CNF's kernel forwarding in every path (the chain's forwarder redirects one way only), so the
//! difference between paths is what each adds to the request direction. The chain must not source-translate the
//! bed's flow (the echo would go to the translated address): then the measurement says so instead of a number.

use std::net::{SocketAddrV4, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cnf_dataplane::engine::ChainConfig;
use hdrhistogram::Histogram;
use pktgen::clock::{monotonic_ns, wait_until};
use pktgen::netns::enter;
use pktgen::payload::{HEADER_LEN, Header};
use pktgen::xdp_cps::{CpsEcho, XdpPass};

use super::BenchError;
use super::bed::{Bed, CNF_IN, CNF_OUT, SRV_DEV, in_ns, link_info};
use super::cps::{Middle, attach_chain, attach_redirect};

/// The target of issue 17: the chain adds at most this much to the median round trip, µs.
pub const TARGET_ADDED_P50_US: f64 = 2.0;
/// Stream id of the requests.
const STREAM: u32 = 0x5254_5431;

/// What to run.
#[derive(Debug, Clone)]
pub struct RttOptions {
    /// Requests per second.
    pub rate_pps: f64,
    /// Length of each path's run per round.
    pub duration: Duration,
    /// Rounds (paths alternate within each; the samples of all rounds are pooled).
    pub rounds: u32,
}

impl RttOptions {
    /// 10 kpps, `duration` per path and round, 3 rounds.
    pub fn full(duration: Duration) -> Self {
        RttOptions {
            rate_pps: 10_000.0,
            duration,
            rounds: 3,
        }
    }

    /// The suite's choice: its latency rate and duration per path; 3 rounds, or 1 for sub-second (CI) runs.
    pub fn for_suite(rate_pps: f64, duration: Duration) -> Self {
        RttOptions {
            rate_pps,
            duration,
            rounds: if duration < Duration::from_secs(1) {
                1
            } else {
                3
            },
        }
    }

    /// A short run that checks behaviour, not speed.
    pub fn quick() -> Self {
        RttOptions {
            rate_pps: 10_000.0,
            duration: Duration::from_millis(300),
            rounds: 1,
        }
    }
}

/// The paths, in table order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RttPath {
    /// The bare one-hop XDP redirect.
    Bare,
    /// The manifest's chain on XDP.
    Chain,
    /// Kernel forwarding, no rules.
    Kernel,
}

impl RttPath {
    pub const ALL: [RttPath; 3] = [RttPath::Bare, RttPath::Chain, RttPath::Kernel];

    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            RttPath::Bare => "bare-redirect",
            RttPath::Chain => "chain-xdp",
            RttPath::Kernel => "kernel-forward",
        }
    }
}

/// Round trips of one path, µs (all rounds pooled).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RttStats {
    pub path: RttPath,
    pub name: &'static str,
    pub sent: u64,
    pub received: u64,
    pub min_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    /// The median of each round, µs (the spread between rounds).
    pub round_p50_us: Vec<f64>,
}

/// The "RTT added" row (`bench.json` → `rtt_added`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RttAdded {
    pub rate_pps: f64,
    pub paths: Vec<RttStats>,
    /// chain p50 − bare p50, µs.
    pub added_p50_us: Option<f64>,
    /// chain p99 − bare p99, µs.
    pub added_p99_us: Option<f64>,
    /// The lowest round median of the chain − the bare redirect's, µs (best of N: a round the rest of the
    /// machine disturbed less).
    pub added_p50_best_round_us: Option<f64>,
    /// chain p50 − kernel p50, µs (negative: the chain is faster).
    pub vs_kernel_p50_us: Option<f64>,
    /// [`TARGET_ADDED_P50_US`].
    pub target_p50_us: f64,
    /// `added_p50_us <= target_p50_us`.
    pub meets_target: Option<bool>,
    /// `/proc/loadavg` before and after.
    pub load: Vec<String>,
    /// Why it was not measured.
    pub skipped: Option<String>,
    pub method: &'static str,
}

const METHOD: &str = "RTT: one UDP request (a pktgen header stamped with CLOCK_REALTIME just before sendto) per \
    1/rate s from the generator's socket to the service; an XDP reflector on the server's veth (cps_echo) sends it \
    straight back (addresses and ports swapped); round trip = the kernel's receive timestamp of the echo \
    (SO_TIMESTAMPNS) − the stamp, so no user-space wake-up is inside it; requests cross the path under test, echoes \
    return through the CNF's kernel forwarding in every path; the paths alternate in each round and the rounds' \
    samples are pooled; added = chain − bare redirect";

/// Percentiles of a histogram of ns samples, µs: `(min, p50, p90, p99, p99.9)`.
pub fn percentiles_us(h: &Histogram<u64>) -> (f64, f64, f64, f64, f64) {
    if h.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN, f64::NAN, f64::NAN);
    }
    let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    (
        h.min() as f64 / 1000.0,
        us(0.5),
        us(0.9),
        us(0.99),
        us(0.999),
    )
}

/// `a − b` when both are numbers.
pub fn added(a: f64, b: f64) -> Option<f64> {
    (a.is_finite() && b.is_finite()).then_some(a - b)
}

/// `CLOCK_REALTIME` now, ns (the clock of the kernel's receive timestamps).
fn realtime_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the live timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Receives one datagram into `buf` with its kernel arrival time (`SO_TIMESTAMPNS`, `CLOCK_REALTIME` ns), or
/// the time now when the kernel gave none.
fn recv_stamped(sock: &UdpSocket, buf: &mut [u8]) -> std::io::Result<(usize, u64)> {
    use std::os::fd::AsRawFd;
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = [0u64; 16];
    // SAFETY: msghdr is plain data; zeroed is valid before the fields below are set.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: recvmsg with a msghdr whose buffers (iov, control) outlive the call.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut at = None;
    // SAFETY: the CMSG macros walk the control buffer recvmsg filled, bounded by msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                at = Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((n as usize, at.unwrap_or_else(realtime_ns)))
}

/// One path's request-response run: `(sent, histogram of round trips in ns)`.
fn run_once(bed: &Bed, o: &RttOptions) -> Result<(u64, Histogram<u64>), BenchError> {
    let recv_err = |what: String| move |source| BenchError::Receiver { what, source };
    let src = SocketAddrV4::new(*bed.flow.src.ip(), bed.flow.src.port() + 2);
    let dst = bed.flow.dst;
    let gen_ns = bed.gen_ns.clone();
    let o2 = o.clone();
    let client = std::thread::spawn(move || -> Result<(u64, Histogram<u64>), BenchError> {
        enter(&gen_ns)?;
        let sock = UdpSocket::bind(src).map_err(recv_err(format!("rtt: bind {src}")))?;
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .map_err(recv_err("rtt: set the read timeout".into()))?;
        {
            use std::os::fd::AsRawFd;
            let one: libc::c_int = 1;
            // SAFETY: setsockopt with a pointer to a live c_int and its size.
            let r = unsafe {
                libc::setsockopt(
                    sock.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_TIMESTAMPNS,
                    (&one as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if r < 0 {
                return Err(recv_err("rtt: SO_TIMESTAMPNS".into())(
                    std::io::Error::last_os_error(),
                ));
            }
        }
        let rx = sock
            .try_clone()
            .map_err(recv_err("rtt: clone the socket".into()))?;
        let done = Arc::new(AtomicBool::new(false));
        let done_rx = done.clone();
        let receiver = std::thread::spawn(move || -> Result<Histogram<u64>, BenchError> {
            let mut h = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3)?;
            let mut buf = [0u8; 2048];
            loop {
                match recv_stamped(&rx, &mut buf) {
                    Ok((n, at)) => {
                        if let Ok(hd) = Header::decode(&buf[..n])
                            && hd.stream_id == STREAM
                        {
                            let _ = h.record(at.saturating_sub(hd.tx_ns).max(1));
                        }
                    }
                    Err(_) if done_rx.load(Ordering::Relaxed) => break,
                    Err(_) => {}
                }
            }
            Ok(h)
        });
        let gap = (1e9 / o2.rate_pps) as u64;
        let start = monotonic_ns();
        let end = start + o2.duration.as_nanos() as u64;
        let mut buf = [0u8; HEADER_LEN];
        let mut seq = 0u64;
        loop {
            let due = start + seq * gap;
            if due >= end {
                break;
            }
            wait_until(due, 50_000);
            Header::new(STREAM, seq, realtime_ns()).encode(&mut buf)?;
            // a full socket buffer loses the request: it counts as not received
            let _ = sock.send_to(&buf, dst);
            seq += 1;
        }
        std::thread::sleep(Duration::from_millis(100));
        done.store(true, Ordering::Relaxed);
        let h = receiver.join().map_err(|_| BenchError::Panicked {
            what: "rtt receiver".into(),
        })??;
        Ok((seq, h))
    });
    client.join().map_err(|_| BenchError::Panicked {
        what: "rtt client".into(),
    })?
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|e| format!("unreadable: {e}"))
}

/// The reflector on the server's veth and the pass program that lets the CNF's egress veth take its echoes.
type Echo = (CpsEcho, XdpPass);

fn set_up(bed: &Bed, path: RttPath, chain: &ChainConfig) -> Result<(Middle, Echo), BenchError> {
    bed.reset_cnf();
    bed.gro(&bed.cnf_ns, CNF_IN, path == RttPath::Kernel)?;
    let (_, c1_mac) = link_info(&bed.cnf_ns, CNF_OUT)?;
    let (srv_mac, port) = (bed.srv_mac, bed.flow.server.port());
    let echo = in_ns(&bed.srv_ns, || {
        CpsEcho::attach(SRV_DEV, srv_mac, c1_mac, port).map_err(|source| BenchError::Helper {
            what: format!("cps_echo on {SRV_DEV}"),
            source,
        })
    })?;
    // the echoes come back to the CNF's egress veth as XDP frames (XDP_TX)
    let pass = in_ns(&bed.cnf_ns, || {
        XdpPass::attach(CNF_OUT).map_err(|source| BenchError::Helper {
            what: format!("xdp pass on {CNF_OUT}"),
            source,
        })
    })?;
    let echo = (echo, pass);
    let mut m = Middle::default();
    match path {
        RttPath::Bare => m.bpf = Some(attach_redirect(bed)?),
        RttPath::Chain => m.running = Some(attach_chain(bed, chain.clone())?),
        RttPath::Kernel => {}
    }
    Ok((m, echo))
}

/// Measures every path on `bed` with `chain` (the manifest's, with its forwarder to the server's veth); the bed's
/// CNF is left reset.
pub fn measure(
    bed: &Bed,
    chain: &ChainConfig,
    o: &RttOptions,
    mut progress: impl FnMut(&str),
) -> Result<RttAdded, BenchError> {
    if !(o.rate_pps.is_finite() && o.rate_pps > 0.0 && o.rate_pps <= 1e6) {
        return Err(BenchError::RttRate(o.rate_pps));
    }
    let load0 = loadavg();
    let mut hists: Vec<(RttPath, u64, Histogram<u64>, Vec<f64>)> = Vec::new();
    for &p in &RttPath::ALL {
        let h = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3)?;
        hists.push((p, 0, h, Vec::new()));
    }
    for round in 0..o.rounds.max(1) {
        for (p, sent, h, rounds) in hists.iter_mut() {
            let (m, echo) = set_up(bed, *p, chain)?;
            let r = run_once(bed, o);
            drop(echo);
            drop(m);
            bed.reset_cnf();
            let (s, one) = r?;
            let (_, p50, _, p99, _) = percentiles_us(&one);
            progress(&format!(
                "rtt {:<15} round {} p50 {p50:>7.1} µs p99 {p99:>7.1} µs ({}/{s} answered)",
                p.name(),
                round + 1,
                one.len()
            ));
            *sent += s;
            rounds.push(p50);
            h.add(&one)?;
        }
    }
    let paths: Vec<RttStats> = hists
        .iter()
        .map(|(p, sent, h, rounds)| {
            let (min, p50, p90, p99, p999) = percentiles_us(h);
            RttStats {
                path: *p,
                name: p.name(),
                sent: *sent,
                received: h.len(),
                min_us: min,
                p50_us: p50,
                p90_us: p90,
                p99_us: p99,
                p999_us: p999,
                round_p50_us: rounds.clone(),
            }
        })
        .collect();
    let get = |p: RttPath| paths.iter().find(|s| s.path == p);
    let (bare, ch, kern) = (
        get(RttPath::Bare),
        get(RttPath::Chain),
        get(RttPath::Kernel),
    );
    let mut skipped = None;
    if let Some(c) = ch
        && c.received == 0
        && bare.is_some_and(|b| b.received > 0)
    {
        skipped = Some(
            "no echo came back through the chain: it drops or source-translates the bed's flow (the echo then \
             goes to the translated address)"
                .to_string(),
        );
    }
    let diff = |a: Option<&RttStats>, b: Option<&RttStats>, f: fn(&RttStats) -> f64| match (a, b) {
        (Some(a), Some(b)) if a.received > 0 && b.received > 0 => added(f(a), f(b)),
        _ => None,
    };
    let added_p50 = diff(ch, bare, |s| s.p50_us);
    let best_round = |s: &RttStats| s.round_p50_us.iter().copied().fold(f64::NAN, f64::min);
    Ok(RttAdded {
        rate_pps: o.rate_pps,
        added_p50_us: added_p50,
        added_p99_us: diff(ch, bare, |s| s.p99_us),
        added_p50_best_round_us: diff(ch, bare, best_round),
        vs_kernel_p50_us: diff(ch, kern, |s| s.p50_us),
        target_p50_us: TARGET_ADDED_P50_US,
        meets_target: added_p50.map(|a| a <= TARGET_ADDED_P50_US),
        paths,
        load: vec![load0, loadavg()],
        skipped,
        method: METHOD,
    })
}

/// The measurement, or the reason it did not run, for the suite's report.
pub fn in_suite(
    bed: &Bed,
    chain: Result<ChainConfig, BenchError>,
    o: &RttOptions,
    mut progress: impl FnMut(&str),
) -> RttAdded {
    let r = chain.and_then(|c| measure(bed, &c, o, &mut progress));
    r.unwrap_or_else(|e| {
        bed.reset_cnf();
        progress(&format!("rtt: not measured: {e}"));
        RttAdded {
            rate_pps: o.rate_pps,
            paths: Vec::new(),
            added_p50_us: None,
            added_p99_us: None,
            added_p50_best_round_us: None,
            vs_kernel_p50_us: None,
            target_p50_us: TARGET_ADDED_P50_US,
            meets_target: None,
            load: vec![loadavg()],
            skipped: Some(e.to_string()),
            method: METHOD,
        }
    })
}

/// The text rows: each path's round trip and the "RTT added" row.
pub fn table(r: &RttAdded) -> String {
    let mut s = format!("round trip at {:.0} requests/s\n", r.rate_pps);
    if let Some(why) = &r.skipped
        && r.paths.is_empty()
    {
        s.push_str(&format!("  not measured: {why}\n"));
        return s;
    }
    s.push_str(&format!(
        "{:<15} {:>9} {:>9} {:>9} {:>9} {:>13}  {}\n",
        "path", "min µs", "p50 µs", "p99 µs", "p99.9 µs", "answered", "p50 per round µs"
    ));
    for p in &r.paths {
        s.push_str(&format!(
            "{:<15} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>13}  {}\n",
            p.name,
            p.min_us,
            p.p50_us,
            p.p99_us,
            p.p999_us,
            format!("{}/{}", p.received, p.sent),
            p.round_p50_us
                .iter()
                .map(|v| format!("{v:.1}"))
                .collect::<Vec<_>>()
                .join(" ")
        ));
    }
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:+.1}"));
    s.push_str(&format!(
        "RTT added (chain − bare): p50 {} µs, p99 {} µs, best round's p50 {} µs (target ≤ {:.0} µs p50: {}); chain − kernel p50 {} µs; load {}\n",
        opt(r.added_p50_us),
        opt(r.added_p99_us),
        opt(r.added_p50_best_round_us),
        r.target_p50_us,
        match r.meets_target {
            Some(true) => "met",
            Some(false) => "missed",
            None => "-",
        },
        opt(r.vs_kernel_p50_us),
        r.load.join(" → ")
    ));
    if let Some(why) = &r.skipped {
        s.push_str(&format!("  {why}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(path: RttPath, p50: f64, p99: f64, received: u64) -> RttStats {
        RttStats {
            path,
            name: path.name(),
            sent: 100,
            received,
            min_us: p50 / 2.0,
            p50_us: p50,
            p90_us: p99,
            p99_us: p99,
            p999_us: p99,
            round_p50_us: vec![p50],
        }
    }

    #[test]
    fn percentiles_come_from_the_histogram_in_microseconds() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).expect("histogram");
        for ns in 1..=1000u64 {
            h.record(ns * 1000).expect("record");
        }
        let (min, p50, p90, p99, _) = percentiles_us(&h);
        assert_eq!(min, 1.0);
        assert!((p50 - 500.0).abs() < 1.0, "{p50}");
        assert!((p90 - 900.0).abs() < 1.0, "{p90}");
        assert!((p99 - 990.0).abs() < 1.0, "{p99}");
        let empty = Histogram::<u64>::new(3).expect("histogram");
        assert!(percentiles_us(&empty).1.is_nan());
        assert_eq!(added(12.5, 10.0), Some(2.5));
        assert_eq!(added(f64::NAN, 10.0), None);
    }

    #[test]
    fn the_row_shows_the_difference_and_the_target() {
        let r = RttAdded {
            rate_pps: 10_000.0,
            paths: vec![
                stats(RttPath::Bare, 20.0, 40.0, 100),
                stats(RttPath::Chain, 21.5, 45.0, 100),
                stats(RttPath::Kernel, 30.0, 60.0, 100),
            ],
            added_p50_us: Some(1.5),
            added_p99_us: Some(5.0),
            added_p50_best_round_us: Some(1.5),
            vs_kernel_p50_us: Some(-8.5),
            target_p50_us: TARGET_ADDED_P50_US,
            meets_target: Some(true),
            load: vec!["1.0".into()],
            skipped: None,
            method: METHOD,
        };
        let t = table(&r);
        assert!(
            t.contains("RTT added (chain − bare): p50 +1.5 µs, p99 +5.0 µs"),
            "{t}"
        );
        assert!(t.contains("target ≤ 2 µs p50: met"), "{t}");
        assert!(t.contains("chain − kernel p50 -8.5 µs"), "{t}");
        assert!(t.contains("100/100"), "{t}");
    }
}
