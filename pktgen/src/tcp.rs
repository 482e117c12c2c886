//! TCP stream mode: each test packet becomes one record `[u32 length, little-endian][payload]`
//! on a TCP connection per flow, the payload starting with the usual pktgen header. TCP hides
//! loss and reordering, so this mode measures what an application on a stream sees: goodput
//! and record latency (including any queueing and retransmission delay).

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::AtomicBool;

use crate::clock::monotonic_ns;
use crate::error::{Error, io_err};
use crate::recv::{POLL, RecvConfig, drained};
use crate::sizes::MAX_SIZE;
use crate::stats::{Interval, RxStats, RxSummary};

const SECOND_NS: u64 = 1_000_000_000;
const LEN_PREFIX: usize = 4;

/// Appends one record (length prefix plus `payload`) to `out`.
pub fn push_record(out: &mut Vec<u8>, payload: &[u8]) -> Result<(), Error> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&l| l as usize <= MAX_SIZE)
        .ok_or_else(|| Error::Config(format!("record of {} bytes too large", payload.len())))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// Splits complete records off the front of `buf`, calling `each` with every payload, and
/// returns how many bytes were consumed. A length above [`MAX_SIZE`] is a framing error.
pub fn take_records(buf: &[u8], mut each: impl FnMut(&[u8])) -> Result<usize, Error> {
    let mut at = 0;
    while let Some(prefix) = buf.get(at..at + LEN_PREFIX) {
        let mut l = [0u8; LEN_PREFIX];
        l.copy_from_slice(prefix);
        let len = u32::from_le_bytes(l) as usize;
        if len > MAX_SIZE {
            return Err(Error::Config(format!(
                "TCP record length {len} exceeds {MAX_SIZE}: not a pktgen stream"
            )));
        }
        let Some(payload) = buf.get(at + LEN_PREFIX..at + LEN_PREFIX + len) else {
            break;
        };
        each(payload);
        at += LEN_PREFIX + len;
    }
    Ok(at)
}

struct Peer {
    stream: TcpStream,
    buf: Vec<u8>,
    open: bool,
}

/// A bound TCP receiver: accepts any number of sender connections (one per flow).
pub struct TcpReceiver {
    listener: TcpListener,
    cfg: RecvConfig,
}

