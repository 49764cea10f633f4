//! Real traffic for e2e tests: an "outside" namespace wired to a test's host namespace by a
//! veth with its own subnets ([`Outside`]), a TCP listener in one namespace that reports the
//! source address a connection arrived from ([`Listener`]), and ping with retries.
//!
//! The listener and the connecting socket are made by short-lived threads of the test process
//! that `setns` into the namespace (a socket stays in the netns it was created in), so no tool
//! needs to be installed (no tcpdump, no nc) and no process is left behind. The outside
//! namespace has no route back to the container subnets: a connection from a container only
//! completes when it was masqueraded, and the listener then sees the host's address.

use super::netns::TestNs;
use nix::sched::{CloneFlags, setns};
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Runs `f` on a new thread inside the namespace of `ns` and returns its value.
pub fn in_netns<T: Send>(ns: &TestNs, f: impl FnOnce() -> T + Send) -> T {
    let path = ns.path().to_path_buf();
    std::thread::scope(|s| {
        s.spawn(move || {
            let file = std::fs::File::open(&path).expect("open netns");
            setns(&file, CloneFlags::CLONE_NEWNET).expect("setns into the test netns");
            f()
        })
        .join()
        .expect("thread inside the netns")
    })
}

/// A third namespace reachable from the host namespace only: the host holds `host_v4` and
/// `host_v6` on `out0`, the outside holds `v4` and `v6` on `out1`.
#[derive(Debug)]
pub struct Outside {
    /// The outside namespace.
    pub ns: TestNs,
    /// The outside's IPv4 address.
    pub v4: IpAddr,
    /// The outside's IPv6 address.
    pub v6: IpAddr,
    /// The host's IPv4 address on the link to the outside.
    pub host_v4: IpAddr,
    /// The host's IPv6 address on the link to the outside.
    pub host_v6: IpAddr,
}

impl Outside {
    /// Wires a new outside namespace to `host` (198.51.100.0/24 and 2001:db8:51::/64, DAD off)
    /// and turns on forwarding in `host`.
    pub fn new(host: &TestNs, label: &str) -> Outside {
        let ns = TestNs::new(&format!("{label}-outside"));
        let pid = ns.pid().to_string();
        host.ip(&[
            "link", "add", "out0", "type", "veth", "peer", "name", "out1",
        ]);
        host.ip(&["link", "set", "out1", "netns", &pid]);
        for (side, dev, v4, v6) in [
            (host, "out0", "198.51.100.1/24", "2001:db8:51::1/64"),
            (&ns, "out1", "198.51.100.2/24", "2001:db8:51::2/64"),
        ] {
            side.sh(&format!(
                "sysctl -qw net.ipv6.conf.{dev}.accept_dad=0 && ip addr add {v4} dev {dev} && \
                 ip addr add {v6} dev {dev} nodad && ip link set {dev} up && ip link set lo up"
            ));
        }
        host.sh("sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1");
        Outside {
            ns,
            v4: "198.51.100.2".parse().unwrap(),
            v6: "2001:db8:51::2".parse().unwrap(),
            host_v4: "198.51.100.1".parse().unwrap(),
            host_v6: "2001:db8:51::1".parse().unwrap(),
        }
    }
}

/// A listening TCP socket inside some namespace.
#[derive(Debug)]
pub struct Listener {
    sock: TcpListener,
    port: u16,
}

impl Listener {
    /// Listens on `[::]` (both families) on a free port inside `ns`.
    pub fn new(ns: &TestNs) -> Listener {
        let sock = in_netns(ns, || TcpListener::bind("[::]:0")).expect("bind the listener");
        let port = sock.local_addr().unwrap().port();
        sock.set_nonblocking(true).unwrap();
        Listener { sock, port }
    }

    /// Connects from inside `from` to `to` on this listener's port and returns the source
    /// address the listener saw, or `None` when no connection arrived within `limit`.
    pub fn source_seen(&self, from: &TestNs, to: IpAddr, limit: Duration) -> Option<IpAddr> {
        let target = SocketAddr::new(to, self.port);
        let connected = in_netns(from, move || TcpStream::connect_timeout(&target, limit));
        let _stream = connected.ok()?;
        let deadline = Instant::now() + limit;
        loop {
            match self.sock.accept() {
                Ok((_, peer)) => return Some(unmapped(peer.ip())),
                Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(_) => return None,
            }
        }
    }
}

/// An IPv4 peer of a `[::]` socket shows as `::ffff:a.b.c.d`.
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// `ping -c 1` from inside `ns`, retried for up to `within` (IPv6 addresses may still be
/// tentative right after ADD). True once one reply came back.
pub fn ping(ns: &TestNs, to: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if ns.exec(["ping", "-c", "1", "-W", "1", to]).status.success() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
