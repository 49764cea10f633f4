//! The dhcp tests' rig: a fake host netns with a bridge (`br0`, 10.<n>.0.1/24 and optionally
//! fd<n>::1/64), containers attached to it through veths, a real DHCP server on the bridge
//! (dnsmasq or busybox udhcpd) and our `dhcp daemon`, each a child process killed on drop
//! (also when a test fails), with sockets, leases and logs in a per-test temp dir.

use crate::support::{Cni, Farm, TempDir, TestNs};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A fake host with a bridge, and a temp dir for everything the test writes.
pub struct Lan {
    /// The fake host netns (server, daemon and plugins run here).
    pub host: TestNs,
    /// Per-test files.
    pub dir: TempDir,
    /// Second octet of the subnet: 10.<net>.0.0/24.
    pub net: u8,
}

impl Lan {
    /// A host netns with `br0` = 10.<net>.0.1/24 (and fd<net>::1/64 when `v6`, plus fe80::1 at
    /// once: a bridge without ports has no carrier, hence no link-local address of its own yet,
    /// and dnsmasq would then send its Router Advertisements from the global one, which hosts
    /// must ignore).
    pub fn new(label: &str, net: u8, v6: bool) -> Lan {
        let host = TestNs::new(&format!("{label}-host"));
        let mut script = format!(
            "ip link set lo up && ip link add br0 type bridge && \
             ip addr add 10.{net}.0.1/24 dev br0 && ip link set br0 up"
        );
        if v6 {
            script.push_str(&format!(
                " && sysctl -qw net.ipv6.conf.br0.accept_dad=0 && \
                 ip -6 addr add fd{net}::1/64 dev br0 nodad && \
                 ip -6 addr add fe80::1/64 dev br0 nodad"
            ));
        }
        host.sh(&script);
        Lan {
            host,
            dir: TempDir::new(label),
            net,
        }
    }

    /// A container netns with nothing in it (for the bridge plugin to attach).
    pub fn empty_container(&self, label: &str) -> TestNs {
        TestNs::new(label)
    }

    /// A container netns whose `eth0` is a veth with its peer on `br0`.
    pub fn container(&self, label: &str) -> TestNs {
        let ctr = TestNs::new(label);
        let peer = format!("v{}", ctr.pid());
        self.host.sh(&format!(
            "ip link add {peer} type veth peer name eth0 netns {} && \
             ip link set {peer} master br0 up",
            ctr.pid()
        ));
        if self.v6_enabled() {
            ctr.sh("sysctl -qw net.ipv6.conf.eth0.accept_dad=0");
        }
        ctr
    }

    fn v6_enabled(&self) -> bool {
        self.host
            .ip(&["-6", "addr", "show", "dev", "br0"])
            .contains("fd")
    }

    /// A path in the temp dir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The daemon's socket path.
    pub fn socket(&self) -> PathBuf {
        self.path("run/dhcp.sock")
    }

    /// A network configuration for the `dhcp` IPAM called directly.
    pub fn ipam_conf(&self, version: &str, extra: Value) -> Value {
        let mut ipam = json!({"type": "dhcp", "daemonSocketPath": self.socket()});
        for (k, v) in extra.as_object().unwrap() {
            ipam[k] = v.clone();
        }
        json!({"cniVersion": version, "name": "lan", "type": "dhcp", "ipam": ipam})
    }

    /// A bridge network on `br0` with `dhcp` IPAM.
    pub fn bridge_conf(&self, version: &str) -> Value {
        json!({"cniVersion": version, "name": "lan", "type": "bridge", "bridge": "br0",
               "ipam": {"type": "dhcp", "daemonSocketPath": self.socket()}})
    }

    /// Runs `applet` with `verb` for container `cid` (interface eth0) in `ctr`.
    pub fn call(
        &self,
        applet: &str,
        verb: &str,
        cid: &str,
        ctr: &TestNs,
        conf: &Value,
    ) -> crate::support::cni::Outcome {
        Cni::new(Farm::shared(), applet)
            .command(verb)
            .container_id(cid)
            .netns(ctr.path())
            .ifname("eth0")
            .config(conf)
            .run_in(&self.host)
    }

