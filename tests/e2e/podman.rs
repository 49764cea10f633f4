//! A real runtime as the client: Debian's podman (`--network-backend cni`, libcni inside) runs a
//! container with runc on a bridge + host-local + portmap network whose plugins come from our
//! `CNI_PATH` farm (`cni_plugin_dirs`), inside a fake host netns. The test checks the container's
//! address and a port mapping from the fake host, removes the container, and finds nothing left:
//! no veth, no host-local reservation, no per-container iptables or nft rule, no cache file, no
//! netns. The same scenario with the reference plugins is the control: when it passes and ours
//! fails, the fault is ours, not the harness'.
//!
//! podman is isolated completely: per-test `--root`, `--runroot`, `--tmpdir`, `CONTAINERS_CONF`,
//! network config dir and cgroup parent; `--rootfs` of busybox-static (no image, no registry);
//! and a private mount namespace held with the fake host netns, with tmpfs over `/run` (runc
//! state, podman's `/run/netns` bind mounts), `/dev/shm` (libpod's lock segment) and `/var/lib`
//! (libcni's cache, `/var/lib/cni`, is bound from the test's temp dir so it can be inspected).
//! On these machines crun refuses the hybrid cgroup layout (runc works), and podman's default
//! open-files and process limits exceed what the machine allows, so both are passed as `--ulimit`
//! from our own limits.

use crate::support::cni::STD_PATH;
use crate::support::{Cni, Farm, Outcome, TempDir, TestNs, require_root, skip};
use cni_multi::runtime::ResultCache;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The network podman attaches the container to.
const NET: &str = "pmnet";
/// The fake host's address on the bridge, the gateway.
const GATEWAY: &str = "10.89.7.1";
/// The page the container serves.
const PAGE: &str = "hello from a cni-multi container\n";

/// One isolated podman: its fake host (netns + private mounts) and its temp dir.
struct Podman {
    dir: TempDir,
    host: TestNs,
    cgroup_parent: String,
}

impl Podman {
    /// A podman whose `cni_plugin_dirs` is `plugins`, with the network [`NET`] configured.
    fn new(label: &str, plugins: &Path) -> Podman {
        Podman::with_network(label, plugins, network)
    }

    /// A podman whose network [`NET`] is `network(its temp dir)`.
    fn with_network(label: &str, plugins: &Path, network: fn(&TempDir) -> Value) -> Podman {
        let dir = TempDir::new(&format!("podman-{label}"));
        for sub in ["root", "runroot", "tmp", "net.d", "cache", "data"] {
            std::fs::create_dir(dir.join(sub)).expect("mkdir");
        }
        dir.write("containers.conf", containers_conf(&dir, plugins));
        dir.write(format!("net.d/{NET}.conflist"), network(&dir).to_string());
        let host = TestNs::with_mounts(&format!("podman-{label}"), &mounts(&dir));
        let cgroup_parent = format!(
            "/{}",
            dir.path().file_name().unwrap().to_str().expect("UTF-8")
        );
        Podman {
            dir,
            host,
            cgroup_parent,
        }
    }

    /// `podman ARGS...` in the fake host, with every state path in the temp dir.
    fn run(&self, args: &[&str]) -> Outcome {
        let d = |p: &str| {
            self.dir
                .join(p)
                .to_str()
                .expect("UTF-8 temp dir")
                .to_string()
        };
        let mount = format!("--mount={}", self.host.mount_path().display());
        let (root, runroot, tmp, netd) = (d("root"), d("runroot"), d("tmp"), d("net.d"));
        let global = [
            &mount,
            "--",
            "podman",
            "--root",
            &root,
            "--runroot",
            &runroot,
            "--tmpdir",
            &tmp,
            "--network-config-dir",
            &netd,
            "--storage-driver",
            "vfs",
            "--cgroup-manager",
            "cgroupfs",
            "--runtime",
            "runc",
            "--events-backend",
            "file",
            "--network-backend",
            "cni",
        ];
        let call = global
            .into_iter()
            .chain(args.iter().copied())
            .fold(Cni::at("nsenter"), Cni::arg);
        call.env("HOME", &d("."))
            .env("CONTAINERS_CONF", &d("containers.conf"))
            .timeout(Duration::from_secs(120))
            .run_in(&self.host)
    }

    /// `podman ARGS...`, which must succeed; its stdout, trimmed.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(out.code, 0, "podman {args:?} failed:\n{out}");
        out.stdout.trim().to_string()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // A failed test may leave a container running: podman stops and removes it (and calls
        // the plugins' DEL) before the fake host goes, then the cgroups it made are removed.
        let _ = self.run(&["rm", "--all", "--force", "--time", "0"]);
        for controller in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten() {
            let Ok(c) = controller else { continue };
            remove_cgroup(&c.path().join(self.cgroup_parent.trim_start_matches('/')));
        }
    }
}

