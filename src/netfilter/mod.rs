//! Netfilter for the plugins that program it (bridge and ptp `ipMasq`; later portmap and
//! firewall): two backends, iptables (`iptables-restore` text) and nftables (in-process
//! netlink), plus the reference's chain naming.

pub mod iptables;
pub mod naming;
pub mod nftables;

#[cfg(test)]
pub(crate) mod oracle;

use ipnet::IpNet;

/// IPv4 or IPv6: picks `iptables` or `ip6tables`, and the multicast range left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum IpFamily {
    /// IPv4
    V4,
    /// IPv6
    V6,
}

impl IpFamily {
    /// The family of an address/prefix.
    pub fn of(net: &IpNet) -> IpFamily {
        match net {
            IpNet::V4(_) => IpFamily::V4,
            IpNet::V6(_) => IpFamily::V6,
        }
    }

    /// The families present in `nets`, IPv4 first, each once.
    pub fn present(nets: &[IpNet]) -> Vec<IpFamily> {
        let mut f: Vec<IpFamily> = nets.iter().map(IpFamily::of).collect();
        f.sort();
        f.dedup();
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_present_once_in_order() {
        let nets: Vec<IpNet> = ["fd00::2/64", "10.0.0.2/24", "10.1.0.2/24"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(IpFamily::present(&nets), [IpFamily::V4, IpFamily::V6]);
        assert!(IpFamily::present(&[]).is_empty());
    }
}
