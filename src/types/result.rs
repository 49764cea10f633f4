//! The canonical Result (the 1.1.0 model) and its codecs for every spec version family:
//! 0.1.0/0.2.0 (`ip4`/`ip6`), 0.3.x/0.4.0 (ips with `version`), 1.0.0/1.1.0.
//! Conversions follow `pkg/types` (FEATURES.md 1.9, 1.10): decoding converts up to this model
//! as `convertFrom02x`/`convertFrom04x` do, encoding converts down as `convertTo04x` and
//! `convertTo02x` do, and the output bytes match the reference's `PrintResult`.
//!
//! Deliberate differences, all on inconsistent input: an ips entry's `version` is recomputed
//! from its address (the reference trusts the field when converting down to 0.2.0); a legacy
//! route's 1.1 fields are dropped even when re-encoding as the same version; an IP-less result
//! cannot be encoded as 0.1.0/0.2.0 even when it was decoded from that version.

mod decode;
#[cfg(test)]
mod tests;
mod wire;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::net::IpAddr;

use super::version::{self, Version};
use anyhow::bail;

/// A success result in the 1.1.0 model; every older layout converts to and from it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CniResult {
    /// Interfaces created or touched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    /// Addresses assigned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig>,
    /// Routes installed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// DNS settings.
    #[serde(default, skip_serializing_if = "Dns::is_empty")]
    pub dns: Dns,
}

/// One interface in a result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    /// Interface name.
    pub name: String,
    /// Hardware address, `aa:bb:cc:dd:ee:ff`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    /// MTU (1.1.0); omitted when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub mtu: u32,
    /// The netns path for interfaces inside the container; empty for host interfaces.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
    /// vhost-user socket path (1.1.0).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub socket_path: String,
    /// PCI address (1.1.0).
    #[serde(default, rename = "pciID", skip_serializing_if = "String::is_empty")]
    pub pci_id: String,
}

/// One address in a result. `address` keeps host bits (`10.1.0.5/16`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
    /// Address with prefix length.
    pub address: IpNet,
    /// Default gateway for this address, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
}

/// One route. The 1.1.0 fields are omitted when unset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    /// Destination.
    pub dst: IpNet,
    /// Next hop; none means "the gateway of the matching address" or on-link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    /// Route MTU (1.1.0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub mtu: u32,
    /// TCP advertised MSS (1.1.0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub advmss: u32,
    /// Metric (1.1.0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority: u32,
    /// Routing table (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    /// Scope: 0 universe, 253 link, 254 host (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u8>,
}

/// DNS settings, as in both the config and the result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    /// Name servers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    /// Local domain.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain: String,
    /// Search domains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// resolv.conf options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    /// True when no field is set.
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_empty()
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

impl Route {
    /// A route with only a destination and an optional next hop.
    pub fn new(dst: IpNet, gw: Option<IpAddr>) -> Route {
        Route {
            dst,
            gw,
            mtu: 0,
            advmss: 0,
            priority: 0,
            table: None,
            scope: None,
        }
    }
}

/// A result in one version's wire layout, ready to serialize with the key order the reference
/// prints (give it to `skel::write_json` with `pretty` for the exact `PrintResult` bytes).
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct Encoded(wire::Wire);

/// The version the canonical model is converted from, for error messages.
const MODEL_VERSION: &str = version::CURRENT;

impl CniResult {
    /// Decodes a result written in any spec version. The version is the JSON's own
    /// `cniVersion`, or `default_version` when it has none or an empty one (`""` means 0.1.0).
    /// `null` reads as an empty result.
    pub fn decode(json: &Value, default_version: &str) -> anyhow::Result<CniResult> {
        let empty = Map::new();
        let m = match json {
            Value::Null => &empty,
            Value::Object(m) => m,
            _ => bail!("result: expected a JSON object"),
        };
        let own = match m.get("cniVersion") {
            None | Some(Value::Null) => "",
            Some(Value::String(s)) => s.as_str(),
            Some(_) => bail!("cniVersion: expected a string"),
        };
        let chosen = [own, default_version]
            .into_iter()
            .find(|v| !v.is_empty())
            .unwrap_or("0.1.0");
        if !version::is_known(chosen) {
            bail!("unsupported CNI result version {chosen:?}");
        }
        decode::decode(m, Version::parse(chosen)?.family())
    }

    /// Encodes this result in the layout of `version` (`""` means 0.1.0), with `cniVersion`
    /// set to it. Fails for an unknown version, or for 0.1.0/0.2.0 when there is no address.
    pub fn encode(&self, version: &str) -> anyhow::Result<Encoded> {
        let target = if version.is_empty() { "0.1.0" } else { version };
        if !version::is_known(target) {
            bail!("no converter for CNI result version {MODEL_VERSION} to {target}");
        }
        let wire = match Version::parse(target)?.family() {
            version::Family::V02 => wire::legacy(self, target)?,
            version::Family::V04 => wire::v04(self, target),
            version::Family::V1 => wire::v1(self, target),
        };
        Ok(Encoded(wire))
    }

    /// [`encode`](Self::encode) as a `Value`, e.g. to embed as a `prevResult`. A `Value` map
    /// sorts its keys, so print [`Encoded`] instead where byte order matters.
    pub fn to_value(&self, version: &str) -> anyhow::Result<Value> {
        Ok(serde_json::to_value(self.encode(version)?)?)
    }
}