impl TcpReceiver {
    /// Binds and listens.
    pub fn bind(cfg: RecvConfig) -> Result<Self, Error> {
        let listener = TcpListener::bind(cfg.bind).map_err(io_err(format!("bind {}", cfg.bind)))?;
        listener
            .set_nonblocking(true)
            .map_err(io_err("O_NONBLOCK"))?;
        Ok(Self { listener, cfg })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Result<SocketAddr, Error> {
        self.listener.local_addr().map_err(io_err("getsockname"))
    }

    /// Receives records until a stop condition (counted in records) or `stop`, like
    /// [`crate::recv::Receiver::run`].
    pub fn run(
        self,
        stop: &AtomicBool,
        mut progress: impl FnMut(&Interval),
    ) -> Result<RxSummary, Error> {
        let mut stats = RxStats::new(self.cfg.window)?;
        let mut peers: Vec<Peer> = Vec::new();
        let mut chunk = vec![0u8; 1 << 16];
        let start = monotonic_ns();
        let mut next_report = start + SECOND_NS;
        let (mut last_rx, mut stopping_since) = (None, None);
        loop {
            let mut pfds: Vec<libc::pollfd> = std::iter::once(self.listener.as_raw_fd())
                .chain(peers.iter().map(|p| p.stream.as_raw_fd()))
                .map(|fd| libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                })
                .collect();
            // SAFETY: `pfds` is a live, correctly sized pollfd array whose descriptors belong to
            // `self.listener` and `peers`, both alive for the whole call.
            let r = unsafe {
                libc::poll(
                    pfds.as_mut_ptr(),
                    pfds.len() as libc::nfds_t,
                    POLL.as_millis() as libc::c_int,
                )
            };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EINTR) {
                    return Err(io_err("poll")(e));
                }
            }
            loop {
                match self.listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(true).map_err(io_err("O_NONBLOCK"))?;
                        peers.push(Peer {
                            stream,
                            buf: Vec::new(),
                            open: true,
                        });
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => return Err(io_err("accept")(e)),
                }
            }
            let mut records = 0usize;
            for p in &mut peers {
                loop {
                    match p.stream.read(&mut chunk) {
                        Ok(0) => {
                            p.open = false;
                            break;
                        }
                        Ok(n) => p.buf.extend_from_slice(&chunk[..n]),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(e) => return Err(io_err("TCP read")(e)),
                    }
                }
                let now = monotonic_ns();
                match take_records(&p.buf, |payload| {
                    records += 1;
                    let _ = stats.record_payload(payload, now);
                }) {
                    Ok(used) => {
                        p.buf.drain(..used);
                    }
                    Err(_) => {
                        // Not a pktgen stream: hang up on this peer only.
                        stats.count_foreign();
                        p.open = false;
                    }
                }
            }
            peers.retain(|p| p.open);
            let now = monotonic_ns();
            if records > 0 {
                last_rx = Some(now);
            }
            if now >= next_report {
                progress(&stats.take_interval());
                next_report = now + SECOND_NS;
            }
            if drained(stop, &mut stopping_since, records, now)
                || self.cfg.stop.reached(stats.packets(), start, last_rx, now)
            {
                break;
            }
        }
        Ok(stats.summary())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::Header;

    #[test]
    fn records_round_trip_across_arbitrary_splits() {
        let mut wire = Vec::new();
        for (i, len) in [24usize, 100, 1472, 24].into_iter().enumerate() {
            let mut p = vec![0u8; len];
            Header::new(1, i as u64, 7).encode(&mut p).expect("fits");
            push_record(&mut wire, &p).expect("record");
        }
        // Feed the stream in awkward pieces, as TCP may deliver it.
        for piece in [1usize, 3, 5, 97, 4096] {
            let (mut buf, mut seqs) = (Vec::new(), Vec::new());
            for part in wire.chunks(piece) {
                buf.extend_from_slice(part);
                let used = take_records(&buf, |p| {
                    seqs.push((Header::decode(p).expect("header").seq, p.len()));
                })
                .expect("valid");
                buf.drain(..used);
            }
            assert!(buf.is_empty(), "piece {piece}: {} bytes left", buf.len());
            assert_eq!(seqs, vec![(0, 24), (1, 100), (2, 1472), (3, 24)]);
        }
    }

    #[test]
    fn oversized_records_are_rejected() {
        let mut out = Vec::new();
        assert!(push_record(&mut out, &vec![0u8; MAX_SIZE + 1]).is_err());
        let bogus = (MAX_SIZE as u32 + 1).to_le_bytes();
        assert!(take_records(&bogus, |_| {}).is_err());
        assert_eq!(take_records(&[1, 0], |_| {}).expect("partial"), 0);
    }

    #[test]
    fn tcp_mode_over_loopback_delivers_every_record() {
        use crate::send::{Proto, SendConfig, run_sender};
        use crate::sizes::SizeSpec;
        use std::time::Duration;
        let mut rc = RecvConfig::new("127.0.0.1:0".parse().expect("addr"));
        rc.stop.count = Some(3_000);
        rc.stop.duration = Some(Duration::from_secs(20));
        let rx = TcpReceiver::bind(rc).expect("bind");
        let mut c = SendConfig::new(rx.local_addr().expect("addr"));
        c.proto = Proto::Tcp;
        c.flows = 3;
        c.rate_pps = 20_000.0;
        c.count = Some(3_000);
        c.sizes = SizeSpec::Imix;
        let receiver = std::thread::spawn(move || rx.run(&AtomicBool::new(false), |_| {}));
        let s = run_sender(&c, &AtomicBool::new(false), |_| {}).expect("send");
        let r = receiver.join().expect("join").expect("receive");
        assert_eq!(s.sent, 3_000);
        assert_eq!(
            (r.unique, r.lost, r.duplicates, r.reordered),
            (3_000, 0, 0, 0)
        );
        assert_eq!(r.streams.len(), 3);
        assert_eq!(r.bytes, s.bytes);
        let l = &r.latency;
        assert!(
            l.p50_ns > 0 && l.p50_ns <= l.p99_ns && l.p99_ns <= l.max_ns,
            "{l:?}"
        );
    }
}
