//! Building each plugin's stdin from the list (SPEC.md "Deriving execution configuration",
//! FEATURES.md 1.6): `name` and `cniVersion` from the list, `runtimeConfig` from the plugin's
//! `capabilities` and the runtime's capability args, `prevResult`, and for GC the valid
//! attachments. Mirrors libcni's `buildOneConfig`, `injectRuntimeConfig` and `InjectConf`:
//! injected keys overwrite existing ones, everything else passes through unchanged, and
//! `capabilities` itself is left in place as libcni does.

use super::config::{NetworkConfigList, PluginConf};
use crate::types::{Attachment, CniResult};
use serde_json::{Map, Value};

/// Sets top-level `key` to `value` (`InjectConf`): an empty key or a `null` value is refused.
pub fn inject(conf: &mut Map<String, Value>, key: &str, value: Value) -> anyhow::Result<()> {
    if key.is_empty() {
        anyhow::bail!("keys cannot be empty");
    }
    if value.is_null() {
        anyhow::bail!("key '{key}' value must not be nil");
    }
    conf.insert(key.to_string(), value);
    Ok(())
}

/// The plugin's `runtimeConfig`: the capability args whose key the plugin enables.
pub fn runtime_config(
    plugin: &PluginConf,
    capability_args: &Map<String, Value>,
) -> Map<String, Value> {
    plugin
        .capabilities()
        .filter_map(|cap| Some((cap.to_string(), capability_args.get(cap)?.clone())))
        .collect()
}

/// The plugin object with the list's `name` and `cniVersion` injected.
fn with_list_keys(
    list: &NetworkConfigList,
    plugin: &PluginConf,
) -> anyhow::Result<Map<String, Value>> {
    let mut conf = plugin.raw().clone();
    inject(&mut conf, "name", list.name.clone().into())?;
    inject(&mut conf, "cniVersion", list.cni_version.clone().into())?;
    Ok(conf)
}

/// stdin for ADD, DEL and CHECK: list keys, `prevResult` when given, and `runtimeConfig`
/// when the intersection of capabilities and capability args is not empty.
pub fn attachment_config(
    list: &NetworkConfigList,
    plugin: &PluginConf,
    prev_result: Option<&Value>,
    capability_args: &Map<String, Value>,
) -> anyhow::Result<Vec<u8>> {
    let mut conf = with_list_keys(list, plugin)?;
    if let Some(prev) = prev_result {
        inject(&mut conf, "prevResult", prev.clone())?;
    }
    let rc = runtime_config(plugin, capability_args);
    if !rc.is_empty() {
        inject(&mut conf, "runtimeConfig", Value::Object(rc))?;
    }
    Ok(serde_json::to_vec(&conf)?)
}

/// stdin for GC: list keys, and when `valid` is given, the valid attachments under both
/// `cni.dev/valid-attachments` and the spec's earlier misnomer `cni.dev/attachments`
/// (cni#1101), as libcni writes them.
pub fn gc_config(
    list: &NetworkConfigList,
    plugin: &PluginConf,
    valid: Option<&[Attachment]>,
) -> anyhow::Result<Vec<u8>> {
    let mut conf = with_list_keys(list, plugin)?;
    if let Some(valid) = valid {
        let v = serde_json::to_value(valid)?;
        inject(&mut conf, "cni.dev/valid-attachments", v.clone())?;
        inject(&mut conf, "cni.dev/attachments", v)?;
    }
    Ok(serde_json::to_vec(&conf)?)
}

/// stdin for STATUS: the plugin object with the list keys.
pub fn status_config(list: &NetworkConfigList, plugin: &PluginConf) -> anyhow::Result<Vec<u8>> {
    Ok(serde_json::to_vec(&with_list_keys(list, plugin)?)?)
}

/// The `cniVersion` a result JSON declares, or `default` when it names none.
fn declared_version<'a>(result: &'a Value, default: &'a str) -> &'a str {
    result
        .get("cniVersion")
        .and_then(Value::as_str)
        .unwrap_or(default)
}

/// `""` means 0.1.0.
fn effective(v: &str) -> &str {
    if v.is_empty() { "0.1.0" } else { v }
}

