//! firewall's firewalld backend against a real firewalld on a dbus-daemon of its own, inside
//! the test's host netns and a private mount namespace: sources in the zone as `dbus-send`
//! reports them, the container's traffic through firewalld's own rules, the backend chosen
//! explicitly and by firewalld's bus name having an owner, CHECK, DEL, DEL, GC, and DEL with
//! firewalld gone.

use crate::firewall::{WAIT, fake_prev, fw_conf, per_ip_rules};
use crate::podnet::{Attachment, ipam, with_prev};
use crate::support::traffic::{Listener, Outside};
use crate::support::{Cni, Farm, TempDir, TestNs, require_root, skip};
use serde_json::{Value, json};
use std::time::Duration;

/// A real firewalld on a dbus-daemon of its own, inside the host netns and a private mount
/// namespace (its `/etc/firewalld`, `/run` and `/var/log` writes stay there); both daemons
/// are killed on drop.
struct Firewalld {
    host: TestNs,
    dir: TempDir,
}

impl Firewalld {
    fn start(label: &str) -> Firewalld {
        let dir = TempDir::new(label);
        let bus = dir.join("bus");
        dir.write(
            "bus.conf",
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>system</type><listen>unix:path={}</listen><auth>EXTERNAL</auth>
<policy context="default"><allow user="*"/><allow own="*"/><allow send_type="method_call"/>
<allow send_type="signal"/><allow send_destination="*"/><allow receive_sender="*"/></policy>
</busconfig>"#,
                bus.display()
            ),
        );
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        let d = dir.path().display();
        let setup = format!(
            "mount -t tmpfs tmpfs /run && mount -t tmpfs tmpfs /var/log && \
             mount --bind {d}/etc /etc/firewalld && \
             dbus-daemon --config-file={d}/bus.conf --fork --print-pid > {d}/dbus.pid && \
             (DBUS_SYSTEM_BUS_ADDRESS=unix:path={d}/bus setsid firewalld --nofork --nopid \
               > {d}/firewalld.log 2>&1 & echo $! > {d}/firewalld.pid)"
        );
        let host = TestNs::with_mounts(&format!("{label}-host"), &setup);
        let fw = Firewalld { host, dir };
        for _ in 0..300 {
            if fw.dbus_send(&["getDefaultZone"]).status.success() {
                return fw;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = std::fs::read_to_string(fw.dir.join("firewalld.log")).unwrap_or_default();
        panic!("firewalld did not come up within 30 s: {log}");
    }

    fn address(&self) -> String {
        format!("unix:path={}", self.dir.join("bus").display())
    }

    fn dbus_send(&self, call: &[&str]) -> std::process::Output {
        let mut argv = vec![
            "dbus-send".to_string(),
            format!("--bus={}", self.address()),
            "--print-reply".into(),
            "--dest=org.fedoraproject.FirewallD1".into(),
            "/org/fedoraproject/FirewallD1".into(),
        ];
        let (first, rest) = call.split_first().unwrap();
        argv.push(format!("org.fedoraproject.FirewallD1.{first}"));
        argv.extend(rest.iter().map(|s| s.to_string()));
        self.host.exec(&argv)
    }

    /// The zone firewalld has `source` in (empty when none).
    fn zone_of(&self, source: &str) -> String {
        let out = self.dbus_send(&["zone.getZoneOfSource", &format!("string:{source}")]);
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|l| l.trim().strip_prefix("string "))
            .map(|s| s.trim_matches('"').to_string())
            .unwrap_or_default()
    }
}

