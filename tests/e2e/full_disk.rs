//! Disk full and read-only state (issue 15): host-local's store and the runtime's result cache
//! on a tiny tmpfs, mounted in a private mount namespace held with the fake host (the machine's
//! mounts are never touched). With the file system full, ADD fails with a clear error and
//! leaves no reservation, no half-written file and no link; DEL of what is already there
//! succeeds (unlink needs no space). Read-only: ADD fails cleanly the same way; the runtime's
//! DEL succeeds (the plugins' work is undone; a cache file that cannot be removed is left for
//! the next GC); host-local's DEL fails loudly, naming the file it cannot remove, because an
//! address can only be freed in the store (reporting success would leak it silently), and
//! succeeds once the store is writable again.

use crate::support::ipam::tree;
use crate::support::runtime::NetTool;
use crate::support::{Cni, Farm, Outcome, Pair, TempDir, TestNs, require_root};
use serde_json::{Value, json};

/// A fake host whose mount namespace has a 64 KiB tmpfs at `mnt`, and a container.
struct Rig {
    host: TestNs,
    ctr: TestNs,
    mnt: TempDir,
}

impl Rig {
    fn new(label: &str) -> Rig {
        let mnt = TempDir::new(label);
        let setup = format!(
            "mount -t tmpfs -o size=64k,nr_inodes=64 tmpfs {} && ip link set lo up",
            mnt.path().display()
        );
        Rig {
            host: TestNs::with_mounts(&format!("{label}-host"), &setup),
            ctr: Pair::new(label).container,
            mnt,
        }
    }

