//! VRF devices for the `vrf` applet: list the VRFs of a netns with their routing tables
//! (`IFLA_INFO_DATA` / `IFLA_VRF_TABLE`, which [`super::Link`] does not keep). Creating one is
//! [`super::LinkKind::Vrf`] through `create_link`; enslaving is `set_master`. This kernel has
//! no VRF, so the messages are tested byte by byte here (creation, enslave, release, and the
//! parse of a dumped VRF), and against a kernel with VRF by the e2e module `vrf` in the VM rig.

use super::Handle;
use super::attr::{find, kind_of, nested, parse, str_of, u32_of};
use neli::consts::rtnl::{IflaInfo, RtAddrFamily, Rtm};
use neli::rtnl::{Ifinfomsg, IfinfomsgBuilder};

const IFLA_VRF_TABLE: u16 = 1;

/// One VRF device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vrf {
    /// ifindex.
    pub index: u32,
    /// Name.
    pub name: String,
    /// The routing table it is bound to.
    pub table: u32,
}

/// The VRF in one `RTM_NEWLINK` dump message, `None` for links of other kinds.
fn parse_vrf(b: &[u8]) -> anyhow::Result<Option<Vrf>> {
    let m: Ifinfomsg = parse(b)?;
    let (mut name, mut kind, mut table) = (String::new(), String::new(), None);
    for a in m.rtattrs().iter() {
        let p = a.rta_payload().as_ref();
        match kind_of(a) {
            libc::IFLA_IFNAME => name = str_of(p),
            libc::IFLA_LINKINFO => {
                let info = nested::<IflaInfo>(p)?;
                kind = find(&info, libc::IFLA_INFO_KIND)
                    .map(str_of)
                    .unwrap_or_default();
                if let Some(data) = find(&info, libc::IFLA_INFO_DATA) {
                    table = find(&nested::<u16>(data)?, IFLA_VRF_TABLE).and_then(u32_of);
                }
            }
            _ => {}
        }
    }
    Ok((kind == "vrf").then(|| Vrf {
        index: *m.ifi_index() as u32,
        name,
        table: table.unwrap_or(0),
    }))
}

impl Handle {
    /// Every VRF of the netns.
    pub fn vrfs(&self) -> anyhow::Result<Vec<Vrf>> {
        let req = || {
            Ok(IfinfomsgBuilder::default()
                .ifi_family(RtAddrFamily::Unspecified)
                .build()?)
        };
        self.dump("dump links (VRFs)", Rtm::Getlink, req, parse_vrf)
    }

    /// The VRF called `name`, `None` when there is none or it is another kind of link.
    pub fn vrf_by_name(&self, name: &str) -> anyhow::Result<Option<Vrf>> {
        Ok(self.vrfs()?.into_iter().find(|v| v.name == name))
    }
}

#[cfg(test)]
#[cfg(target_endian = "little")]
mod tests {
    use super::*;
    use crate::netlink::attr::to_bytes;
    use crate::netlink::kinds::newlink_payload;
    use crate::netlink::link::master_msg;
    use crate::netlink::{LinkKind, LinkSpec, newlink_message};

    /// `ip link add vrf-blue type vrf table 1000` + up, as the vrf applet creates it.
    #[test]
    fn create_message_bytes() {
        let mut spec = LinkSpec::new("vrf-blue", LinkKind::Vrf { table: 1000 });
        spec.up = true;
        let got = newlink_message(&spec, 7).unwrap();
        #[rustfmt::skip]
        let want: Vec<u8> = [
            &[72, 0, 0, 0, 16, 0, 0x05, 0x06, 7, 0, 0, 0, 0, 0, 0, 0][..], // RTM_NEWLINK, REQUEST|ACK|EXCL|CREATE
            &[0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0], // ifinfomsg: index 0, flags UP, change UP
            &[13, 0, 3, 0], b"vrf-blue\0", &[0, 0, 0],          // IFLA_IFNAME
            &[24, 0, 18, 0],                                    // IFLA_LINKINFO (4 + 8 + 12)
            &[8, 0, 1, 0, b'v', b'r', b'f', 0],                 //   IFLA_INFO_KIND "vrf"
            &[12, 0, 2, 0],                                     //   IFLA_INFO_DATA
            &[8, 0, 1, 0, 0xe8, 0x03, 0, 0],                    //     IFLA_VRF_TABLE 1000
        ]
        .concat();
        assert_eq!(got, want);
    }

    /// `ip link set eth0 master vrf-blue` and `nomaster`: IFLA_MASTER u32.
    #[test]
    fn enslave_and_release_bytes() {
        #[rustfmt::skip]
        let head = [0u8, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]; // ifinfomsg for ifindex 3
        let mut want = head.to_vec();
        want.extend([8, 0, 10, 0, 9, 0, 0, 0]); // IFLA_MASTER 9
        assert_eq!(to_bytes(&master_msg(3, 9).unwrap()).unwrap(), want);
        want.truncate(16);
        want.extend([8, 0, 10, 0, 0, 0, 0, 0]); // IFLA_MASTER 0 = no master
        assert_eq!(to_bytes(&master_msg(3, 0).unwrap()).unwrap(), want);
    }

    /// A dumped VRF (the same layout as the creation payload) is read back with its table;
    /// other kinds are not VRFs.
    #[test]
    fn dumped_vrf_is_parsed() {
        let spec = LinkSpec::new("vrf-red", LinkKind::Vrf { table: 42 });
        let bytes = to_bytes(&newlink_payload(&spec).unwrap()).unwrap();
        let vrf = parse_vrf(&bytes).unwrap().unwrap();
        assert_eq!((vrf.name.as_str(), vrf.table), ("vrf-red", 42));
        let bridge = LinkSpec::new("br0", LinkKind::Ifb);
        let bytes = to_bytes(&newlink_payload(&bridge).unwrap()).unwrap();
        assert_eq!(parse_vrf(&bytes).unwrap(), None);
    }
}
