//! Network namespace ids (`RTM_GETNSID`, `RTM_NEWNSID`): the id one netns has for another,
//! assigned when it has none, as `ip netns set` / `ip link add ... link-netns` do. A link
//! created by a socket inside a container netns names its lower device in the host netns by
//! (`IFLA_LINK`, `IFLA_LINK_NETNSID`), so the kernel never looks its name up in the host netns
//! (where a link called like `CNI_IFNAME` would clash) and no rename is needed. The kernel
//! assigns such an id itself anyway the first time it reports a link whose lower device is in
//! another netns.

use super::{Handle, is_exists};
use crate::netns::Netns;
use anyhow::Context;
use neli::consts::nl::NlmF;
use neli::consts::rtnl::Rtm;
use neli::types::Buffer;

// include/uapi/linux/net_namespace.h
const NETNSA_NSID: u16 = 1;
const NETNSA_FD: u16 = 3;

/// The payload of an nsid request: `struct rtgenmsg` (AF_UNSPEC, padded to 4 bytes, as the
/// kernel parses it with `NLMSG_ALIGN(sizeof(struct rtgenmsg))`), then `NETNSA_NSID` and
/// `NETNSA_FD` when given.
pub(crate) fn nsid_payload(nsid: Option<i32>, fd: Option<u32>) -> Vec<u8> {
    let mut b = vec![0u8; 4];
    let mut put = |ty: u16, v: [u8; 4]| {
        b.extend(8u16.to_ne_bytes());
        b.extend(ty.to_ne_bytes());
        b.extend(v);
    };
    if let Some(n) = nsid {
        put(NETNSA_NSID, n.to_ne_bytes());
    }
    if let Some(fd) = fd {
        put(NETNSA_FD, fd.to_ne_bytes());
    }
    b
}

/// `NETNSA_NSID` of an `RTM_NEWNSID` answer (-1: none assigned).
pub(crate) fn parse_nsid(p: &[u8]) -> anyhow::Result<i32> {
    let mut at = 4;
    while at + 4 <= p.len() {
        let len = u16::from_ne_bytes([p[at], p[at + 1]]) as usize;
        let ty = u16::from_ne_bytes([p[at + 2], p[at + 3]]) & 0x3fff;
        if len < 4 || at + len > p.len() {
            break;
        }
        if ty == NETNSA_NSID && len >= 8 {
            let v = &p[at + 4..at + 8];
            return Ok(i32::from_ne_bytes([v[0], v[1], v[2], v[3]]));
        }
        at += len.div_ceil(4) * 4;
    }
    anyhow::bail!("RTM_NEWNSID answer without NETNSA_NSID")
}

impl Handle {
    /// The id of `other` in this handle's netns, `None` when it has none.
    fn nsid(&self, other: &Netns) -> anyhow::Result<Option<i32>> {
        let payload = Buffer::from(nsid_payload(None, Some(other.raw_fd() as u32)));
        let id = self.get("get netnsid", Rtm::Getnsid, payload, parse_nsid)?;
        Ok(id.filter(|&id| id >= 0))
    }

    /// The id of `other` in this handle's netns, asking the kernel to assign one if it has
    /// none (a concurrent assignment is fine).
    pub fn netnsid_of(&self, other: &Netns) -> anyhow::Result<i32> {
        if let Some(id) = self.nsid(other)? {
            return Ok(id);
        }
        let payload = Buffer::from(nsid_payload(Some(-1), Some(other.raw_fd() as u32)));
        match self.request("assign netnsid", Rtm::Newnsid, NlmF::empty(), payload) {
            Err(e) if is_exists(&e) => {}
            r => r?,
        }
        self.nsid(other)?
            .context("the kernel assigned no netnsid to the other netns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{another_netns, fresh_netns};

    #[test]
    #[cfg(target_endian = "little")]
    fn payload_bytes() {
        assert_eq!(
            nsid_payload(Some(-1), Some(7)),
            [
                0, 0, 0, 0, // rtgenmsg: AF_UNSPEC + 3 pad
                8, 0, 1, 0, 0xff, 0xff, 0xff, 0xff, // NETNSA_NSID -1
                8, 0, 3, 0, 7, 0, 0, 0, // NETNSA_FD 7
            ]
        );
        assert_eq!(parse_nsid(&nsid_payload(Some(5), None)).unwrap(), 5);
        assert!(parse_nsid(&[0, 0, 0, 0]).is_err());
    }

    #[test]
    fn assigned_once_and_stable() {
        let Some(host) = fresh_netns("netnsid_assigned_once_and_stable") else {
            return;
        };
        let other = another_netns();
        let inside = Handle::in_netns(&other).unwrap();
        assert_eq!(inside.nsid(&host).unwrap(), None);
        let id = inside.netnsid_of(&host).unwrap();
        assert!(id >= 0);
        assert_eq!(inside.netnsid_of(&host).unwrap(), id);
        assert_eq!(inside.nsid(&host).unwrap(), Some(id));
    }
}