/// Removes an (empty of tasks) cgroup directory tree, children first; only directories.
fn remove_cgroup(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup(&e.path());
        }
    }
    if let Err(e) = std::fs::remove_dir(dir) {
        eprintln!("warning: cannot remove cgroup {}: {e}", dir.display());
    }
}

/// The mount namespace: tmpfs where podman, runc and libcni keep machine-wide state.
fn mounts(dir: &TempDir) -> String {
    format!(
        "mount -t tmpfs tmpfs /run && mkdir /run/netns && mount -t tmpfs tmpfs /dev/shm && \
         mount -t tmpfs tmpfs /var/lib && mkdir /var/lib/cni && \
         mount --bind {} /var/lib/cni && ip link set lo up",
        dir.join("cache").display()
    )
}

fn containers_conf(dir: &TempDir, plugins: &Path) -> String {
    format!(
        "[network]\nnetwork_backend = \"cni\"\ncni_plugin_dirs = [\"{}\"]\n\
         network_config_dir = \"{}\"\n\
         [engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
         events_logfile_path = \"{}\"\ntmp_dir = \"{}\"\n",
        plugins.display(),
        dir.join("net.d").display(),
        dir.join("events.log").display(),
        dir.join("tmp").display()
    )
}

/// bridge (with host-local) + portmap, in 1.0.0: podman 4.3's libcni speaks no newer version.
fn network(dir: &TempDir) -> Value {
    json!({"cniVersion": "1.0.0", "name": NET, "plugins": [
        {"type": "bridge", "bridge": "pmbr0", "isGateway": true, "ipMasq": true,
         "ipam": {"type": "host-local", "subnet": "10.89.7.0/24",
                  "dataDir": dir.join("data")}},
        {"type": "portmap", "capabilities": {"portMappings": true}}]})
}

/// A root filesystem of busybox-static and a web page; `None` when /bin/busybox is missing or
/// not static (it must run alone in the container).
fn rootfs(dir: &TempDir) -> Option<PathBuf> {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).expect("mkdir rootfs");
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).ok()?;
    for applet in ["sh", "httpd", "ip"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).expect("symlink");
    }
    dir.write("rootfs/www/index.html", PAGE);
    let status = std::process::Command::new("chroot")
        .arg(&root)
        .args(["/bin/busybox", "true"])
        .status()
        .ok()?;
    status.success().then_some(root)
}

/// `--ulimit` values a container here may have. podman asks for 1048576 open files and
/// processes; without CAP_SYS_RESOURCE (the case on these machines) runc cannot raise a limit
/// above what conmon inherited, and podman lowers its own process limit on the way, so the test
/// asks for a small value that is never above ours.
fn ulimits() -> Vec<String> {
    [
        ("nofile", libc::RLIMIT_NOFILE),
        ("nproc", libc::RLIMIT_NPROC),
    ]
    .into_iter()
    .map(|(name, which)| {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we own.
        assert_eq!(unsafe { libc::getrlimit(which, &mut lim) }, 0);
        let n = lim.rlim_cur.min(1024);
        format!("{name}={n}:{n}")
    })
    .collect()
}

/// The first of podman, runc and conmon that is not installed.
fn missing_tool() -> Option<&'static str> {
    ["podman", "runc", "conmon"].into_iter().find(|tool| {
        !STD_PATH
            .split(':')
            .any(|d| Path::new(d).join(tool).is_file())
    })
}

/// Starts container `web` on [`NET`]: busybox httpd on port 80 of `rootfs`, published on the
/// host's 8080; returns its id.
fn start_web(podman: &Podman, rootfs: &Path) -> String {
    let rootfs = rootfs.to_str().expect("UTF-8").to_string();
    let mut run = vec!["run", "--detach", "--name", "web", "--network", NET];
    run.extend([
        "--publish",
        "8080:80",
        "--cgroup-parent",
        &podman.cgroup_parent,
    ]);
    let limits = ulimits();
    for l in &limits {
        run.extend(["--ulimit", l]);
    }
    run.extend([
        "--rootfs",
        &rootfs,
        "/bin/httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/www",
    ]);
    podman.ok(&run)
}

