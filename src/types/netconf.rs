//! The network configuration every plugin receives on stdin (SPEC.md "Plugin configuration
//! objects"). Applets embed [`NetConf`] with `#[serde(flatten)]` and add their own keys;
//! unknown keys are ignored, as the reference does.

use super::result::{CniResult, Dns};
use crate::error::{CniError, bad_config, code};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The keys common to every plugin configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    /// Spec version of this configuration; empty means 0.1.0.
    #[serde(default, deserialize_with = "null_is_default")]
    pub cni_version: String,
    /// Every version the configuration supports (1.1.0).
    #[serde(
        default,
        deserialize_with = "null_is_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub cni_versions: Vec<String>,
    /// Network name.
    #[serde(default, deserialize_with = "null_is_default")]
    pub name: String,
    /// Plugin type (the applet name).
    #[serde(default, deserialize_with = "null_is_default", rename = "type")]
    pub plugin_type: String,
    /// Capabilities the plugin wants filled into `runtimeConfig`.
    #[serde(
        default,
        deserialize_with = "null_is_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub capabilities: BTreeMap<String, bool>,
    /// IPAM section; its `type` names the delegate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam: Option<IpamConf>,
    /// DNS settings to report.
    #[serde(
        default,
        deserialize_with = "null_is_default",
        skip_serializing_if = "Dns::is_empty"
    )]
    pub dns: Dns,
    /// Structured args (`args.cni.ips`, `args.cni.mac`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Value>,
    /// The previous plugin's result, in this configuration's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_result: Option<Value>,
    /// Values the runtime filled in from `capabilities`.
    #[serde(
        default,
        deserialize_with = "null_is_default",
        skip_serializing_if = "Map::is_empty"
    )]
    pub runtime_config: Map<String, Value>,
    /// GC (1.1.0): the attachments still in use; everything else may be cleaned up.
    #[serde(
        default,
        rename = "cni.dev/valid-attachments",
        skip_serializing_if = "Option::is_none"
    )]
    pub valid_attachments: Option<Vec<Attachment>>,
}

/// `null` decodes to the type's default, as Go decodes `null` into the zero value.
fn null_is_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// One attachment named in `cni.dev/valid-attachments`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Attachment {
    /// `CNI_CONTAINERID` of the attachment.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// `CNI_IFNAME` of the attachment.
    pub ifname: String,
}

/// The `ipam` section: a `type` plus keys that belong to that plugin.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IpamConf {
    /// The IPAM plugin to delegate to.
    #[serde(default, rename = "type")]
    pub plugin_type: String,
    /// Everything else, for the IPAM plugin to read.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

impl NetConf {
    /// Decodes `prevResult` (in this configuration's version when it names none).
    /// `None` when the key is absent or `null`.
    pub fn prev_result(&self) -> anyhow::Result<Option<CniResult>> {
        match &self.prev_result {
            None | Some(Value::Null) => Ok(None),
            Some(v) => CniResult::decode(v, &self.cni_version)
                .map(Some)
                .map_err(|e| bad_config(format!("could not parse prevResult: {e:#}"))),
        }
    }

    /// A `runtimeConfig` entry decoded into `T`; `None` when absent.
    pub fn runtime<T: serde::de::DeserializeOwned>(&self, key: &str) -> anyhow::Result<Option<T>> {
        match self.runtime_config.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => serde_json::from_value(v.clone())
                .map(Some)
                .map_err(|e| bad_config(format!("runtimeConfig.{key}: {e}"))),
        }
    }

    /// `args.cni.<key>` decoded into `T`; `None` when absent.
    pub fn cni_arg<T: serde::de::DeserializeOwned>(&self, key: &str) -> anyhow::Result<Option<T>> {
        let v = self
            .args
            .as_ref()
            .and_then(|a| a.get("cni"))
            .and_then(|c| c.get(key));
        match v {
            None | Some(Value::Null) => Ok(None),
            Some(v) => serde_json::from_value(v.clone())
                .map(Some)
                .map_err(|e| bad_config(format!("args.cni.{key}: {e}"))),
        }
    }
}

