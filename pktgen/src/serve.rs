//! `pktgen serve`: the listeners a testbed server runs, so that the ports `vnfctl testbed up` prints are real.
//!
//! - UDP: every datagram is echoed back to its sender unchanged (a reflector), on the wildcard address of each
//!   family asked for. The sockets set `SO_REUSEADDR`, so a measuring receiver may bind the *exact* address and
//!   port for a while: Linux then delivers to the more specific socket (`compute_score` in net/ipv4/udp.c
//!   prefers a bound local address), and the echo resumes when it closes.
//! - TCP: a tiny HTTP/1.0 server: each connection's request (whatever arrives first, up to 4 KiB) gets
//!   `200 OK` with the body `served by ADDR:PORT\n`, where ADDR:PORT is the local address the connection
//!   reached; then the connection closes. `curl http://VIP/` and a line sent with `nc` both work.
//!
//! [`Listeners::start`] binds everything before returning, so a caller can report "listening" truthfully.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::FromRawFd;
use std::time::Duration;

use crate::error::{Error, io_err};

/// What to listen on.
#[derive(Clone, Debug, Default)]
pub struct ServeConfig {
    /// Serve IPv4 (on 0.0.0.0).
    pub ipv4: bool,
    /// Serve IPv6 (on `::`, IPv6 only).
    pub ipv6: bool,
    /// UDP echo ports.
    pub udp: Vec<u16>,
    /// TCP (HTTP) ports.
    pub tcp: Vec<u16>,
}

/// Bound sockets, served by [`Listeners::run`].
#[derive(Debug)]
pub struct Listeners {
    udp: Vec<UdpSocket>,
    tcp: Vec<TcpListener>,
}

/// The HTTP reply body for a connection that reached `local`.
pub fn reply_body(local: SocketAddr) -> String {
    format!("served by {local}\n")
}

