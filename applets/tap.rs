//! `tap`: a TAP device as the container's interface, for a VMM or a userspace network stack
//! inside the pod to attach to. Mirrors the reference tap plugin (FEATURES.md 6.8): the keys
//! `mac` (also `runtimeConfig.mac` and `CNI_ARGS` `MAC`), `mtu`, `multiQueue`, `owner`,
//! `group`, `selinuxContext`, `bridge` (a bridge inside the container to enslave the tap to),
//! optional IPAM with `arp_notify`; created under a temporary name inside the container netns
//! and renamed; result `[tap]`.
//!
//! Differences: the device is made in process through `/dev/net/tun` ioctls
//! ([`crate::tuntap`]), never by running `ip`, with one flag set whatever the keys (`tap
//! vnet_hdr`, no packet information; the reference's flags differ between its `ip` and netlink
//! paths, and a consumer sets its own when it attaches). `selinuxContext` on a host without
//! SELinux is a configuration error (code 7) rather than a silent failure; with SELinux the
//! device is created by a child switched to that context. IPAM is released first on DEL, and
//! DEL deletes only a tun device, CHECK also checks the device is a tap with the result's MAC.

use crate::doctor::{Need, Probe};
use crate::error::{ErrorList, bad_config};
use crate::exec::delegate;
use crate::ipam::configure::configure_iface;
use crate::keys::{Key, key};
use crate::netlink::{Handle, Link, parse_mac};
use crate::netns::Netns;
use crate::podnet::{self, check};
use crate::rollback::Rollback;
use crate::skel::{CmdArgs, Command, Plugin};
use crate::sysctl;
use crate::tuntap::{self, TapSpec};
use crate::types::{CniResult, Interface, NetConf};
use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// The applet.
pub struct Tap;

/// The tap plugin's configuration.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(rename_all = "camelCase")]
struct Config {
    #[serde(flatten)]
    net: NetConf,
    #[serde(default)]
    multi_queue: bool,
    #[serde(default)]
    mtu: u32,
    #[serde(default)]
    mac: String,
    #[serde(default)]
    owner: Option<u32>,
    #[serde(default)]
    group: Option<u32>,
    #[serde(default)]
    selinux_context: String,
    #[serde(default)]
    bridge: String,
}

