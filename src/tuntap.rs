//! TAP devices made in process through `/dev/net/tun` ioctls, as `ip tuntap add` does
//! (iproute2's `iptuntap.c`): open the clone device, `TUNSETIFF` with the mode and flags,
//! optionally `TUNSETOWNER` / `TUNSETGROUP`, then `TUNSETPERSIST` so the device outlives the
//! fd. The device is born in the netns the *opening* thread is in (the tun socket takes
//! `current`'s netns at `open`), so callers run [`create_persistent_tap`] through
//! [`crate::netns::Netns::run`]. Used by the tap applet (FEATURES.md 6.8); the reference runs
//! the `ip` binary for most configurations, this never does.
//!
//! A multi-queue device is created with one queue; the consumer (QEMU, a VMM) attaches more
//! with its own `TUNSETIFF` + `IFF_MULTI_QUEUE` opens, so `TUNSETQUEUE` is not needed here.

use anyhow::{Context, Result, bail};
use std::fs::OpenOptions;
use std::os::fd::AsRawFd;

/// `IFF_TAP`: an Ethernet device (not `IFF_TUN`, an IP one).
pub const IFF_TAP: i16 = 0x0002;
/// `IFF_MULTI_QUEUE`: the device takes several queues (one fd each).
pub const IFF_MULTI_QUEUE: i16 = 0x0100;
/// `IFF_NO_PI`: frames carry no 4-byte packet-information header.
pub const IFF_NO_PI: i16 = 0x1000;
/// `IFF_VNET_HDR`: frames carry a `virtio_net_hdr` (offloads for a VMM).
pub const IFF_VNET_HDR: i16 = 0x4000;
/// `IFF_TUN_EXCL`: fail with `EBUSY` instead of attaching when the name already exists.
pub const IFF_TUN_EXCL: i16 = -0x8000; // 0x8000 as the kernel's `short`

// _IOW('T', n, int) of include/uapi/linux/if_tun.h.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
const TUNSETOWNER: libc::c_ulong = 0x4004_54cc;
const TUNSETGROUP: libc::c_ulong = 0x4004_54ce;

/// The clone device every tun/tap is made through.
pub const CLONE_DEVICE: &str = "/dev/net/tun";

/// What to create.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TapSpec {
    /// Device name (must not exist yet in the netns).
    pub name: String,
    /// `IFF_MULTI_QUEUE`.
    pub multi_queue: bool,
    /// `IFF_VNET_HDR`.
    pub vnet_hdr: bool,
    /// `IFF_NO_PI` is cleared when true.
    pub packet_info: bool,
    /// `TUNSETOWNER`: the uid allowed to attach (unset: anyone with CAP_NET_ADMIN).
    pub owner: Option<u32>,
    /// `TUNSETGROUP`: the gid allowed to attach.
    pub group: Option<u32>,
}

/// `struct ifreq` as `TUNSETIFF` reads it: the name and, in the union, the flags.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: i16,
    _pad: [u8; 22],
}

impl TapSpec {
    /// The `ifr_flags` for `TUNSETIFF` (always exclusive: never attach to an existing device).
    pub fn flags(&self) -> i16 {
        let mut f = IFF_TAP | IFF_TUN_EXCL;
        if !self.packet_info {
            f |= IFF_NO_PI;
        }
        if self.vnet_hdr {
            f |= IFF_VNET_HDR;
        }
        if self.multi_queue {
            f |= IFF_MULTI_QUEUE;
        }
        f
    }

    fn ifreq(&self) -> Result<IfReq> {
        let bytes = self.name.as_bytes();
        if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
            bail!("invalid tap name {:?}", self.name);
        }
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags: self.flags(),
            _pad: [0; 22],
        };
        req.name[..bytes.len()].copy_from_slice(bytes);
        Ok(req)
    }
}

/// Creates the persistent TAP device `spec` in the calling thread's netns. On failure after
/// `TUNSETIFF` nothing is left: the fd closes before persistence, which removes the device.
pub fn create_persistent_tap(spec: &TapSpec) -> Result<()> {
    let mut req = spec.ifreq()?;
    let tun = OpenOptions::new()
        .read(true)
        .write(true)
        .open(CLONE_DEVICE)
        .with_context(|| format!("open {CLONE_DEVICE}"))?;
    let fd = tun.as_raw_fd();
    // SAFETY: `req` is a live, properly sized `struct ifreq` for the duration of the call.
    ioctl_result(unsafe { libc::ioctl(fd, TUNSETIFF, &mut req as *mut IfReq) })
        .with_context(|| format!("create tap {} (TUNSETIFF)", spec.name))?;
    if let Some(uid) = spec.owner {
        // SAFETY: these ioctls take their argument by value.
        ioctl_result(unsafe { libc::ioctl(fd, TUNSETOWNER, uid as libc::c_ulong) })
            .with_context(|| format!("set owner {uid} of tap {}", spec.name))?;
    }
    if let Some(gid) = spec.group {
        // SAFETY: as above.
        ioctl_result(unsafe { libc::ioctl(fd, TUNSETGROUP, gid as libc::c_ulong) })
            .with_context(|| format!("set group {gid} of tap {}", spec.name))?;
    }
    // SAFETY: as above.
    ioctl_result(unsafe { libc::ioctl(fd, TUNSETPERSIST, 1 as libc::c_ulong) })
        .with_context(|| format!("make tap {} persistent", spec.name))?;
    Ok(())
}

