//! Tests of `install.sh` in temp dirs (no root needed): idempotence, repair of wrong symlinks,
//! refusal to replace a foreign file (such as the reference's own `bridge`) unless `--force`,
//! removal of stale applets, and an uninstall that leaves foreign files alone. A fake binary
//! whose `--list` we choose stands in for cni-multi, so these run before any applet exists; one
//! test installs the real binary.

use crate::support::{TempDir, farm};
use std::ffi::OsStr;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Output;

/// Writes an executable that answers `--version` like cni-multi and `--list` with `applets`.
fn fake_binary(dir: &TempDir, file: &str, applets: &[&str]) -> PathBuf {
    let script = format!(
        "#!/bin/sh\ncase \"$1\" in\n--version) echo 'cni-multi 0.0.0-fake (CNI spec 1.1.0)' ;;\n\
         --list) printf '%s\\n' {} ;;\n*) exit 127 ;;\nesac\n",
        applets.join(" ")
    );
    let p = dir.write(file, script);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn install(prefix: &Path, extra: &[&OsStr]) -> Output {
    let mut args = vec![OsStr::new("--prefix"), prefix.as_os_str()];
    args.extend_from_slice(extra);
    farm::run_install(args)
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "install.sh failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every entry of `dir` as `name -> target` for symlinks and `name` for anything else, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            match std::fs::read_link(e.path()) {
                Ok(t) => format!("{name} -> {}", t.display()),
                Err(_) => name,
            }
        })
        .collect();
    v.sort();
    v
}

/// (inode, mtime) of every entry, to prove a re-run touched nothing.
fn stamps(dir: &Path) -> Vec<(String, u64, i64)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            (
                e.file_name().into_string().unwrap(),
                m.ino(),
                m.mtime_nsec() + m.mtime() * 1_000_000_000,
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn installs_the_real_binary_and_a_second_run_changes_nothing() {
    let dir = TempDir::new("install-real");
    let prefix = dir.join("bin");
    let bin = farm::binary().as_os_str();
    assert_ok(&install(&prefix, &[OsStr::new("--binary"), bin]));
    let mut want: Vec<String> = farm::applet_names()
        .iter()
        .map(|n| format!("{n} -> cni-multi"))
        .collect();
    want.push("cni-multi".into());
    want.sort();
    assert_eq!(listing(&prefix), want);
    let before = stamps(&prefix);
    let again = install(&prefix, &[OsStr::new("--binary"), bin]);
    assert_ok(&again);
    assert!(String::from_utf8_lossy(&again.stdout).contains("binary unchanged"));
    assert_eq!(stamps(&prefix), before, "a second run must change nothing");
}

#[test]
fn repairs_wrong_symlinks_and_removes_stale_ones() {
    let dir = TempDir::new("install-repair");
    let prefix = dir.join("bin");
    let old = fake_binary(&dir, "old", &["bridge", "gone", "loopback"]);
    assert_ok(&install(
        &prefix,
        &[OsStr::new("--binary"), old.as_os_str()],
    ));
    std::fs::remove_file(prefix.join("bridge")).unwrap();
    symlink("/somewhere/else/cni-multi", prefix.join("bridge")).unwrap();
    std::fs::remove_file(prefix.join("loopback")).unwrap();
    let new = fake_binary(&dir, "new", &["bridge", "loopback", "ptp"]);
    assert_ok(&install(
        &prefix,
        &[OsStr::new("--binary"), new.as_os_str()],
    ));
    assert_eq!(
        listing(&prefix),
        [
            "bridge -> cni-multi",
            "cni-multi",
            "loopback -> cni-multi",
            "ptp -> cni-multi"
        ]
    );
    assert_eq!(
        std::fs::read(prefix.join("cni-multi")).unwrap(),
        std::fs::read(&new).unwrap()
    );
}

#[test]
fn refuses_to_replace_a_foreign_file_unless_forced() {
    let dir = TempDir::new("install-foreign");
    let prefix = dir.join("bin");
    std::fs::create_dir(&prefix).unwrap();
    std::fs::write(prefix.join("bridge"), "the reference's own bridge").unwrap();
    symlink("/usr/lib/cni/loopback", prefix.join("loopback")).unwrap();
    let fake = fake_binary(&dir, "fake", &["bridge", "loopback", "ptp"]);
    let refused = install(&prefix, &[OsStr::new("--binary"), fake.as_os_str()]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("bridge") && err.contains("loopback") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        listing(&prefix),
        ["bridge", "loopback -> /usr/lib/cni/loopback"],
        "a refused install changes nothing"
    );
    assert_ok(&install(
        &prefix,
        &[
            OsStr::new("--binary"),
            fake.as_os_str(),
            OsStr::new("--force"),
        ],
    ));
    assert_eq!(
        listing(&prefix),
        [
            "bridge -> cni-multi",
            "cni-multi",
            "loopback -> cni-multi",
            "ptp -> cni-multi"
        ]
    );
}

#[test]
fn never_replaces_a_directory_even_when_forced() {
    let dir = TempDir::new("install-dir");
    let prefix = dir.join("bin");
    std::fs::create_dir_all(prefix.join("bridge")).unwrap();
    let fake = fake_binary(&dir, "fake", &["bridge"]);
    let out = install(
        &prefix,
        &[
            OsStr::new("--binary"),
            fake.as_os_str(),
            OsStr::new("--force"),
        ],
    );
    assert!(!out.status.success());
    assert!(prefix.join("bridge").is_dir());
    assert!(!prefix.join("cni-multi").exists());
}

#[test]
fn uninstall_removes_only_what_points_at_cni_multi() {
    let dir = TempDir::new("install-uninstall");
    let prefix = dir.join("bin");
    let fake = fake_binary(&dir, "fake", &["bridge", "loopback"]);
    assert_ok(&install(
        &prefix,
        &[OsStr::new("--binary"), fake.as_os_str()],
    ));
    std::fs::write(prefix.join("host-device"), "foreign").unwrap();
    symlink("/usr/lib/cni/ptp", prefix.join("ptp")).unwrap();
    assert_ok(&install(&prefix, &[OsStr::new("--uninstall")]));
    assert_eq!(listing(&prefix), ["host-device", "ptp -> /usr/lib/cni/ptp"]);
    assert_ok(&install(&prefix, &[OsStr::new("--uninstall")]));
}

#[test]
fn rejects_a_binary_that_is_not_cni_multi_and_bad_arguments() {
    let dir = TempDir::new("install-reject");
    let prefix = dir.join("bin");
    let out = install(&prefix, &[OsStr::new("--binary"), OsStr::new("/bin/true")]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not cni-multi"));
    let odd = fake_binary(&dir, "odd", &["'../escape'"]);
    assert!(
        !install(&prefix, &[OsStr::new("--binary"), odd.as_os_str()])
            .status
            .success()
    );
    assert!(!dir.join("escape").exists());
    assert!(!farm::run_install(["--no-such-flag"]).status.success());
    assert!(farm::run_install(["--help"]).status.success());
    assert!(!prefix.join("cni-multi").exists());
}
