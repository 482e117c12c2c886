//! UDP peers for tests that send real datagrams through a chain: an echo server and a caller that counts
//! the answers coming from the address it called.

use std::net::{SocketAddr, UdpSocket};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::netns::{enter, in_ns};

/// In `ns`: a UDP echo on `addr` until `idle` passes without a datagram; the handle returns how many it
/// echoed. Returns once the socket is bound.
pub fn udp_echo(ns: &str, addr: SocketAddr, idle: Duration) -> JoinHandle<usize> {
    let ns = ns.to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        enter(&ns);
        let s = UdpSocket::bind(addr).expect("bind echo");
        s.set_read_timeout(Some(idle)).expect("timeout");
        tx.send(()).expect("ready");
        let mut n = 0;
        let mut buf = [0u8; 2048];
        while let Ok((len, src)) = s.recv_from(&mut buf) {
            let _ = s.send_to(&buf[..len], src);
            n += 1;
        }
        n
    });
    rx.recv_timeout(Duration::from_secs(5)).expect("echo bound");
    h
}

/// In `ns`: from a socket bound to `from`, `n` datagrams to `to`, each waiting up to `wait` for an answer
/// from `to` (an answer from another address does not count); how many were answered.
pub fn udp_calls(ns: &str, from: SocketAddr, to: SocketAddr, n: usize, wait: Duration) -> usize {
    in_ns(ns, || {
        let s = UdpSocket::bind(from).expect("bind caller");
        s.set_read_timeout(Some(wait)).expect("timeout");
        let mut answered = 0;
        let mut buf = [0u8; 2048];
        for i in 0..n {
            s.send_to(format!("call {i}").as_bytes(), to).expect("send");
            if let Ok((_, src)) = s.recv_from(&mut buf)
                && src == to
            {
                answered += 1;
            }
        }
        answered
    })
}