/// Runs a web server in a container on [`NET`], reaches it through the port mapping, removes
/// it and checks that nothing is left.
fn serve_and_remove(label: &str, plugins: &Path) {
    if let Some(tool) = missing_tool() {
        skip!("{tool} not installed");
    }
    let podman = Podman::new(label, plugins);
    let Some(rootfs) = rootfs(&podman.dir) else {
        skip!("busybox-static not installed (/bin/busybox must be a static binary)");
    };
    let id = start_web(&podman, &rootfs);

    let address = container_address(&podman);
    assert_eq!(
        address, "10.89.7.2",
        "the first address host-local hands out"
    );
    let data = podman.dir.join("data").join(NET);
    assert_eq!(
        std::fs::read_to_string(data.join(&address)).unwrap(),
        format!("{id}\r\neth0"),
        "host-local's reservation for the container"
    );
    assert_reads_libcni_cache(&podman, &id);
    assert_eq!(
        fetch(&podman.host, &format!("{address}:80")),
        PAGE,
        "straight to the container"
    );
    assert_eq!(
        fetch(&podman.host, &format!("{GATEWAY}:8080")),
        PAGE,
        "through the port mapping"
    );
    let rules = firewall(&podman.host);
    assert!(rules.contains(&id), "no per-container rules?\n{rules}");
    assert_eq!(veths(&podman.host).len(), 1, "the container's host veth");

    podman.ok(&["rm", "--force", "--time", "0", "web"]);
    assert_nothing_left(&podman, &id, &address);
}

/// podman's libcni wrote the cache file: our reader takes it as GC would.
fn assert_reads_libcni_cache(podman: &Podman, id: &str) {
    let cache = ResultCache::new(podman.dir.join("cache"));
    let entries = cache.cached_attachments(NET).expect("list the cache");
    assert_eq!(entries.len(), 1, "{entries:?}");
    let e = &entries[0];
    assert_eq!((e.container_id.as_str(), e.if_name.as_str()), (id, "eth0"));
    // libcni before 1.2 (podman 4.3 has 1.1.2) records no netns; later ones do.
    assert!(
        e.netns.is_empty() || e.netns.starts_with("/run/netns/"),
        "{}",
        e.netns
    );
    assert_eq!(
        e.result["ips"][0]["address"], "10.89.7.2/24",
        "{:?}",
        e.result
    );
    let list: Value = serde_json::from_slice(&e.config).expect("the cached config");
    assert_eq!(list["name"], NET);
    let result = cache
        .read_result(NET, id, "eth0")
        .unwrap()
        .expect("a result");
    assert_eq!(result["cniVersion"], "1.0.0");
}

/// The container's eth0 address, from podman and from the kernel (which must agree).
fn container_address(podman: &Podman) -> String {
    let inspect = podman.ok(&["inspect", "web"]);
    let inspect: Value = serde_json::from_str(&inspect).expect("podman inspect JSON");
    let net = &inspect[0]["NetworkSettings"]["Networks"][NET];
    assert_eq!(net["Gateway"], GATEWAY, "{net}");
    assert_eq!(net["IPPrefixLen"], 24, "{net}");
    let address = net["IPAddress"].as_str().expect("an address").to_string();
    let pid = inspect[0]["State"]["Pid"]
        .as_u64()
        .expect("a running container");
    let addrs = podman.host.run([
        "nsenter",
        &format!("--net=/proc/{pid}/ns/net"),
        "ip",
        "-j",
        "-4",
        "addr",
        "show",
        "eth0",
    ]);
    let addrs: Value = serde_json::from_str(&addrs).expect("ip -j");
    assert_eq!(addrs[0]["addr_info"][0]["local"], address.as_str());
    assert_eq!(addrs[0]["addr_info"][0]["prefixlen"], 24);
    address
}

/// `busybox wget -qO- http://TARGET/` from the fake host. (busybox 1.35's own `-T` timeout
/// segfaults, hence coreutils' `timeout`.)
fn fetch(host: &TestNs, target: &str) -> String {
    let url = format!("http://{target}/");
    host.run(["timeout", "10", "busybox", "wget", "-qO-", &url])
}

/// `iptables-save` (both address families) and `nft list ruleset` in the fake host.
fn firewall(host: &TestNs) -> String {
    host.sh("iptables-save; ip6tables-save; nft list ruleset")
}