    /// dnsmasq on br0 (DHCPv4 pool .50-.99, 2 min leases, `extra` options), lease file
    /// `dnsmasq.leases`, log `dnsmasq.log`.
    pub fn dnsmasq(&self, extra: &[&str]) -> Proc {
        let net = self.net;
        let mut args: Vec<String> = vec![
            "dnsmasq".into(),
            "--no-daemon".into(),
            "--conf-file=/dev/null".into(),
            "--port=0".into(),
            "--interface=br0".into(),
            "--bind-interfaces".into(),
            "--no-ping".into(),
            "--log-dhcp".into(),
            format!("--pid-file={}", self.path("dnsmasq.pid").display()),
            format!("--dhcp-leasefile={}", self.path("dnsmasq.leases").display()),
            format!("--log-facility={}", self.path("dnsmasq.log").display()),
            format!("--dhcp-range=10.{net}.0.50,10.{net}.0.99,255.255.255.0,2m"),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let p = Proc::spawn(&self.host, &args, &self.path("dnsmasq.out"));
        wait_for(Duration::from_secs(10), || {
            std::fs::read_to_string(self.path("dnsmasq.log"))
                .is_ok_and(|l| l.contains("DHCP, sockets bound"))
        });
        p
    }

    /// busybox udhcpd on br0 with `lease` second leases (pool .20-.40), option 121 when
    /// `classless`; its log (`udhcpd.log`) lists each OFFER and ACK.
    pub fn udhcpd(&self, lease: u32, classless: bool) -> Proc {
        let net = self.net;
        let mut conf = format!(
            "start 10.{net}.0.20\nend 10.{net}.0.40\ninterface br0\n\
             lease_file {}\npidfile {}\noption subnet 255.255.255.0\n\
             option router 10.{net}.0.1\noption lease {lease}\n",
            self.path("udhcpd.leases").display(),
            self.path("udhcpd.pid").display()
        );
        if classless {
            conf.push_str(&format!(
                "option staticroutes 10.99.0.0/16 10.{net}.0.254\n"
            ));
        }
        let cf = self.path("udhcpd.conf");
        std::fs::write(&cf, conf).unwrap();
        std::fs::write(self.path("udhcpd.leases"), "").unwrap();
        let args = [
            "busybox".to_string(),
            "udhcpd".into(),
            "-f".into(),
            cf.display().to_string(),
        ];
        let p = Proc::spawn(&self.host, &args, &self.path("udhcpd.log"));
        wait_for(Duration::from_secs(10), || {
            self.log("udhcpd.log").contains("started")
        });
        p
    }

    /// Starts our daemon with `flags` (plus -socketpath and -leasedir in the temp dir) and
    /// waits for its socket.
    pub fn daemon(&self, flags: &[&str]) -> Proc {
        let _ = std::fs::remove_file(self.socket());
        let mut args = vec![
            Farm::shared().binary().display().to_string(),
            "dhcp".into(),
            "daemon".into(),
            "-socketpath".into(),
            self.socket().display().to_string(),
            "-leasedir".into(),
            self.path("leases").display().to_string(),
        ];
        args.extend(flags.iter().map(|s| s.to_string()));
        let p = Proc::spawn(&self.host, &args, &self.path("daemon.log"));
        let sock = self.socket();
        wait_for(Duration::from_secs(10), || sock.exists());
        assert!(
            sock.exists(),
            "daemon did not start: {}",
            self.log("daemon.log")
        );
        p
    }

    /// A log or state file of the temp dir ("" when missing).
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }

    /// Our daemon's lease files.
    pub fn lease_files(&self) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(self.path("leases")) else {
            return Vec::new();
        };
        rd.flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json"))
            .collect()
    }
}

/// Option 61 as dnsmasq writes it in its lease file: type byte 0, then the id, in hex.
pub fn client_id_hex(id: &str) -> String {
    std::iter::once(0u8)
        .chain(id.bytes())
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Polls `cond` every 50 ms until it holds or `limit` passes; returns whether it held.
pub fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

/// A child process run inside a netns (through nsenter, which execs it), killed on drop.
pub struct Proc {
    child: Option<Child>,
}

impl Proc {
    /// Runs `argv` inside `ns`, stdout and stderr to `log`.
    pub fn spawn(ns: &TestNs, argv: &[String], log: &std::path::Path) -> Proc {
        let out = std::fs::File::create(log).unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net={}", ns.path().display()))
            .arg("--")
            .args(argv)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {argv:?}: {e}"));
        Proc { child: Some(child) }
    }

    /// pid of the process.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Sends `sig` and waits for the exit; returns the exit status code (or 128 + signal).
    pub fn stop(&mut self, sig: nix::sys::signal::Signal) -> i32 {
        use std::os::unix::process::ExitStatusExt;
        let Some(mut c) = self.child.take() else {
            return -1;
        };
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), sig);
        let st = c.wait().unwrap();
        st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