    /// Runs `script` in the host's mount namespace.
    fn sh(&self, script: &str) -> String {
        let out = std::process::Command::new("nsenter")
            .arg(format!("--mount={}", self.host.mount_path().display()))
            .args(["--", "sh", "-c", script])
            .output()
            .expect("nsenter");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Fills the tmpfs until no byte fits.
    fn fill(&self) {
        self.sh(&format!(
            "dd if=/dev/zero of={}/fill bs=4k 2>/dev/null; true",
            self.mnt.path().display()
        ));
    }

    fn remount(&self, how: &str) {
        self.sh(&format!(
            "mount -o remount,{how} {}",
            self.mnt.path().display()
        ));
    }

    /// Files on the tmpfs as the host's mount namespace sees them, but the filler.
    fn files(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .sh(&format!(
                "cd {} && find . -type f | sort",
                self.mnt.path().display()
            ))
            .lines()
            .filter(|l| *l != "./fill")
            .map(String::from)
            .collect();
        v.sort();
        v
    }

    fn conf(&self) -> Value {
        json!({"cniVersion": "1.1.0", "name": "fullnet", "type": "bridge",
               "ipam": {"type": "host-local", "subnet": "10.74.0.0/24",
                        "dataDir": self.mnt.join("data")}})
    }

    fn host_local(&self, verb: &str, id: &str) -> Outcome {
        Cni::new(Farm::shared(), "host-local")
            .under([
                "nsenter",
                &format!("--mount={}", self.host.mount_path().display()),
                "--",
            ])
            .command(verb)
            .container_id(id)
            .ifname("eth0")
            .netns(self.ctr.path())
            .config(self.conf())
            .run_in(&self.host)
    }
}

fn reservations(files: &[String]) -> Vec<String> {
    files
        .iter()
        .filter(|f| {
            let name = f.rsplit('/').next().unwrap();
            name.parse::<std::net::IpAddr>().is_ok() || name.starts_with('.')
        })
        .cloned()
        .collect()
}

#[test]
fn host_local_on_a_full_disk() {
    if !require_root() {
        return;
    }
    let rig = Rig::new("disk-full");
    rig.host_local("ADD", "c1").ok();
    assert_eq!(reservations(&rig.files()), ["./data/fullnet/10.74.0.2"]);
    rig.fill();
    let out = rig.host_local("ADD", "c2");
    assert!(out.error_code().is_some(), "ADD on a full disk:\n{out}");
    let msg = out.json.as_ref().unwrap()["msg"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(msg.contains("No space left"), "{msg}");
    assert_eq!(
        reservations(&rig.files()),
        ["./data/fullnet/10.74.0.2"],
        "c2 half-made"
    );
    rig.host_local("DEL", "c1").ok();
    rig.host_local("DEL", "c1").ok();
    assert_eq!(reservations(&rig.files()), Vec::<String>::new());
}

#[test]
fn host_local_on_a_read_only_store() {
    if !require_root() {
        return;
    }
    let rig = Rig::new("disk-ro");
    rig.host_local("ADD", "c1").ok();
    rig.remount("ro");
    let out = rig.host_local("ADD", "c2");
    assert!(
        out.error_code().is_some(),
        "ADD on a read-only store:\n{out}"
    );
    let del = rig.host_local("DEL", "c1");
    assert!(
        del.error_code().is_some(),
        "DEL cannot free the address:\n{del}"
    );
    let msg = del.json.as_ref().unwrap()["msg"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("10.74.0.2") && msg.contains("Read-only"),
        "{msg}"
    );
    rig.remount("rw");
    assert_eq!(reservations(&rig.files()), ["./data/fullnet/10.74.0.2"]);
    rig.host_local("DEL", "c1").ok();
    assert_eq!(reservations(&rig.files()), Vec::<String>::new());
}

/// The runtime tool with its cache on the tmpfs; the plugins' own state elsewhere.
fn net(rig: &Rig, tool: &NetTool, verb: &str, id: &str) -> Outcome {
    let farm = Farm::shared();
    Cni::new(farm, "net")
        .arg(verb)
        .arg("cachenet")
        .arg(rig.ctr.path())
        .arg("--container-id")
        .arg(id)
        .arg("--conf-dir")
        .arg(tool.conf_dir())
        .arg("--cache-dir")
        .arg(rig.mnt.join("cache"))
        .arg("--cni-path")
        .arg(farm.dir())
        .under([
            "nsenter",
            &format!("--mount={}", rig.host.mount_path().display()),
            "--",
        ])
        .run_in(&rig.host)
}

#[test]
fn runtime_cache_on_a_full_and_a_read_only_disk() {
    if !require_root() {
        return;
    }
    let rig = Rig::new("disk-cache");
    let tool = NetTool::new("disk-cache");
    let ipam = TempDir::new("disk-cache-ipam");
    let list = json!({"cniVersion": "1.1.0", "name": "cachenet", "plugins": [
        {"type": "host-local", "ipam": {"type": "host-local", "subnet": "10.75.0.0/24",
                                          "dataDir": ipam.path()}}]});
    tool.write("10-cache.conflist", &list);
    net(&rig, &tool, "add", "c1").ok();
    assert_eq!(rig.files(), ["./cache/results/cachenet-c1-eth0"]);
    rig.fill();
    let out = net(&rig, &tool, "add", "c2");
    assert_ne!(out.code, 0, "ADD with no room for the cache:\n{out}");
    assert_eq!(
        rig.files(),
        ["./cache/results/cachenet-c1-eth0"],
        "half-written cache"
    );
    let held = tree(&ipam.join("cachenet"));
    assert!(
        !held.iter().any(|f| f == "10.75.0.3"),
        "c2's address kept: {held:?}"
    );
    net(&rig, &tool, "del", "c1").ok();
    assert_eq!(rig.files(), Vec::<String>::new());

    rig.sh(&format!("rm -f {}/fill", rig.mnt.path().display()));
    net(&rig, &tool, "add", "c3").ok();
    rig.remount("ro");
    let out = net(&rig, &tool, "add", "c4");
    assert_ne!(out.code, 0, "ADD with a read-only cache:\n{out}");
    net(&rig, &tool, "del", "c3").ok();
    let held: Vec<String> = tree(&ipam.join("cachenet"))
        .into_iter()
        .filter(|f| f.parse::<std::net::IpAddr>().is_ok())
        .collect();
    assert_eq!(held, Vec::<String>::new(), "addresses kept after DEL");
}