impl Drop for Firewalld {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Firewalld {
    fn stop(&self) {
        for pid in ["firewalld.pid", "dbus.pid"] {
            let text = std::fs::read_to_string(self.dir.join(pid)).unwrap_or_default();
            if let Ok(p) = text.trim().parse::<i32>() {
                let pid = nix::unistd::Pid::from_raw(p);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            }
        }
    }
}

/// firewalld (chosen explicitly, then by its bus name having an owner): ADD puts the
/// addresses in the zone and the container's traffic through; CHECK, DEL, DEL; isolation
/// stays with netfilter.
#[test]
fn firewalld_backend_with_real_firewalld() {
    if !require_root() {
        return;
    }
    if reference_tool("firewalld").is_none() || reference_tool("dbus-daemon").is_none() {
        skip!("firewalld or dbus-daemon not installed");
    }
    let fwd = Firewalld::start("fw-firewalld");
    let host = &fwd.host;
    let ctr = TestNs::new("fw-firewalld-ctr");
    let outside = Outside::new(host, "fw-firewalld");
    outside.ns.sh("ip route add 10.69.0.0/16 via 198.51.100.1");
    let listener = Listener::new(&outside.ns);
    let (data, state) = (TempDir::new("fwd-ipam"), TempDir::new("fwd-state"));
    let bus = fwd.address();
    for (cid, backend, zone) in [("f1", "firewalld", "internal"), ("f2", "", "trusted")] {
        let mut fw = fw_conf(backend, "", &state);
        if zone != "trusted" {
            fw["firewalldZone"] = json!(zone);
        }
        let bconf = json!({"cniVersion": "1.1.0", "name": "fwdnet", "type": "bridge",
            "bridge": "fwd0", "isDefaultGateway": true, "ipam": ipam(&data, &["10.69.1.0/24"])});
        let bridge = Attachment::ours("bridge", cid, ctr.path(), "eth0");
        let result = bridge.run(host, "ADD", &bconf).result().clone();
        let at = FwCall(
            Cni::new(Farm::shared(), "firewall")
                .container_id(cid)
                .netns(ctr.path())
                .ifname("eth0")
                .env("DBUS_SYSTEM_BUS_ADDRESS", &bus),
        );
        at.run(host, "ADD", &with_prev(&fw, &result)).ok();
        let ip = result["ips"][0]["address"]
            .as_str()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_string();
        assert_eq!(
            fwd.zone_of(&format!("{ip}/32")),
            zone,
            "{cid}: source in the zone"
        );
        assert!(
            per_ip_rules(host).is_empty(),
            "no netfilter rules of ours under firewalld"
        );
        if zone == "trusted" {
            // Only the trusted zone forwards to other zones (its target is ACCEPT).
            let seen = listener.source_seen(&ctr, outside.v4, WAIT);
            let want = Some(ip.parse().unwrap());
            assert_eq!(seen, want, "{cid}: traffic passes firewalld");
        }
        at.run(host, "CHECK", &with_prev(&fw, &result)).ok();
        at.run(host, "DEL", &fw).ok();
        assert_eq!(
            fwd.zone_of(&format!("{ip}/32")),
            "",
            "{cid}: DEL removed the source"
        );
        at.run(host, "DEL", &fw).ok();
        at.run(host, "CHECK", &with_prev(&fw, &result))
            .expect_error(999);
        bridge.run(host, "DEL", &bconf).ok();
    }
    // GC removes the sources of attachments not listed; with firewalld gone, DEL succeeds.
    let call = |cid: &str| {
        FwCall(
            Cni::new(Farm::shared(), "firewall")
                .container_id(cid)
                .netns(ctr.path())
                .ifname("eth0")
                .env("DBUS_SYSTEM_BUS_ADDRESS", &bus),
        )
    };
    let fw = fw_conf("firewalld", "", &state);
    call("f3")
        .run(host, "ADD", &with_prev(&fw, &fake_prev(&["10.69.9.9/24"])))
        .ok();
    call("f4")
        .run(host, "ADD", &with_prev(&fw, &fake_prev(&["10.69.9.10/24"])))
        .ok();
    let mut gc = fw.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "f3", "ifname": "eth0"}]);
    call("").run(host, "GC", &gc).ok();
    assert_eq!(
        fwd.zone_of("10.69.9.9/32"),
        "trusted",
        "a valid attachment stays"
    );
    assert_eq!(
        fwd.zone_of("10.69.9.10/32"),
        "",
        "GC removed the stale source"
    );
    fwd.stop();
    call("f3").run(host, "DEL", &fw).ok();
}

/// A firewall call with its own environment.
struct FwCall(Cni);

impl FwCall {
    fn run(&self, host: &TestNs, verb: &str, conf: &Value) -> crate::support::Outcome {
        self.0.clone().command(verb).config(conf).run_in(host)
    }
}

fn reference_tool(name: &str) -> Option<std::path::PathBuf> {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|d| std::path::Path::new(d).join(name))
        .find(|p| p.is_file())
}
