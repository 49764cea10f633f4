//! The DHCPv4 client socket: an `AF_PACKET`/`SOCK_DGRAM` socket bound to the container's
//! interface, opened inside the container's netns (it stays bound to that netns afterwards,
//! so the calling thread switches in only for the `socket()` call). A packet socket is what
//! lets the client send from 0.0.0.0 and receive unicast OFFERs/ACKs to an address the
//! interface does not have yet, the way the reference's `nclient4` does. A classic BPF filter
//! keeps only UDP to port 68, so the socket does not see the container's other traffic. The
//! same kind of socket, filtered to ICMPv6 Router Advertisements, carries [`super::ra`]'s probe.

use super::packet;
use crate::netns::Netns;
use anyhow::{Context, Result};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

const ETH_P_IP: u16 = 0x0800;

const ETH_P_IPV6: u16 = 0x86dd;

/// A packet socket on one interface.
pub struct RawSock {
    fd: OwnedFd,
    ifindex: i32,
    proto: u16,
}

/// DHCPv4 replies: `ldb [9]; jeq 17; ldh [6]; jset 0x1fff (fragment) -> drop; ldxb 4*([0]&0xf); ldh [x+2];
/// jeq 68 -> accept; drop`.
const FILTER: [libc::sock_filter; 9] = [
    bpf(0x30, 0, 0, 9),
    bpf(0x15, 0, 6, 17),
    bpf(0x28, 0, 0, 6),
    bpf(0x45, 4, 0, 0x1fff),
    bpf(0xb1, 0, 0, 0),
    bpf(0x48, 0, 0, 2),
    bpf(0x15, 0, 1, packet::CLIENT_PORT as u32),
    bpf(0x06, 0, 0, 0xffff),
    bpf(0x06, 0, 0, 0),
];

/// Router Advertisements: `ldb [6]; jeq 58 (ICMPv6, no extension header); ldb [40];
/// jeq 134 -> accept; drop`.
const RA_FILTER: [libc::sock_filter; 6] = [
    bpf(0x30, 0, 0, 6),
    bpf(0x15, 0, 3, 58),
    bpf(0x30, 0, 0, 40),
    bpf(0x15, 0, 1, 134),
    bpf(0x06, 0, 0, 0xffff),
    bpf(0x06, 0, 0, 0),
];

const fn bpf(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

impl RawSock {
    /// Opens the DHCPv4 socket inside `ns` and binds it to `ifindex` (an index in that netns).
    pub fn open(ns: &Netns, ifindex: u32) -> Result<RawSock> {
        Self::open_filtered(ns, ifindex, ETH_P_IP, &FILTER)
    }

    /// Opens an IPv6 socket that sees only Router Advertisements (see [`super::ra`]).
    pub fn open_ra(ns: &Netns, ifindex: u32) -> Result<RawSock> {
        Self::open_filtered(ns, ifindex, ETH_P_IPV6, &RA_FILTER)
    }

    fn open_filtered(
        ns: &Netns,
        ifindex: u32,
        proto: u16,
        filter: &'static [libc::sock_filter],
    ) -> Result<RawSock> {
        let fd = ns
            .run(|| {
                // SAFETY: plain socket(2); the result is checked before use.
                let fd = unsafe {
                    libc::socket(
                        libc::AF_PACKET,
                        libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                        // Protocol 0: no packets until bind() names the protocol, after the filter
                        // is attached; and bind() then has no hook to remove, which would cost
                        // an RCU grace period (synchronize_net) on the ADD's path.
                        0,
                    )
                };
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // SAFETY: fd is a fresh, owned descriptor.
                Ok(unsafe { OwnedFd::from_raw_fd(fd) })
            })?
            .context("open DHCP packet socket")?;
        let s = RawSock {
            fd,
            ifindex: ifindex as i32,
            proto,
        };
        s.attach_filter(filter)?;
        let sa = s.addr([0; 6]);
        // SAFETY: `sa` is a valid sockaddr_ll of the size passed.
        let rc = unsafe {
            libc::bind(
                s.fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error()).context("bind DHCP packet socket");
        }
        Ok(s)
    }

    fn attach_filter(&self, filter: &'static [libc::sock_filter]) -> Result<()> {
        let prog = libc::sock_fprog {
            len: filter.len() as u16,
            filter: filter.as_ptr().cast_mut(),
        };
        // SAFETY: `prog` points at a static filter for the duration of the call.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                (&prog as *const libc::sock_fprog).cast(),
                size_of::<libc::sock_fprog>() as u32,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error()).context("attach DHCP socket filter");
        }
        Ok(())
    }

    fn addr(&self, mac: [u8; 6]) -> libc::sockaddr_ll {
        let mut addr = [0u8; 8];
        addr[..6].copy_from_slice(&mac);
        libc::sockaddr_ll {
            sll_family: libc::AF_PACKET as u16,
            sll_protocol: self.proto.to_be(),
            sll_ifindex: self.ifindex,
            sll_hatype: 0,
            sll_pkttype: 0,
            sll_halen: 6,
            sll_addr: addr,
        }
    }

    /// Sends a DHCP payload from `src` to `dst` (IPv4 + UDP framed here) via `mac`.
    pub fn send(&self, src: Ipv4Addr, dst: Ipv4Addr, mac: [u8; 6], payload: &[u8]) -> Result<()> {
        self.send_packet(&packet::frame(src, dst, payload), mac)
    }

    /// Sends one network-layer packet (the link-layer header is the kernel's) to `mac`.
    pub fn send_packet(&self, pkt: &[u8], mac: [u8; 6]) -> Result<()> {
        let sa = self.addr(mac);
        // SAFETY: buffer and address are valid for the sizes passed.
        let rc = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                pkt.as_ptr().cast(),
                pkt.len(),
                0,
                (&sa as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error()).context("send packet");
        }
        Ok(())
    }

    /// Waits up to `wait` for one datagram to port 68; returns its UDP payload and the
    /// sender's link-layer address. `None` on timeout.
    pub fn recv(&self, wait: Duration) -> Result<Option<(Vec<u8>, [u8; 6])>> {
        Ok(self
            .recv_packet(wait)?
            .and_then(|(buf, mac)| packet::unframe(&buf).map(|p| (p.to_vec(), mac))))
    }

    /// Waits up to `wait` for one packet the filter lets through: the network-layer packet
    /// and the sender's link-layer address. `None` on timeout.
    pub fn recv_packet(&self, wait: Duration) -> Result<Option<(Vec<u8>, [u8; 6])>> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = wait.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                return Ok(None);
            }
            return Err(e).context("poll packet socket");
        }
        if n == 0 {
            return Ok(None);
        }
        let mut buf = vec![0u8; 4096];
        // SAFETY: zeroed sockaddr_ll is a valid out-parameter.
        let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut len = size_of::<libc::sockaddr_ll>() as u32;
        // SAFETY: buffer and address are valid for the sizes passed.
        let got = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
                (&mut sa as *mut libc::sockaddr_ll).cast(),
                &mut len,
            )
        };
        if got < 0 {
            return Ok(None);
        }
        buf.truncate(got as usize);
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&sa.sll_addr[..6]);
        Ok(Some((buf, mac)))
    }
}