/// Whether SELinux is enabled on this host: a selinuxfs is mounted (how go-selinux decides).
pub fn selinux_enabled() -> bool {
    let mounted = std::fs::read_to_string("/proc/self/mountinfo")
        .is_ok_and(|m| m.lines().any(|l| l.contains(" - selinuxfs ")));
    mounted || std::path::Path::new("/sys/fs/selinux/enforce").exists()
}

/// [`create_persistent_tap`] run by a forked child of the calling thread that first switches
/// to the SELinux `context` (`/proc/thread-self/attr/current`), so the device's tun socket is
/// labelled with it (the kernel labels it with the creating task's context, not the socket
/// create one). The reference sets an *exec* label and runs `ip`; this needs the policy to
/// allow the plugin's domain `setcurrent` and `dyntransition` to `context` instead. The child
/// inherits the thread's netns. Call it while the process has one thread (a plugin does).
pub fn create_persistent_tap_in_context(spec: &TapSpec, context: &str) -> Result<()> {
    use nix::sys::wait::{WaitStatus, waitpid};
    use nix::unistd::{ForkResult, fork, pipe};
    use std::io::{Read, Write};
    spec.ifreq()?;
    let (rx, tx) = pipe().context("pipe")?;
    // SAFETY: the child only makes system calls and small allocations before `_exit`; a
    // plugin is single-threaded when it creates its tap, so no lock can be held by another.
    match unsafe { fork() }.context("fork")? {
        ForkResult::Child => {
            drop(rx);
            let outcome = std::fs::write("/proc/thread-self/attr/current", context)
                .with_context(|| format!("could not switch to SELinux context {context:?}"))
                .and_then(|()| create_persistent_tap(spec));
            let code = match outcome {
                Ok(()) => 0,
                Err(e) => {
                    let _ = std::fs::File::from(tx).write_all(format!("{e:#}").as_bytes());
                    1
                }
            };
            // SAFETY: ends the child without running the parent's destructors or atexit.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(tx);
            let mut why = String::new();
            let _ = std::fs::File::from(rx).read_to_string(&mut why);
            match waitpid(child, None).context("wait for the tap creator")? {
                WaitStatus::Exited(_, 0) => Ok(()),
                _ => bail!("{why}"),
            }
        }
    }
}

fn ioctl_result(rc: libc::c_int) -> std::io::Result<()> {
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::Handle;

    #[test]
    fn flags_and_names() {
        let mut s = TapSpec {
            name: "tap0".into(),
            ..Default::default()
        };
        assert_eq!(s.flags() as u16, 0x0002 | 0x1000 | 0x8000);
        s.vnet_hdr = true;
        s.multi_queue = true;
        s.packet_info = true;
        assert_eq!(s.flags() as u16, 0x0002 | 0x4000 | 0x0100 | 0x8000);
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
        for bad in ["", "sixteen-chars-xx", "a\0b"] {
            s.name = bad.into();
            assert!(s.ifreq().is_err(), "{bad:?}");
        }
    }

    /// In a fresh netns: the device outlives the fd, is a tun device, and its name cannot be
    /// taken over by a second create (`IFF_TUN_EXCL`). Owner, group and flags are checked
    /// end to end with `ip -d -j link` (tests/e2e/tap.rs).
    #[test]
    fn persistent_tap_with_owner_group_and_exclusive_name() {
        let Some(_ns) = crate::testutil::fresh_netns("persistent_tap") else {
            return;
        };
        let spec = TapSpec {
            name: "tapt0".into(),
            multi_queue: true,
            vnet_hdr: true,
            owner: Some(1234),
            group: Some(5678),
            ..Default::default()
        };
        create_persistent_tap(&spec).unwrap();
        let nl = Handle::new().unwrap();
        let link = nl.link_by_name("tapt0").unwrap().expect("tap persists");
        assert_eq!(link.kind, "tun");
        let e = create_persistent_tap(&spec).unwrap_err();
        assert!(format!("{e:#}").contains("TUNSETIFF"), "{e:#}");
        nl.delete_link(link.index).unwrap();
    }

    /// Where the context cannot be entered (no SELinux here, or a policy that refuses the
    /// dyntransition), the child's reason comes back and no device is left.
    #[test]
    fn a_context_that_cannot_be_entered_is_a_clear_error() {
        if selinux_enabled() {
            return;
        }
        let Some(_ns) = crate::testutil::fresh_netns("tap_in_context") else {
            return;
        };
        let spec = TapSpec {
            name: "tapctx0".into(),
            ..Default::default()
        };
        let e = create_persistent_tap_in_context(&spec, "system_u:system_r:nope_t:s0").unwrap_err();
        assert!(
            e.to_string()
                .contains("could not switch to SELinux context"),
            "{e:#}"
        );
        let nl = Handle::new().unwrap();
        assert!(nl.link_by_name("tapctx0").unwrap().is_none());
    }
}
