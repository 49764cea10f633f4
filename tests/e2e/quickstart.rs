//! README's quick start as far as it goes without the network: `make demo` and `make test`
//! run the deps step (`.ci/deps`) first, and the deps step names exactly the packages of
//! `.ci/packages` whose probe is missing. Probes are hidden in a throwaway mount namespace
//! (`unshare -m`, private propagation: a bind mount over a command, a tmpfs over
//! /usr/lib/cni), so nothing is installed and the machine is untouched; `--check` reports,
//! and the real mode refuses to install as a non-root user or without `apt-get`, naming the
//! packages to install by hand. Each line's probe is also checked to belong to its package
//! (`dpkg-query -S`), so the list cannot name the wrong package.

use crate::support::require_root;
use std::path::Path;
use std::process::{Command, Output};

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const PING_WHY: &str = "deps: would install iputils-ping for make test (no ping: ";
const CNI_WHY: &str =
    "deps: would install containernetworking-plugins for make test (no /usr/lib/cni/bridge: ";

/// Runs `script` (sh) in the repository inside a private mount namespace after `hide`.
fn in_mount_ns(hide: &str, script: &str) -> Output {
    let full = format!("set -e; {hide}\nset +e; cd {REPO} && {script}");
    Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &full])
        .env_remove("DEPS_PACKAGES")
        .output()
        .expect("run unshare -m")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Shell that hides the `ping` command and the reference plugins.
fn hide_ping_and_cni() -> String {
    let ping = which("ping");
    format!(
        "mount --bind /dev/null {ping}; mount -t tmpfs none /usr/lib/cni; \
         ! command -v ping >/dev/null || {{ echo 'ping still visible' >&2; exit 9; }}"
    )
}

/// The real path of a command (what a bind mount must cover).
fn which(cmd: &str) -> String {
    let out = Command::new("sh")
        .args(["-c", &format!("readlink -f \"$(command -v {cmd})\"")])
        .output()
        .unwrap();
    let p = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(!p.is_empty() && Path::new(&p).exists(), "{cmd} not found");
    p
}

#[test]
fn make_demo_and_make_test_run_the_deps_step_first() {
    for target in ["demo", "test"] {
        let out = Command::new("make")
            .args(["-n", "-C", REPO, target])
            .output()
            .unwrap();
        let plan = String::from_utf8_lossy(&out.stdout);
        let first = plan.lines().find(|l| !l.starts_with("make"));
        assert_eq!(
            first.map(str::trim),
            Some(format!("./.ci/deps {target}").as_str()),
            "make {target} must start with its deps step:\n{plan}"
        );
    }
}

#[test]
fn check_names_exactly_the_packages_whose_probe_is_missing() {
    if !require_root() {
        return;
    }
    let all_there = in_mount_ns("true", "./.ci/deps --check");
    let (out, err) = text(&all_there);
    assert!(all_there.status.success(), "{out}{err}");
    assert_eq!(out, "deps: everything make test needs is installed\n");

    let hidden = in_mount_ns(&hide_ping_and_cni(), "./.ci/deps --check test");
    let (out, err) = text(&hidden);
    assert_eq!(hidden.status.code(), Some(1), "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}{err}");
    assert!(lines[0].starts_with(PING_WHY), "{out}");
    assert!(lines[1].starts_with(CNI_WHY), "{out}");
    assert!(
        lines[0].contains("real traffic"),
        "the reason comes from .ci/packages: {out}"
    );

    // make demo needs only the `demo` lines: ping, not the reference plugins.
    let demo = in_mount_ns(&hide_ping_and_cni(), "./.ci/deps --check demo");
    let (out, _) = text(&demo);
    assert_eq!(demo.status.code(), Some(1), "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.starts_with("deps: would install iputils-ping for make demo (no ping: "));
    let cni_only = in_mount_ns(
        "mount -t tmpfs none /usr/lib/cni",
        "./.ci/deps --check demo",
    );
    assert!(cni_only.status.success(), "{:?}", text(&cni_only));
}

#[test]
fn without_root_or_apt_it_names_the_packages_to_install_by_hand() {
    if !require_root() {
        return;
    }
    let want = "apt-get install --no-install-recommends iputils-ping containernetworking-plugins";
    let nobody = in_mount_ns(
        &hide_ping_and_cni(),
        "setpriv --reuid 65534 --regid 65534 --clear-groups ./.ci/deps test",
    );
    let (out, err) = text(&nobody);
    assert_eq!(nobody.status.code(), Some(1), "{out}{err}");
    assert!(
        err.contains("deps: not root") && err.contains(want),
        "{err}"
    );
    assert!(!out.contains("installing"), "{out}");

    let apt = which("apt-get");
    let no_apt = in_mount_ns(
        &format!("{}; mount --bind /dev/null {apt}", hide_ping_and_cni()),
        "./.ci/deps test",
    );
    let (out, err) = text(&no_apt);
    assert_eq!(no_apt.status.code(), Some(1), "{out}{err}");
    assert!(
        err.contains("no apt-get here") && err.contains(want),
        "{err}"
    );
}

#[test]
fn each_probe_belongs_to_its_package() {
    if !require_root() {
        return;
    }
    let list = std::fs::read_to_string(format!("{REPO}/.ci/packages")).unwrap();
    for line in list
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let f: Vec<&str> = line.split('\t').collect();
        assert!(f.len() >= 4, "malformed .ci/packages line: {line:?}");
        assert!(matches!(f[2], "demo" | "test"), "{line:?}");
        let path = if f[1].starts_with('/') {
            f[1].to_string()
        } else {
            which(f[1])
        };
        let owner = Command::new("dpkg-query")
            .args(["-S", &path])
            .output()
            .unwrap();
        // dpkg records /bin and /usr/bin paths as shipped; try the /usr-less form too.
        let owner = if owner.status.success() {
            owner
        } else {
            let short = path.trim_start_matches("/usr");
            Command::new("dpkg-query")
                .args(["-S", short])
                .output()
                .unwrap()
        };
        let text = String::from_utf8_lossy(&owner.stdout);
        assert!(
            text.split(':')
                .next()
                .is_some_and(|p| p.split(", ").any(|p| p == f[0])),
            "{}: probe {path} belongs to {text:?}, not {}",
            f[1],
            f[0]
        );
    }
}