/// A result JSON in `version` (`GetAsVersion`). A result already in that version passes through
/// as it is (its `cniVersion` filled in when missing); only a different version goes through
/// the result codec.
pub fn result_in_version(result: &Value, version: &str) -> anyhow::Result<Value> {
    let own = declared_version(result, version);
    if effective(own) == effective(version) {
        let mut same = result.clone();
        if let Value::Object(m) = &mut same {
            m.entry("cniVersion")
                .or_insert_with(|| effective(version).into());
        }
        return Ok(same);
    }
    let canonical = CniResult::decode(result, version)?;
    Ok(serde_json::to_value(canonical.encode(effective(version))?)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn list(version: &str, plugins: Value) -> NetworkConfigList {
        let bytes =
            serde_json::to_vec(&json!({"name":"net1","cniVersion":version,"plugins":plugins}))
                .unwrap();
        NetworkConfigList::from_bytes(&bytes).unwrap()
    }

    fn parsed(bytes: Vec<u8>) -> Value {
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn runtime_config_is_the_intersection_of_true_capabilities_and_args() {
        let l = list(
            "1.0.0",
            json!([{"type":"portmap","capabilities":{"portMappings":true,"bandwidth":false,"ips":true}}]),
        );
        let args = json!({"portMappings":[{"hostPort":8080,"containerPort":80}],"bandwidth":{"rate":1},"mac":"x"});
        let rc = runtime_config(&l.plugins[0], args.as_object().unwrap());
        assert_eq!(
            Value::Object(rc),
            json!({"portMappings":[{"hostPort":8080,"containerPort":80}]})
        );
    }

    #[test]
    fn attachment_config_injects_name_version_prev_and_runtime_config() {
        let l = list(
            "1.1.0",
            json!([{"type":"bridge","name":"other","cniVersion":"0.3.1","capabilities":{"mac":true},"unknown":{"k":1}}]),
        );
        let prev = json!({"cniVersion":"1.1.0","ips":[{"address":"10.0.0.2/24"}]});
        let caps = json!({"mac":"c2:11:22:33:44:55","ips":["10.0.0.9/24"]});
        let c = parsed(
            attachment_config(&l, &l.plugins[0], Some(&prev), caps.as_object().unwrap()).unwrap(),
        );
        assert_eq!(
            c,
            json!({"type":"bridge","name":"net1","cniVersion":"1.1.0","capabilities":{"mac":true},
                   "unknown":{"k":1},"prevResult":prev,"runtimeConfig":{"mac":"c2:11:22:33:44:55"}})
        );
    }

    #[test]
    fn empty_intersection_leaves_runtime_config_out_and_static_one_untouched() {
        let l = list(
            "1.0.0",
            json!([{"type":"a"},{"type":"b","runtimeConfig":{"static":1},"capabilities":{"mac":true}}]),
        );
        let caps = json!({"portMappings":[]});
        let a =
            parsed(attachment_config(&l, &l.plugins[0], None, caps.as_object().unwrap()).unwrap());
        assert_eq!(a, json!({"type":"a","name":"net1","cniVersion":"1.0.0"}));
        let b =
            parsed(attachment_config(&l, &l.plugins[1], None, caps.as_object().unwrap()).unwrap());
        assert_eq!(b["runtimeConfig"], json!({"static":1}));
        let with_mac = json!({"mac":"m"});
        let b = parsed(
            attachment_config(&l, &l.plugins[1], None, with_mac.as_object().unwrap()).unwrap(),
        );
        assert_eq!(
            b["runtimeConfig"],
            json!({"mac":"m"}),
            "an injected runtimeConfig replaces the static one"
        );
    }

    #[test]
    fn gc_config_writes_both_attachment_keys_only_when_given() {
        let l = list("1.1.0", json!([{"type":"host-local"}]));
        let valid = [Attachment {
            container_id: "c1".into(),
            ifname: "eth0".into(),
        }];
        let c = parsed(gc_config(&l, &l.plugins[0], Some(&valid)).unwrap());
        let want = json!([{"containerID":"c1","ifname":"eth0"}]);
        assert_eq!(c["cni.dev/valid-attachments"], want);
        assert_eq!(c["cni.dev/attachments"], want);
        let c = parsed(gc_config(&l, &l.plugins[0], None).unwrap());
        assert_eq!(
            c,
            json!({"type":"host-local","name":"net1","cniVersion":"1.1.0"})
        );
        let c = parsed(gc_config(&l, &l.plugins[0], Some(&[])).unwrap());
        assert_eq!(c["cni.dev/valid-attachments"], json!([]));
        let s = parsed(status_config(&l, &l.plugins[0]).unwrap());
        assert_eq!(
            s,
            json!({"type":"host-local","name":"net1","cniVersion":"1.1.0"})
        );
    }

    #[test]
    fn inject_refuses_empty_keys_and_null_values() {
        let mut m = Map::new();
        assert!(inject(&mut m, "", json!(1)).is_err());
        assert_eq!(
            inject(&mut m, "k", Value::Null).unwrap_err().to_string(),
            "key 'k' value must not be nil"
        );
        inject(&mut m, "k", json!(2)).unwrap();
        assert_eq!(m["k"], 2);
    }

    #[test]
    fn same_version_results_pass_through_unchanged() {
        let r = json!({"cniVersion":"1.0.0","interfaces":[{"name":"eth0","x-extra":true}]});
        assert_eq!(result_in_version(&r, "1.0.0").unwrap(), r);
        let bare = json!({"ips":[]});
        assert_eq!(
            result_in_version(&bare, "1.1.0").unwrap(),
            json!({"cniVersion":"1.1.0","ips":[]})
        );
        assert_eq!(
            result_in_version(&json!({"cniVersion":"0.1.0"}), "").unwrap()["cniVersion"],
            "0.1.0"
        );
    }
}
