//! The veth pair every pod-network plugin starts with: the container end named `CNI_IFNAME`
//! is born directly inside the container netns, the host end (`veth` + 8 hex digits unless a
//! name is given) stays in the host netns. Mirrors the reference's `ip.SetupVeth` (FEATURES.md
//! 5.2), but is driven from the host side: one request, no switch into the container.

use crate::netlink::{self, Handle, Link};
use crate::netns::Netns;
use crate::sysctl;
use anyhow::{Context, bail};
use std::io::Read;

/// The host end's transmit queue length, as the reference's (a veth has no qdisc queue to
/// size; 0 is what `ip link` shows for the reference's host ends).
const HOST_TXQLEN: u32 = 0;

/// Attempts at a free random host-side name, as the reference.
const NAME_ATTEMPTS: usize = 10;

/// The two ends, as the kernel reports them after creation.
#[derive(Debug, Clone)]
pub struct VethPair {
    /// The host end (in the host netns, up).
    pub host: Link,
    /// The container end (in the container netns, still down).
    pub container: Link,
}

/// What to create.
#[derive(Debug, Clone, Default)]
pub struct VethRequest<'a> {
    /// Container-side name (`CNI_IFNAME`).
    pub ifname: &'a str,
    /// Host-side name; `None` picks `vethXXXXXXXX`.
    pub host_name: Option<&'a str>,
    /// MTU for both ends; 0 keeps the kernel default.
    pub mtu: u32,
    /// MAC for the container end.
    pub container_mac: Option<[u8; 6]>,
}

/// Creates the pair. `host` is a handle in the host netns, `cont` one in `cont_ns`. Fails if
/// `ifname` already exists in the container.
pub fn setup_veth(
    host: &Handle,
    cont: &Handle,
    cont_ns: &Netns,
    req: &VethRequest<'_>,
) -> anyhow::Result<VethPair> {
    if cont.link_by_name(req.ifname)?.is_some() {
        bail!("container veth name {:?} already exists", req.ifname);
    }
    let mut last_err = None;
    for _ in 0..NAME_ATTEMPTS {
        let host_name = match req.host_name {
            Some(n) => n.to_string(),
            None => random_veth_name()?,
        };
        // The reference v1.9.1 (netlink v1.3.1) sends IFLA_TXQLEN 0 for the host end only
        // (`PeerTxQLen` left 0) and nothing for the container end (`NewLinkAttrs`: -1), so
        // the host end has qlen 0 and the container end the kernel's 1000. v1.1.1 sent 0 for
        // both; we follow v1.9.1 (docs/differences.md).
        match host.create_veth_qlen(
            &host_name,
            req.ifname,
            req.mtu,
            None,
            req.container_mac,
            Some(cont_ns),
            Some(HOST_TXQLEN),
        ) {
            Ok(()) => return finish(host, cont, &host_name, req.ifname),
            Err(e)
                if netlink::is_exists(&e)
                    && req.host_name.is_none()
                    && host.link_by_name(&host_name)?.is_some() =>
            {
                last_err = Some(e);
            }
            Err(e) if netlink::is_exists(&e) => {
                return Err(e).with_context(|| {
                    format!(
                        "container veth name {:?} peer provided ({host_name:?}) already exists",
                        req.ifname
                    )
                });
            }
            Err(e) => return Err(e),
        }
    }
    Err(last_err.expect("at least one attempt"))
        .context("no free random veth name after 10 attempts")
}

/// Reads both ends back, sets the host end up and stops it accepting router advertisements.
fn finish(host: &Handle, cont: &Handle, host_name: &str, ifname: &str) -> anyhow::Result<VethPair> {
    let host_link = host
        .link_by_name(host_name)?
        .with_context(|| format!("host veth {host_name} vanished after creation"))?;
    host.set_up(host_link.index)
        .with_context(|| format!("set {host_name} up"))?;
    // Best effort, as the reference: IPv6 may be disabled on the host.
    let _ = sysctl::write(&format!("net/ipv6/conf/{host_name}/accept_ra"), "0");
    let container = cont
        .link_by_name(ifname)?
        .with_context(|| format!("container veth {ifname} missing after creation"))?;
    let host_link = host.link_by_index(host_link.index)?.unwrap_or(host_link);
    Ok(VethPair {
        host: host_link,
        container,
    })
}

/// `veth` + 8 hex digits from 4 random bytes (NetworkManager ignores `veth*`).
pub fn random_veth_name() -> anyhow::Result<String> {
    let mut b = [0u8; 4];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .context("reading /dev/urandom")?;
    Ok(format!(
        "veth{:02x}{:02x}{:02x}{:02x}",
        b[0], b[1], b[2], b[3]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{another_netns, fresh_netns};

    #[test]
    fn random_names_fit_ifnamsiz() {
        let n = random_veth_name().unwrap();
        assert_eq!(n.len(), 12);
        assert!(n.starts_with("veth") && n[4..].bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(n, random_veth_name().unwrap());
    }

    #[test]
    fn pair_spans_host_and_container() {
        let Some(_host_ns) = fresh_netns("pair_spans_host_and_container") else {
            return;
        };
        let cont_ns = another_netns();
        let host = Handle::new().unwrap();
        let cont = Handle::in_netns(&cont_ns).unwrap();
        let mac = [0x02, 0, 0, 0, 0, 0x42];
        let req = VethRequest {
            ifname: "eth0",
            host_name: None,
            mtu: 1400,
            container_mac: Some(mac),
        };
        let pair = setup_veth(&host, &cont, &cont_ns, &req).unwrap();
        assert!(pair.host.name.starts_with("veth"));
        assert!(pair.host.is_up());
        assert_eq!(pair.host.mtu, 1400);
        assert_eq!(
            (pair.container.name.as_str(), pair.container.mac),
            ("eth0", Some(mac))
        );
        assert_eq!(pair.container.mtu, 1400);
        // As the reference v1.9.1: qlen 0 on the host end, the kernel's 1000 in the container.
        assert_eq!((pair.host.txqlen, pair.container.txqlen), (0, 1000));
        assert_eq!(
            pair.host.link,
            Some(pair.container.index),
            "host end's peer is the container end"
        );
        assert!(
            host.link_by_name("eth0").unwrap().is_none(),
            "container end is not in the host"
        );

        let again = setup_veth(&host, &cont, &cont_ns, &req).unwrap_err();
        assert!(format!("{again:#}").contains("already exists"), "{again:#}");
        let named = VethRequest {
            ifname: "eth1",
            host_name: Some(&pair.host.name),
            ..req
        };
        let clash = setup_veth(&host, &cont, &cont_ns, &named).unwrap_err();
        assert!(netlink::is_exists(&clash), "{clash:#}");
        assert!(
            cont.link_by_name("eth1").unwrap().is_none(),
            "nothing half-made"
        );
    }
}