/// Its configuration keys, one line each, for `--help`; a test holds this table equal to what
/// the parser reads ([`crate::keys`]).
#[rustfmt::skip]
const KEYS: &[Key] = &[
    key("mac", r#""c2:11:22:33:44:55""#, "MAC of the tap (CNI_ARGS MAC and runtimeConfig.mac win)"),
    key("mtu", "1500", "MTU of the tap (default: the kernel's)"),
    key("multiQueue", "true", "make a multi-queue tap"),
    key("owner", "1000", "uid that may use the tap"),
    key("group", "1000", "gid that may use the tap"),
    key("selinuxContext", r#""system_u:system_r:container_t:s0""#, "SELinux context to create the tap in (needs SELinux)"),
    key("bridge", r#""br0""#, "a bridge in the container to enslave the tap to"),
];

/// What the node must offer, for `cni-multi doctor`.
const NEEDS: &[Need] = &[Need::always(Probe::Tun)];

impl Plugin for Tap {
    fn keys(&self) -> Option<&'static [Key]> {
        Some(KEYS)
    }

    fn needs(&self) -> &'static [Need] {
        NEEDS
    }

    fn add(&self, args: &CmdArgs) -> Result<CniResult> {
        let conf = Config::load(args)?;
        let mac = conf.mac(args)?;
        let ns = args.open_netns()?;
        let cont = Handle::in_netns(&ns)?;
        let mut rb = Rollback::new();
        let cont = &cont;
        let tap = create_tap(cont, &ns, &conf, mac, &args.ifname)?;
        let index = tap.index;
        rb.push(format!("delete tap {}", args.ifname), move || {
            cont.delete_link(index)
        });
        if !conf.bridge.is_empty() {
            attach_to_bridge(cont, &tap, &conf.bridge)?;
        }
        let mut result = CniResult {
            interfaces: vec![Interface {
                name: args.ifname.clone(),
                mac: tap.mac_string(),
                sandbox: args.netns.clone(),
                ..Default::default()
            }],
            ..Default::default()
        };
        match podnet::ipam_type(&conf.net) {
            Some(t) => {
                let ipam = podnet::ipam_add(args, t, &mut rb)?;
                result.ips = ipam.ips;
                result.routes = ipam.routes;
                result.dns = ipam.dns;
                result.ips.iter_mut().for_each(|ip| ip.interface = Some(0));
                let key = format!("net/ipv4/conf/{}/arp_notify", args.ifname);
                let _ = sysctl::write_in(&ns, &key, "1");
                configure_iface(cont, &ns, &args.ifname, &result)?;
            }
            None => cont
                .set_up(tap.index)
                .with_context(|| format!("failed to set {} up", args.ifname))?,
        }
        podnet::override_dns(&mut result, &conf.net.dns);
        rb.commit();
        Ok(result)
    }

    fn del(&self, args: &CmdArgs) -> Result<()> {
        let conf = Config::load_for_del(args)?;
        let mut errors = ErrorList::new();
        errors.note(podnet::release_ipam(args, &conf.net));
        errors.note(delete_tap(args));
        errors.finish()
    }

    fn check(&self, args: &CmdArgs) -> Result<()> {
        let conf = Config::load(args)?;
        let ns = args.open_netns()?;
        if let Some(t) = podnet::ipam_type(&conf.net) {
            delegate(Command::Check, t, args)?;
        }
        let prev = check::prev_result(&conf.net, "tap")?;
        let iface = check::container_interface(&prev, args)?;
        let cont = Handle::in_netns(&ns)?;
        let Some(link) = cont.link_by_name(&iface.name)? else {
            bail!("Container interface {} not found", iface.name);
        };
        if link.kind != "tun" {
            bail!(
                "Container interface {} is not a tap (it is {:?})",
                iface.name,
                link.kind
            );
        }
        check::check_mac(&link, iface)?;
        check::validate_interface_ips(&cont, &args.ifname, &prev.ips)?;
        check::validate_routes(&cont, &prev.routes)
    }

    fn gc(&self, args: &CmdArgs) -> Result<()> {
        let conf = Config::load_for_del(args)?;
        match podnet::ipam_type(&conf.net) {
            Some(t) => delegate(Command::Gc, t, args),
            None => Ok(()),
        }
    }

    fn status(&self, args: &CmdArgs) -> Result<()> {
        podnet::status(args, &Config::load_for_del(args)?.net)
    }
}

impl Config {
    /// Decodes stdin for ADD and CHECK: `selinuxContext` needs SELinux.
    fn load(args: &CmdArgs) -> Result<Config> {
        let c = Config::load_for_del(args)?;
        if !c.selinux_context.is_empty() && !tuntap::selinux_enabled() {
            return Err(bad_config(format!(
                "selinuxContext {:?} is set but SELinux is not enabled on this host",
                c.selinux_context
            )));
        }
        Ok(c)
    }

    /// Decodes stdin; DEL, GC and STATUS need nothing else to hold. `owner`, `group` and
    /// `mtu` are checked first, by name (serde's flattened errors do not name the key).
    fn load_for_del(args: &CmdArgs) -> Result<Config> {
        let raw: serde_json::Map<String, serde_json::Value> = args.config()?;
        for (key, what) in [("owner", "a uid"), ("group", "a gid"), ("mtu", "an MTU")] {
            let v = raw.get(key).filter(|v| !v.is_null());
            if v.is_some_and(|v| v.as_u64().is_none_or(|n| n > u64::from(u32::MAX))) {
                return Err(bad_config(format!(
                    "tap: {key:?} must be a number ({what}), not {}",
                    v.expect("checked")
                )));
            }
        }
        args.config()
    }

    /// The MAC asked for: `runtimeConfig.mac`, else the `MAC` of `CNI_ARGS` (or
    /// `args.cni.mac`), else `mac`.
    fn mac(&self, args: &CmdArgs) -> Result<Option<[u8; 6]>> {
        if let Some(m) = podnet::container_mac(&self.net, args)? {
            return Ok(Some(m));
        }
        match self.mac.as_str() {
            "" => Ok(None),
            m => parse_mac(m)
                .map(Some)
                .map_err(|e| bad_config(format!("mac: {e:#}"))),
        }
    }

    fn spec(&self, name: String) -> TapSpec {
        TapSpec {
            name,
            multi_queue: self.multi_queue,
            vnet_hdr: true,
            packet_info: false,
            owner: self.owner,
            group: self.group,
        }
    }
}

/// The tap, made under a temporary name inside the container (so no name there can be
/// taken over), given its MTU and MAC, then renamed to `ifname`. Deleted again on failure.
fn create_tap(
    cont: &Handle,
    ns: &Netns,
    conf: &Config,
    mac: Option<[u8; 6]>,
    ifname: &str,
) -> Result<Link> {
    let tmp = crate::veth::random_veth_name()?;
    let spec = conf.spec(tmp.clone());
    let made = match conf.selinux_context.as_str() {
        "" => ns.run(|| tuntap::create_persistent_tap(&spec))?,
        ctx => ns.run(|| tuntap::create_persistent_tap_in_context(&spec, ctx))?,
    };
    made.context("failed to create tap")?;
    let link = cont
        .link_by_name(&tmp)?
        .with_context(|| format!("tap {tmp} vanished after creation"))?;
    let mut rb = Rollback::new();
    rb.push(format!("delete tap {tmp}"), || cont.delete_link(link.index));
    if conf.mtu != 0 {
        cont.set_mtu(link.index, conf.mtu)
            .with_context(|| format!("failed to set MTU {} on the tap", conf.mtu))?;
    }
    if let Some(m) = mac {
        cont.set_mac(link.index, m)
            .context("failed to set the tap's MAC")?;
    }
    cont.set_name(link.index, ifname)
        .with_context(|| format!("failed to rename tap to {ifname:?}"))?;
    let link = cont
        .link_by_index(link.index)?
        .with_context(|| format!("tap {ifname} vanished"))?;
    rb.commit();
    Ok(link)
}

/// Makes the tap a port of `bridge`, a bridge inside the container.
fn attach_to_bridge(cont: &Handle, tap: &Link, bridge: &str) -> Result<()> {
    let br = cont.link_by_name(bridge)?.ok_or_else(|| {
        bad_config(format!(
            "bridge {bridge:?} does not exist in the container netns"
        ))
    })?;
    if br.kind != "bridge" {
        return Err(bad_config(format!(
            "{bridge:?} in the container netns is not a bridge (it is {:?})",
            br.kind
        )));
    }
    cont.set_master(tap.index, br.index).with_context(|| {
        format!(
            "failed to set tap {} as a port of bridge {bridge}",
            tap.name
        )
    })
}

/// DEL's link half: the tun device called `CNI_IFNAME`; a missing netns or link is success,
/// and a link of another kind is not ours to delete.
fn delete_tap(args: &CmdArgs) -> Result<()> {
    let Some(ns) = args.netns_if_present()? else {
        return Ok(());
    };
    let cont = Handle::in_netns(&ns)?;
    match cont.link_by_name(&args.ifname)? {
        Some(l) if l.kind == "tun" => match cont.delete_link(l.index) {
            Err(e) if crate::netlink::is_not_found(&e) => Ok(()),
            r => r.with_context(|| format!("failed to delete {}", args.ifname)),
        },
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::code_of;
    use crate::types::args::CniArgs;

    fn cmd(json: &str, cni_args: &str) -> CmdArgs {
        CmdArgs {
            command: Command::Add,
            container_id: "c1".into(),
            netns: String::new(),
            ifname: "tap0".into(),
            args: CniArgs::parse(cni_args).unwrap(),
            path: vec![],
            stdin: json.as_bytes().to_vec(),
            version: "1.0.0".into(),
            env: Default::default(),
        }
    }

    #[test]
    fn keys_and_mac_precedence() {
        let json = r#"{"name":"n","type":"tap","multiQueue":true,"mtu":1400,"owner":1000,
            "group":100,"bridge":"br0","mac":"02:00:00:00:00:01"}"#;
        let a = cmd(json, "");
        let c = Config::load(&a).unwrap();
        assert!(c.multi_queue && c.mtu == 1400 && c.bridge == "br0");
        assert_eq!((c.owner, c.group), (Some(1000), Some(100)));
        assert_eq!(c.mac(&a).unwrap(), Some([2, 0, 0, 0, 0, 1]));
        let a = cmd(json, "MAC=02:00:00:00:00:02");
        assert_eq!(c.mac(&a).unwrap(), Some([2, 0, 0, 0, 0, 2]));
        let rt = r#"{"name":"n","type":"tap","mac":"02:00:00:00:00:01",
            "runtimeConfig":{"mac":"02:00:00:00:00:03"}}"#;
        let a = cmd(rt, "MAC=02:00:00:00:00:02");
        let c = Config::load(&a).unwrap();
        assert_eq!(c.mac(&a).unwrap(), Some([2, 0, 0, 0, 0, 3]));
        let s = c.spec("tmp0".into());
        assert!(s.vnet_hdr && !s.packet_info && !s.multi_queue);
    }

    #[test]
    fn bad_values_are_code_7() {
        for json in [
            r#"{"name":"n","type":"tap","owner":"root"}"#,
            r#"{"name":"n","type":"tap","group":-1}"#,
            r#"{"name":"n","type":"tap","mtu":"big"}"#,
        ] {
            let e = Config::load(&cmd(json, "")).unwrap_err();
            assert_eq!(code_of(&e), 7, "{json}");
        }
        let a = cmd(r#"{"name":"n","type":"tap","mac":"nope"}"#, "");
        let e = Config::load(&a).unwrap().mac(&a).unwrap_err();
        assert_eq!(code_of(&e), 7);
        if !tuntap::selinux_enabled() {
            let a = cmd(
                r#"{"name":"n","type":"tap","selinuxContext":"system_u:object_r:x"}"#,
                "",
            );
            let e = Config::load(&a).unwrap_err();
            assert_eq!(code_of(&e), 7);
            assert!(e.to_string().contains("SELinux is not enabled"), "{e}");
            Config::load_for_del(&a).unwrap();
        }
    }

    #[test]
    fn help_lists_every_config_key() {
        crate::keys::assert_struct_keys::<Config>(KEYS);
    }
}
