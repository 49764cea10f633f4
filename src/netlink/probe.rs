//! Can this kernel make a link of kind X? Creates one (and deletes it again) through a
//! [`Handle`] the caller opened in a throwaway netns ([`crate::netns::Netns::scratch`]), so the
//! caller's netns is never touched; creating it also makes the kernel load the kind's module,
//! as the plugins' own requests would. Shared by `cni-multi doctor` and tests. The reference
//! has no such command; its plugins simply fail with "operation not supported".

use super::{Handle, IpvlanFlag, IpvlanMode, LinkKind, LinkSpec, MacvlanMode, errno_of};
use crate::netns::Netns;

/// The link kinds the applets create, as the kernel names them (`vlan` is module `8021q`;
/// `tun` is not a netlink kind: see [`probe_tun`]).
pub const LINK_KINDS: &[&str] = &[
    "veth", "bridge", "macvlan", "ipvlan", "vlan", "vrf", "dummy", "ifb", "vxlan",
];

/// What a probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It works.
    Present,
    /// The kernel (or the machine) lacks it; the text says how we know.
    Missing(String),
    /// The probe itself failed for another reason.
    Failed(String),
}

/// Parent of the stacked kinds (macvlan, ipvlan, vlan): one end of a veth, an Ethernet device
/// every kernel with veth has (some lack dummy).
const PARENT: &str = "probe-parent";

/// Creates a link of `kind` in the netns of `nl`, then deletes it.
pub fn probe_link_kind(nl: &Handle, kind: &str) -> Outcome {
    let spec = match spec_for(nl, kind) {
        Ok(spec) => spec,
        Err(e) => return Outcome::Failed(format!("{e:#}")),
    };
    let made = match &spec {
        Some(spec) => nl.create_link(spec),
        None => nl.create_veth("probe0", "probe1", 0, None, None, None),
    };
    match made {
        Ok(()) => {
            if let Ok(Some(link)) = nl.link_by_name("probe0") {
                let _ = nl.delete_link(link.index);
            }
            Outcome::Present
        }
        Err(e) if errno_of(&e) == Some(libc::EOPNOTSUPP) => {
            let module = if kind == "vlan" { "8021q" } else { kind };
            Outcome::Missing(format!(
                "kernel lacks link kind {kind} (EOPNOTSUPP; module {module})"
            ))
        }
        Err(e) => Outcome::Failed(format!("{e:#}")),
    }
}

/// The spec that creates `probe0` of `kind` (`None` for veth, made by its own call); stacked
/// kinds get a veth parent first.
fn spec_for(nl: &Handle, kind: &str) -> anyhow::Result<Option<LinkSpec>> {
    let k = match kind {
        "veth" => return Ok(None),
        "bridge" => LinkKind::Bridge {
            vlan_filtering: None,
            vlan_default_pvid: None,
            mcast_snooping: None,
        },
        "macvlan" => LinkKind::Macvlan {
            mode: MacvlanMode::Bridge,
            bc_queue_len: None,
        },
        "ipvlan" => LinkKind::Ipvlan {
            mode: IpvlanMode::L2,
            flags: IpvlanFlag::Bridge,
        },
        "vlan" => LinkKind::Vlan { id: 42 },
        "vrf" => LinkKind::Vrf { table: 4242 },
        "dummy" => LinkKind::Dummy,
        "ifb" => LinkKind::Ifb,
        "vxlan" => LinkKind::Vxlan {
            vni: 42,
            local: None,
            remote: None,
            port: Some(4789),
            dev: None,
            learning: None,
        },
        other => anyhow::bail!("no probe for link kind {other:?}"),
    };
    let mut spec = LinkSpec::new("probe0", k);
    if matches!(kind, "macvlan" | "ipvlan" | "vlan") {
        spec.parent = Some(parent(nl)?);
    }
    Ok(Some(spec))
}

/// The index of the veth parent, made on first use.
fn parent(nl: &Handle) -> anyhow::Result<u32> {
    if let Some(l) = nl.link_by_name(PARENT)? {
        return Ok(l.index);
    }
    nl.create_veth(PARENT, "probe-peer", 0, None, None, None)?;
    let l = nl.link_by_name(PARENT)?;
    l.map(|l| l.index)
        .ok_or_else(|| anyhow::anyhow!("{PARENT} vanished"))
}

/// `/dev/net/tun` works: a TAP device is created inside `ns` (`TUNSETIFF` makes it in the
/// calling thread's netns) and disappears when the fd closes, as the `tap` plugin's does.
pub fn probe_tun(ns: &Netns) -> Outcome {
    const DEV: &str = "/dev/net/tun";
    let file = match std::fs::OpenOptions::new().read(true).write(true).open(DEV) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Outcome::Missing(format!("{DEV} does not exist (module tun not loaded?)"));
        }
        Err(e) => return Outcome::Missing(format!("open {DEV}: {e}")),
    };
    match ns.run(|| tunsetiff(&file, "probe-tap0")) {
        Ok(Ok(())) => Outcome::Present,
        Ok(Err(e)) => Outcome::Failed(format!("TUNSETIFF on {DEV}: {e}")),
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

/// `ioctl(TUNSETIFF)` for a non-persistent TAP device without packet info.
fn tunsetiff(file: &std::fs::File, name: &str) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
    const IFF_TAP: libc::c_short = 0x0002;
    const IFF_NO_PI: libc::c_short = 0x1000;
    // struct ifreq: 16 bytes of name, then the flags (a union padded to 24 bytes).
    let mut ifr = [0u8; 40];
    ifr[..name.len()].copy_from_slice(name.as_bytes());
    ifr[16..18].copy_from_slice(&(IFF_TAP | IFF_NO_PI).to_ne_bytes());
    // SAFETY: ifr is a valid, writable ifreq-sized buffer for the duration of the call.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF as _, ifr.as_mut_ptr()) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::fresh_netns;

    /// Kinds every kernel the project runs on has, and one no kernel has; the link made is gone
    /// again afterwards.
    #[test]
    fn present_kinds_are_found_and_removed() {
        let Some(_ns) = fresh_netns("present_kinds_are_found_and_removed") else {
            return;
        };
        let nl = Handle::new().unwrap();
        for kind in ["veth", "bridge", "macvlan"] {
            assert_eq!(probe_link_kind(&nl, kind), Outcome::Present, "{kind}");
            assert!(nl.link_by_name("probe0").unwrap().is_none(), "{kind} left");
        }
        assert!(matches!(
            probe_link_kind(&nl, "no-such"),
            Outcome::Failed(_)
        ));
    }

    #[test]
    fn tun_device_is_made_in_the_given_netns_only() {
        let Some(home) = fresh_netns("tun_device_is_made_in_the_given_netns_only") else {
            return;
        };
        let other = crate::testutil::another_netns();
        assert_eq!(probe_tun(&other), Outcome::Present);
        assert!(Netns::current().unwrap().same_as(&home));
        let nl = Handle::new().unwrap();
        assert!(nl.link_by_name("probe-tap0").unwrap().is_none());
    }
}
