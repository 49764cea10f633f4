//! A fake host on a "LAN", for the plugins that stack on a host NIC (macvlan, ipvlan, vlan):
//! the host netns holds `lan0`, one end of a veth whose other end (`eth0`) sits in a LAN netns
//! holding `<prefix>.1/24` (a router, a NAS, any other machine on the segment). The host may
//! also get `<prefix>.254/24` and a default route through `<prefix>.1`, which is what makes
//! `lan0` the default master.

use super::TestNs;

/// A host netns with `lan0` and the LAN netns behind it.
#[derive(Debug)]
pub struct Lan {
    /// Where plugins run (holds `lan0`).
    pub host: TestNs,
    /// The other machine on the LAN (holds `eth0` with `<prefix>.1/24`).
    pub lan: TestNs,
    /// The first three octets of the LAN's /24, e.g. `192.168.61`.
    pub prefix: String,
}

impl Lan {
    /// A fresh host and LAN, `lan0` up without an address.
    pub fn new(label: &str, prefix: &str) -> Lan {
        let host = TestNs::new(&format!("{label}-host"));
        let lan = TestNs::new(&format!("{label}-lan"));
        let pid = lan.pid().to_string();
        host.ip(&[
            "link", "add", "lan0", "type", "veth", "peer", "name", "eth0", "netns", &pid,
        ]);
        host.ip(&["link", "set", "lan0", "up"]);
        lan.ip(&["addr", "add", &format!("{prefix}.1/24"), "dev", "eth0"]);
        lan.ip(&["link", "set", "eth0", "up"]);
        lan.ip(&["link", "set", "lo", "up"]);
        Lan {
            host,
            lan,
            prefix: prefix.to_string(),
        }
    }

    /// Gives the host `<prefix>.254/24` on `lan0` and a default route via `<prefix>.1`.
    pub fn with_default_route(self) -> Lan {
        let p = &self.prefix;
        self.host
            .ip(&["addr", "add", &format!("{p}.254/24"), "dev", "lan0"]);
        self.host
            .ip(&["route", "add", "default", "via", &format!("{p}.1")]);
        self
    }

    /// `<prefix>.<last>`.
    pub fn addr(&self, last: u8) -> String {
        format!("{}.{last}", self.prefix)
    }

    /// `<prefix>.0/24`.
    pub fn subnet(&self) -> String {
        format!("{}.0/24", self.prefix)
    }

    /// The ifindex of `name` in the host netns.
    pub fn host_ifindex(&self, name: &str) -> u64 {
        self.host
            .link(name)
            .unwrap_or_else(|| panic!("no {name} in the host"))["ifindex"]
            .as_u64()
            .expect("ifindex")
    }
}

/// `linkinfo.info_kind` and `linkinfo.info_data` of `dev` in `ns` (`ip -d -j link`).
pub fn link_info(ns: &TestNs, dev: &str) -> (String, serde_json::Value) {
    let l = ns
        .link(dev)
        .unwrap_or_else(|| panic!("no {dev} in {}", ns.label()));
    let kind = l["linkinfo"]["info_kind"]
        .as_str()
        .unwrap_or("")
        .to_string();
    (kind, l["linkinfo"]["info_data"].clone())
}