/// Checks a network name against the spec's rule `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`. The name
/// becomes a path component (host-local's store, the result cache), so this also keeps it
/// from leaving its directory.
pub fn validate_network_name(name: &str) -> Result<(), CniError> {
    if name.is_empty() {
        return Err(CniError::new(code::INVALID_CONFIG, "missing network name"));
    }
    if !is_valid_identifier(name) {
        return Err(CniError::new(
            code::INVALID_CONFIG,
            format!("invalid network name {name:?}: must match ^[a-zA-Z0-9][a-zA-Z0-9_.\\-]*$"),
        ));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(CniError::new(
            code::INVALID_CONFIG,
            format!(
                "invalid network name: {} bytes, longer than a file name may be ({MAX_NAME_LEN})",
                name.len()
            ),
        ));
    }
    Ok(())
}

/// The longest network name or container ID: both become file names (host-local's store, the
/// result cache), and a file name has at most 255 bytes (NAME_MAX). The spec sets no bound.
pub const MAX_NAME_LEN: usize = 255;

/// True for `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`, the spec's rule for network names and container IDs.
pub fn is_valid_identifier(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphanumeric())
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        for ok in ["a", "mynet", "net-1.2_x", "0abc"] {
            assert!(is_valid_identifier(ok), "{ok}");
        }
        for bad in ["", "-a", ".a", "_a", "a/b", "../x", "a b", "a:b"] {
            assert!(!is_valid_identifier(bad), "{bad}");
        }
        assert_eq!(validate_network_name("").unwrap_err().code, 7);
        assert_eq!(validate_network_name("../etc").unwrap_err().code, 7);
    }

    #[test]
    fn unknown_keys_are_ignored_and_common_keys_read() {
        let c: NetConf = serde_json::from_str(
            r#"{"cniVersion":"1.0.0","name":"n","type":"bridge","bridge":"cni0",
                "capabilities":{"portMappings":true},"ipam":{"type":"host-local","subnet":"10.1.0.0/16"},
                "dns":{"nameservers":["10.1.0.1"]},"runtimeConfig":{"mac":"c2:11:22:33:44:55"},
                "args":{"cni":{"ips":["10.1.0.9"]}}}"#,
        )
        .unwrap();
        assert_eq!(c.plugin_type, "bridge");
        assert_eq!(c.ipam.as_ref().unwrap().plugin_type, "host-local");
        assert_eq!(c.ipam.as_ref().unwrap().rest["subnet"], "10.1.0.0/16");
        assert_eq!(
            c.runtime::<String>("mac").unwrap().unwrap(),
            "c2:11:22:33:44:55"
        );
        assert_eq!(
            c.cni_arg::<Vec<String>>("ips").unwrap().unwrap(),
            vec!["10.1.0.9"]
        );
        assert!(c.capabilities["portMappings"]);
        assert_eq!(c.dns.nameservers, vec!["10.1.0.1"]);
    }

    #[test]
    fn typed_lookups_name_the_field() {
        let c: NetConf = serde_json::from_str(r#"{"runtimeConfig":{"mac":5}}"#).unwrap();
        let e = c.runtime::<String>("mac").unwrap_err();
        assert_eq!(crate::error::code_of(&e), 7);
        assert!(format!("{e}").contains("runtimeConfig.mac"));
    }

    #[test]
    fn null_is_the_default_for_every_common_key() {
        // Go decodes null into the zero value; so must we, on every verb.
        let c: NetConf = serde_json::from_str(
            r#"{"cniVersion":null,"cniVersions":null,"name":null,"type":null,
                "capabilities":null,"ipam":null,"dns":null,"args":null,"prevResult":null,
                "runtimeConfig":null,"cni.dev/valid-attachments":null}"#,
        )
        .unwrap();
        assert_eq!((c.cni_version.as_str(), c.name.as_str()), ("", ""));
        assert!(c.cni_versions.is_empty() && c.capabilities.is_empty());
        assert!(c.dns.is_empty() && c.runtime_config.is_empty());
        assert!(c.ipam.is_none() && c.valid_attachments.is_none());
        // Applets embed NetConf with flatten, which decodes through another path.
        #[derive(Deserialize)]
        struct Applet {
            #[serde(flatten)]
            net: NetConf,
        }
        let a: Applet = serde_json::from_str(
            r#"{"name":"n","dns":null,"runtimeConfig":null,"capabilities":null}"#,
        )
        .unwrap();
        assert_eq!(a.net.name, "n");
        assert!(a.net.dns.is_empty() && a.net.runtime_config.is_empty());
    }
}
