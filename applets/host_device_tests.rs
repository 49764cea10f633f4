use super::*;
use crate::error::code_of;
use crate::testutil::{TempDir, another_netns, fresh_netns};
use crate::types::args::CniArgs;

fn cmd(json: &str) -> CmdArgs {
    CmdArgs {
        command: Command::Add,
        container_id: "c1".into(),
        netns: String::new(),
        ifname: "eth0".into(),
        args: CniArgs::default(),
        path: vec![],
        stdin: json.as_bytes().to_vec(),
        version: "1.0.0".into(),
        env: Default::default(),
    }
}

fn load(json: &str) -> Result<Config> {
    Config::load(&cmd(json))
}

fn fake_sys() -> (TempDir, Sysfs) {
    let t = TempDir::new("hostdev-target");
    t.write("bus/pci/devices/0000:00:03.0/net/ens3/ifindex", "2\n");
    t.write("bus/pci/devices/0000:00:05.0/vendor", "x\n");
    t.write(
        "bus/auxiliary/devices/mlx5_core.sf.2/net/sf2/ifindex",
        "3\n",
    );
    t.write("drivers/igb_uio/x", "");
    std::os::unix::fs::symlink(
        t.path().join("drivers/igb_uio"),
        t.path().join("bus/pci/devices/0000:00:05.0/driver"),
    )
    .unwrap();
    let s = Sysfs::at(t.path());
    (t, s)
}

#[test]
fn a_selector_is_required_and_well_formed() {
    let e = load(r#"{"name":"n","type":"host-device"}"#).unwrap_err();
    assert_eq!(code_of(&e), 7);
    assert!(e.to_string().contains(r#"specify either "device""#), "{e}");
    let e = load(r#"{"name":"n","type":"host-device","hwaddr":"zz"}"#).unwrap_err();
    assert_eq!(code_of(&e), 7);
    let c = load(r#"{"name":"n","type":"host-device","device":"eth1","DpdkMode":true}"#).unwrap();
    assert!(c.dpdk_key && c.device == "eth1");
    let c = load(r#"{"name":"n","type":"host-device","runtimeConfig":{"deviceID":"x"}}"#);
    assert!(c.is_ok(), "deviceID alone is a selector");
}

#[test]
fn device_id_overrides_and_decides_dpdk() {
    let (_t, sys) = fake_sys();
    let conf = |rt: &str| {
        load(&format!(
            r#"{{"name":"n","type":"host-device","device":"eth1","runtimeConfig":{{"deviceID":"{rt}"}}}}"#
        ))
        .unwrap()
    };
    let t = conf("0000:00:03.0").target(&sys).unwrap();
    assert_eq!(t.selectors, [Selector::Pci("0000:00:03.0".into())]);
    assert!(!t.dpdk);
    let t = conf("0000:00:05.0").target(&sys).unwrap();
    assert!(t.dpdk, "bound to igb_uio");
    let t = conf("mlx5_core.sf.2").target(&sys).unwrap();
    assert_eq!(t.selectors, [Selector::Aux("mlx5_core.sf.2".into())]);
    let e = conf("0000:99:00.0").target(&sys).unwrap_err();
    assert_eq!(code_of(&e), 7);
    assert!(
        e.to_string().contains("neither a PCI nor an auxiliary"),
        "{e}"
    );
    let plain = load(
        r#"{"name":"n","type":"host-device","device":"eth1","hwaddr":"02:00:00:00:00:01","dpdkmode":true}"#,
    )
    .unwrap();
    let t = plain.target(&sys).unwrap();
    assert_eq!(t.selectors.len(), 2);
    assert!(t.dpdk, "no PCI address: the DPDKMode key decides");
}

#[test]
fn hints_from_prev_result_and_config() {
    let c = load(
        r#"{"name":"n","type":"host-device","cniVersion":"1.0.0","device":"lan0",
            "prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","mac":"02:00:00:00:00:09","sandbox":"/x"}]}}"#,
    )
    .unwrap();
    let h = c.hints(&cmd("{}"));
    assert_eq!(h.prev_mac, Some([2, 0, 0, 0, 0, 9]));
    assert_eq!(h.device.as_deref(), Some("lan0"));
    assert_eq!(h.hwaddr, None);
}

/// In fresh namespaces: a veth end moves in renamed with the alias, a second selector that
/// names another link is refused, and it comes back under its name, alias cleared, also
/// after being renamed inside the container (found by its MAC).
#[test]
fn move_in_and_out_through_a_temporary_netns() {
    let Some(_host_ns) = fresh_netns("host_device_move") else {
        return;
    };
    let cont_ns = another_netns();
    let host = Handle::new().unwrap();
    host.create_veth("lan0", "lan0peer", 0, None, None, None)
        .unwrap();
    let dev = host.link_by_name("lan0").unwrap().unwrap();
    host.set_up(dev.index).unwrap();
    let dev = host.link_by_name("lan0").unwrap().unwrap();
    let target = Target {
        selectors: vec![
            Selector::Name("lan0".into()),
            Selector::Name("lan0peer".into()),
        ],
        dpdk: false,
    };
    let e = find_device(&host, &target, &Sysfs::system()).unwrap_err();
    assert_eq!(code_of(&e), 7);
    assert!(e.to_string().contains("names lan0 but"), "{e}");

    let moved = moving::move_in(&host, &dev, &cont_ns, "net1").unwrap();
    assert_eq!(moved.mac, dev.mac);
    assert!(host.link_by_name("lan0").unwrap().is_none());
    let cont = Handle::in_netns(&cont_ns).unwrap();
    let inside = cont.link_by_name("net1").unwrap().unwrap();
    assert_eq!(inside.alias.as_deref(), Some("lan0"));
    assert!(inside.is_up());

    cont.set_down(inside.index).unwrap();
    cont.set_name(inside.index, "renamed").unwrap();
    let hints = Hints {
        prev_mac: dev.mac,
        ..Default::default()
    };
    let back = moving::move_out(&cont_ns, "net1", &hints).unwrap().unwrap();
    assert_eq!(back.name, "lan0");
    assert_eq!(back.alias.as_deref().unwrap_or(""), "");
    assert!(cont.link_by_name("renamed").unwrap().is_none());
    assert!(
        moving::move_out(&cont_ns, "net1", &hints)
            .unwrap()
            .is_none()
    );

    // A link called net1 that we did not move (no alias, unknown MAC) stays where it is.
    cont.create_veth("net1", "net1peer", 0, None, None, None)
        .unwrap();
    assert!(
        moving::move_out(&cont_ns, "net1", &hints)
            .unwrap()
            .is_none()
    );
    assert!(cont.link_by_name("net1").unwrap().is_some());

    // A failure half-way (the name is taken in the container) leaves it on the host, up.
    host.set_up(back.index).unwrap();
    let dev = host.link_by_name("lan0").unwrap().unwrap();
    let e = moving::move_in(&host, &dev, &cont_ns, "net1").unwrap_err();
    assert!(format!("{e:#}").contains("to the container"), "{e:#}");
    let after = host
        .link_by_name("lan0")
        .unwrap()
        .expect("back on the host");
    assert!(after.is_up());
    assert_eq!(after.alias.as_deref().unwrap_or(""), "");
}

#[test]
fn help_lists_every_config_key() {
    crate::keys::assert_struct_keys::<Config>(KEYS);
}