/// The names of the veths in the fake host.
fn veths(host: &TestNs) -> Vec<String> {
    let links = host.ip_json(&["-d", "link", "show"]);
    links
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["linkinfo"]["info_kind"] == "veth")
        .map(|l| l["ifname"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn assert_nothing_left(podman: &Podman, id: &str, address: &str) {
    assert_eq!(
        podman.ok(&["ps", "--all", "--quiet"]),
        "",
        "containers left"
    );
    let veths = veths(&podman.host);
    assert!(veths.is_empty(), "veths left in the fake host: {veths:?}");
    let data = podman.dir.join("data").join(NET);
    let left: Vec<String> = crate::support::ipam::snapshot(&data).into_keys().collect();
    assert!(
        left.iter()
            .all(|f| f == "lock" || f.starts_with("last_reserved_ip")),
        "host-local reservations left: {left:?}"
    );
    let rules = firewall(&podman.host);
    for needle in [id, address, "8080", "CNI-DN-"] {
        let hits: Vec<&str> = rules.lines().filter(|l| l.contains(needle)).collect();
        assert!(hits.is_empty(), "rules mentioning {needle} left: {hits:#?}");
    }
    let cache = crate::support::ipam::tree(&podman.dir.join("cache"));
    assert_eq!(cache, ["results"], "cache files left");
    let netns = podman.host.run([
        "nsenter",
        &format!("--mount={}", podman.host.mount_path().display()),
        "ls",
        "-A",
        "/run/netns",
    ]);
    assert_eq!(netns.trim(), "", "podman's netns left");
}

#[test]
fn podman_runs_a_container_on_our_plugins() {
    if !require_root() {
        return;
    }
    let farm = Farm::shared();
    for needed in ["bridge", "host-local", "portmap"] {
        if !farm.applet(needed).exists() {
            skip!("this build has no {needed} applet yet");
        }
    }
    serve_and_remove("ours", farm.dir());
}

#[test]
fn podman_runs_a_container_on_the_reference_plugins() {
    if !require_root() {
        return;
    }
    let reference = Path::new("/usr/lib/cni");
    if !reference.join("bridge").is_file() || !reference.join("portmap").is_file() {
        skip!("reference plugins not installed");
    }
    serve_and_remove("reference", reference);
}

/// One network, two interfaces: `multi` with eth0 on bridge + host-local + portmap and net1 on
/// a second bridge standing in for the LAN.
fn multi_network(dir: &TempDir) -> Value {
    json!({"cniVersion": "1.0.0", "name": NET, "plugins": [
        {"type": "multi", "capabilities": {"portMappings": true}, "attachments": [
            {"ifname": "eth0", "plugins": [
                {"type": "bridge", "bridge": "pmbr0", "isGateway": true, "ipMasq": true,
                 "ipam": {"type": "host-local", "subnet": "10.89.7.0/24",
                          "dataDir": dir.join("data")}},
                {"type": "portmap", "capabilities": {"portMappings": true}}]},
            {"ifname": "net1", "plugins": [
                {"type": "bridge", "bridge": "pmlan0", "isGateway": true,
                 "ipam": {"type": "host-local", "subnet": "10.89.8.0/24",
                          "dataDir": dir.join("data")}}]}]}]})
}

#[test]
fn podman_runs_a_container_with_two_interfaces_from_one_network() {
    if !require_root() {
        return;
    }
    if let Some(tool) = missing_tool() {
        skip!("{tool} not installed");
    }
    let podman = Podman::with_network("multi", Farm::shared().dir(), multi_network);
    let Some(rootfs) = rootfs(&podman.dir) else {
        skip!("busybox-static not installed (/bin/busybox must be a static binary)");
    };
    start_web(&podman, &rootfs);

    let address = container_address(&podman);
    assert_eq!(address, "10.89.7.2");
    // Inside the container, as its own tools see it: both interfaces with their addresses.
    let inside = podman.ok(&["exec", "web", "/bin/ip", "-4", "-o", "addr"]);
    assert!(
        inside.contains("eth0") && inside.contains("10.89.7.2/24"),
        "{inside}"
    );
    assert!(
        inside.contains("net1") && inside.contains("10.89.8.2/24"),
        "{inside}"
    );
    assert_eq!(
        fetch(&podman.host, &format!("{GATEWAY}:8080")),
        PAGE,
        "through the port mapping on eth0"
    );
    assert_eq!(fetch(&podman.host, "10.89.8.2:80"), PAGE, "over net1");

    podman.ok(&["rm", "--force", "--time", "0", "web"]);
    assert_eq!(
        podman.ok(&["ps", "--all", "--quiet"]),
        "",
        "containers left"
    );
    assert!(veths(&podman.host).is_empty(), "veths left");
    for sub in ["pmnet-eth0", "pmnet-net1"] {
        let data = podman.dir.join("data").join(sub);
        let left: Vec<String> = crate::support::ipam::snapshot(&data).into_keys().collect();
        assert!(
            left.iter()
                .all(|f| f == "lock" || f.starts_with("last_reserved_ip")),
            "{sub}: reservations left: {left:?}"
        );
    }
    let cache = podman.dir.join("cache");
    let files: Vec<String> = crate::support::ipam::tree(&cache)
        .into_iter()
        .filter(|p| cache.join(p).is_file())
        .collect();
    assert!(files.is_empty(), "cache files left: {files:?}");
}