/// The served-by address in a reply produced by [`reply_body`] (with or without HTTP headers).
pub fn served_by(reply: &str) -> Option<SocketAddr> {
    let at = reply.find("served by ")?;
    reply[at + "served by ".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A UDP socket bound to `addr` with `SO_REUSEADDR`: beside a listener on the wildcard address, a socket on
/// the exact address receives the datagrams while it is open (what a measuring receiver needs).
pub fn bind_udp_reuse(addr: SocketAddr) -> Result<UdpSocket, Error> {
    bind_reuse(addr, libc::SOCK_DGRAM).map(UdpSocket::from)
}

fn bind_reuse(addr: SocketAddr, ty: libc::c_int) -> Result<std::os::fd::OwnedFd, Error> {
    let domain = if addr.is_ipv6() {
        libc::AF_INET6
    } else {
        libc::AF_INET
    };
    // SAFETY: socket(2) with constant arguments; the result is checked before use.
    let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io_err(format!("socket for {addr}"))(
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: fd is a fresh socket we own; OwnedFd closes it on every error path below.
    let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    let set = |level, opt| {
        // SAFETY: setsockopt with a pointer to a live c_int and its size.
        let r = unsafe {
            libc::setsockopt(
                fd,
                level,
                opt,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r < 0 {
            Err(io_err(format!("setsockopt on {addr}"))(
                std::io::Error::last_os_error(),
            ))
        } else {
            Ok(())
        }
    };
    set(libc::SOL_SOCKET, libc::SO_REUSEADDR)?;
    if addr.is_ipv6() {
        set(libc::IPPROTO_IPV6, libc::IPV6_V6ONLY)?;
    }
    let r = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: bind(2) with a pointer to a live sockaddr_in and its size.
            unsafe {
                libc::bind(
                    fd,
                    (&sin as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            }
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: bind(2) with a pointer to a live sockaddr_in6 and its size.
            unsafe {
                libc::bind(
                    fd,
                    (&sin6 as *const libc::sockaddr_in6).cast(),
                    std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                )
            }
        }
    };
    if r < 0 {
        return Err(io_err(format!("bind {addr}"))(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(owned)
}

impl Listeners {
    /// Binds every socket of `cfg` (all or nothing).
    pub fn start(cfg: &ServeConfig) -> Result<Listeners, Error> {
        if !cfg.ipv4 && !cfg.ipv6 {
            return Err(Error::Config(
                "serve: no address family to listen on".into(),
            ));
        }
        let mut hosts: Vec<IpAddr> = Vec::new();
        if cfg.ipv4 {
            hosts.push(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        }
        if cfg.ipv6 {
            hosts.push(IpAddr::V6(Ipv6Addr::UNSPECIFIED));
        }
        let mut out = Listeners {
            udp: Vec::new(),
            tcp: Vec::new(),
        };
        for h in &hosts {
            for p in &cfg.udp {
                let fd = bind_reuse(SocketAddr::new(*h, *p), libc::SOCK_DGRAM)?;
                out.udp.push(UdpSocket::from(fd));
            }
            for p in &cfg.tcp {
                let addr = SocketAddr::new(*h, *p);
                let fd = bind_reuse(addr, libc::SOCK_STREAM)?;
                // SAFETY: listen(2) on the socket we own.
                if unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&fd), 128) } < 0 {
                    return Err(io_err(format!("listen {addr}"))(
                        std::io::Error::last_os_error(),
                    ));
                }
                out.tcp.push(TcpListener::from(fd));
            }
        }
        Ok(out)
    }

    /// The bound local addresses (UDP first, then TCP), for messages.
    pub fn describe(&self) -> Vec<String> {
        let a =
            |r: std::io::Result<SocketAddr>| r.map_or_else(|e| e.to_string(), |a| a.to_string());
        self.udp
            .iter()
            .map(|s| format!("udp {}", a(s.local_addr())))
            .chain(
                self.tcp
                    .iter()
                    .map(|s| format!("tcp {}", a(s.local_addr()))),
            )
            .collect()
    }

    /// Serves until the process ends: one thread per socket, one per TCP connection.
    pub fn run(self) -> Result<(), Error> {
        let mut threads = Vec::new();
        for s in self.udp {
            threads.push(std::thread::spawn(move || echo(&s)));
        }
        for l in self.tcp {
            threads.push(std::thread::spawn(move || {
                for conn in l.incoming().flatten() {
                    std::thread::spawn(move || http(conn));
                }
            }));
        }
        for t in threads {
            t.join().map_err(|_| Error::Thread("serve"))?;
        }
        Ok(())
    }
}

fn echo(s: &UdpSocket) {
    let mut buf = vec![0u8; 65536];
    loop {
        match s.recv_from(&mut buf) {
            Ok((n, from)) => {
                let _ = s.send_to(&buf[..n], from);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn http(mut c: TcpStream) {
    let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = c.set_write_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 4096];
    let mut got = 0;
    // a request line with headers ends with an empty line; anything else: the first read
    while got < buf.len() {
        match c.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
        let seen = &buf[..got];
        if !seen.starts_with(b"GET ") && !seen.starts_with(b"HEAD ") && !seen.starts_with(b"POST ")
        {
            break;
        }
        if seen.windows(4).any(|w| w == b"\r\n\r\n") || seen.windows(2).any(|w| w == b"\n\n") {
            break;
        }
    }
    let Ok(local) = c.local_addr() else { return };
    let body = reply_body(local);
    let reply = format!(
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = c.write_all(reply.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_echoes_and_tcp_answers_with_the_address_reached_and_an_exact_bind_takes_over() {
        let probe = UdpSocket::bind("127.0.0.1:0").expect("probe");
        let port = probe.local_addr().expect("addr").port();
        drop(probe);
        let tcp_probe = TcpListener::bind("127.0.0.1:0").expect("probe");
        let tport = tcp_probe.local_addr().expect("addr").port();
        drop(tcp_probe);
        let l = Listeners::start(&ServeConfig {
            ipv4: true,
            ipv6: false,
            udp: vec![port],
            tcp: vec![tport],
        })
        .expect("binds");
        assert_eq!(l.describe().len(), 2);
        std::thread::spawn(move || l.run());

        let c = UdpSocket::bind("127.0.0.1:0").expect("client");
        c.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let to: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        c.send_to(b"ping", to).expect("send");
        let mut buf = [0u8; 16];
        let (n, from) = c.recv_from(&mut buf).expect("echo");
        assert_eq!((&buf[..n], from), (&b"ping"[..], to));

        // A receiver on the exact address (SO_REUSEADDR) gets the datagrams while it is bound: no echo.
        let exact = bind_reuse(to, libc::SOCK_DGRAM).expect("exact bind beside the wildcard");
        let exact = UdpSocket::from(exact);
        exact
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        c.set_read_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        c.send_to(b"measured", to).expect("send");
        let (n, _) = exact
            .recv_from(&mut buf)
            .expect("the exact socket receives");
        assert_eq!(&buf[..n], b"measured");
        assert!(c.recv_from(&mut buf).is_err(), "no echo while measured");

        let mut s = TcpStream::connect(("127.0.0.1", tport)).expect("connect");
        s.write_all(b"GET / HTTP/1.0\r\n\r\n").expect("request");
        let mut reply = String::new();
        s.read_to_string(&mut reply).expect("reply");
        assert!(reply.starts_with("HTTP/1.0 200 OK"), "{reply}");
        assert_eq!(
            served_by(&reply),
            Some(format!("127.0.0.1:{tport}").parse().expect("addr"))
        );
        // a bare line gets the same answer
        let mut s = TcpStream::connect(("127.0.0.1", tport)).expect("connect");
        s.write_all(b"hello\n").expect("line");
        let mut reply = String::new();
        s.read_to_string(&mut reply).expect("reply");
        assert!(served_by(&reply).is_some(), "{reply}");
    }

    #[test]
    fn served_by_refuses_other_text() {
        assert_eq!(served_by("nothing here"), None);
        assert_eq!(served_by("served by nonsense"), None);
        assert_eq!(
            served_by("served by [2001:db8::1]:80\n"),
            Some("[2001:db8::1]:80".parse().expect("addr"))
        );
    }
}
