//! Port-mapping traffic for end-to-end tests: a fake host with a container and an "outside" netns
//! on two veth pairs (built with `ip`, forwarding on in the host, no DAD anywhere), echo
//! servers that answer with the peer address they saw (so tests see who was masqueraded),
//! and bounded TCP/UDP clients. Sockets are opened by short-lived threads moved into a
//! netns, so the test's own threads never leave theirs.

use super::TestNs;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a client waits to connect and for an answer.
pub const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs `f` on a short-lived thread moved into `ns`: sockets it opens stay in `ns`.
pub use super::traffic::in_netns as in_ns;

/// Fake host, container and outside netns, wired with two veth pairs.
pub struct Topo {
    /// The fake host (plugins run here), 10.99.0.1 / fd99::1 toward the container and
    /// 192.168.77.1 / fd77::1 toward the outside.
    pub host: TestNs,
    /// The container: eth0 10.99.0.2/24, fd99::2/64.
    pub ctr: TestNs,
    /// The outside: eth0 192.168.77.2/24, fd77::2/64.
    pub out: TestNs,
}

impl Topo {
    /// Builds the three netns and the wiring.
    pub fn new(label: &str) -> Topo {
        let t = Topo {
            host: TestNs::new(&format!("{label}-host")),
            ctr: TestNs::new(&format!("{label}-ctr")),
            out: TestNs::new(&format!("{label}-out")),
        };
        // No DAD anywhere (link-locals included), so IPv6 works at once.
        for ns in [&t.host, &t.ctr, &t.out] {
            ns.sh("echo 0 >/proc/sys/net/ipv6/conf/all/accept_dad \
                 && echo 0 >/proc/sys/net/ipv6/conf/default/accept_dad");
        }
        t.wire(&t.ctr, "ctrh", "10.99.0", "fd99:");
        t.wire(&t.out, "outh", "192.168.77", "fd77:");
        t.host.sh(
            "ip link set lo up && echo 1 >/proc/sys/net/ipv4/ip_forward \
             && echo 1 >/proc/sys/net/ipv6/conf/all/forwarding",
        );
        t
    }

    /// A veth `host_if` (host, .1 / ::1) <-> eth0 (`peer`, .2 / ::2), default routes via host.
    fn wire(&self, peer: &TestNs, host_if: &str, v4: &str, v6: &str) {
        self.host.sh(&format!(
            "ip link add {host_if} type veth peer name eth0 netns {pid} \
             && ip addr add {v4}.1/24 dev {host_if} && ip addr add {v6}:1/64 dev {host_if} nodad \
             && ip link set {host_if} up",
            pid = peer.pid()
        ));
        peer.sh(&format!(
            "ip link set lo up && ip addr add {v4}.2/24 dev eth0 \
             && ip addr add {v6}:2/64 dev eth0 nodad && ip link set eth0 up \
             && ip route add default via {v4}.1 && ip -6 route add default via {v6}:1 \
             && ping -c1 -W2 {v4}.1 >/dev/null && ping -6 -c1 -W2 {v6}:1 >/dev/null"
        ));
    }
}

/// Echo servers: TCP and UDP on `[::]`, both answering
/// `<peer address> <request>`. Stopped on drop.
pub struct Servers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

fn peer_ip(a: SocketAddr) -> IpAddr {
    a.ip().to_canonical()
}

impl Servers {
    /// Starts both servers in `ns`.
    pub fn start(ns: &TestNs, tcp_port: u16, udp_port: u16) -> Servers {
        let (tcp, udp) = in_ns(ns, move || {
            let t = TcpListener::bind(("::", tcp_port)).expect("bind tcp");
            let u = UdpSocket::bind(("::", udp_port)).expect("bind udp");
            (t, u)
        });
        let stop = Arc::new(AtomicBool::new(false));
        tcp.set_nonblocking(true).unwrap();
        udp.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let s1 = stop.clone();
        let t1 = std::thread::spawn(move || {
            while !s1.load(Ordering::Relaxed) {
                match tcp.accept() {
                    Ok((mut c, peer)) => {
                        c.set_nonblocking(false).unwrap();
                        c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                        let mut req = String::new();
                        let _ = c.read_to_string(&mut req);
                        let _ = write!(c, "{} {}", peer_ip(peer), req.trim());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        let s2 = stop.clone();
        let t2 = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !s2.load(Ordering::Relaxed) {
                if let Ok((n, peer)) = udp.recv_from(&mut buf) {
                    let req = String::from_utf8_lossy(&buf[..n]).to_string();
                    let _ = udp.send_to(format!("{} {req}", peer_ip(peer)).as_bytes(), peer);
                }
            }
        });
        Servers {
            stop,
            threads: vec![t1, t2],
        }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// One TCP request from `ns` to `to`: the server's answer, or why there was none.
pub fn tcp_ask(ns: &TestNs, to: &str) -> Result<String, String> {
    let to: SocketAddr = to.parse().unwrap();
    in_ns(ns, move || {
        let mut c = TcpStream::connect_timeout(&to, IO_TIMEOUT).map_err(|e| e.to_string())?;
        c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        c.write_all(b"ping").map_err(|e| e.to_string())?;
        c.shutdown(std::net::Shutdown::Write)
            .map_err(|e| e.to_string())?;
        let mut answer = String::new();
        c.read_to_string(&mut answer).map_err(|e| e.to_string())?;
        Ok(answer)
    })
}

/// One UDP request (retried a few times: a datagram may meet an unready neighbour).
pub fn udp_ask(ns: &TestNs, to: &str) -> Result<String, String> {
    let to: SocketAddr = to.parse().unwrap();
    in_ns(ns, move || {
        let any = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
        let s = UdpSocket::bind(any).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buf = [0u8; 512];
        for _ in 0..4 {
            s.send_to(b"ping", to).map_err(|e| e.to_string())?;
            if let Ok(n) = s.recv(&mut buf) {
                return Ok(String::from_utf8_lossy(&buf[..n]).to_string());
            }
        }
        Err("no UDP answer".into())
    })
}

/// One datagram from `sock` to `to`; the answer, if one comes within half a second.
pub fn udp_once(sock: &UdpSocket, to: &str) -> Option<String> {
    let mut buf = [0u8; 512];
    while sock.recv(&mut buf).is_ok() {} // drain late answers
    sock.send_to(b"ping", to).ok()?;
    let n = sock.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).to_string())
}

/// One request a test expects answered by an echo server: from `from` to `to` (`ip:port`,
/// `[ip6]:port`), and the peer address the server must report seeing.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    from: &'a TestNs,
    to: &'a str,
    peer: &'a str,
    udp: bool,
}

impl<'a> Ask<'a> {
    /// A TCP request.
    pub fn tcp(from: &'a TestNs, to: &'a str, peer: &'a str) -> Ask<'a> {
        Ask {
            from,
            to,
            peer,
            udp: false,
        }
    }

    /// A UDP request.
    pub fn udp(from: &'a TestNs, to: &'a str, peer: &'a str) -> Ask<'a> {
        Ask {
            from,
            to,
            peer,
            udp: true,
        }
    }
}

/// Sends every request and panics, naming `what` and the request, unless each is answered
/// and the server saw the expected peer.
pub fn expect_answers(what: &str, asks: &[Ask<'_>]) {
    for a in asks {
        let (answer, proto) = if a.udp {
            (udp_ask(a.from, a.to), "udp")
        } else {
            (tcp_ask(a.from, a.to), "tcp")
        };
        let case = format!("{what}: {proto} from {} to {}", a.from.label(), a.to);
        let answer = answer.unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(answer, format!("{} ping", a.peer), "{case}");
    }
}
