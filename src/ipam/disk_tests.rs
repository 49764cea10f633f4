//! DiskStore tests in temp dirs: exact bytes, reference-written files, flock across handles,
//! and path-escape rejection.

use super::*;
use crate::ipam::allocator::{allocate, release};
use crate::ipam::range::{Range, RangeSet};
use crate::ipam::store::with_lock;
use crate::ipam::test_support::TempDir;
use std::os::unix::fs::PermissionsExt;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn set(subnet: &str) -> RangeSet {
    RangeSet::new(vec![
        Range::new(subnet.parse().unwrap(), None, None, None).unwrap(),
    ])
    .unwrap()
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn files_are_byte_compatible() {
    let tmp = TempDir::new("disk-format");
    let mut s = DiskStore::open(tmp.path(), "mynet").unwrap();
    let sets = [set("10.1.0.0/24"), set("2001:db8:1::/64")];
    allocate(&mut s, &sets, "cid1", "eth0", &[]).unwrap();
    let dir = tmp.path().join("mynet");
    assert_eq!(fs::read(dir.join("10.1.0.2")).unwrap(), b"cid1\r\neth0");
    assert_eq!(
        fs::read(dir.join("2001:db8:1::2")).unwrap(),
        b"cid1\r\neth0"
    );
    assert_eq!(
        fs::read(dir.join("last_reserved_ip.0")).unwrap(),
        b"10.1.0.2"
    );
    assert_eq!(
        fs::read(dir.join("last_reserved_ip.1")).unwrap(),
        b"2001:db8:1::2"
    );
    assert_eq!(fs::read(dir.join("lock")).unwrap(), b"");
    assert_eq!(mode(&dir.join("10.1.0.2")), 0o600);
    assert_eq!(mode(&dir.join("last_reserved_ip.0")), 0o600);
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "10.1.0.2",
            "2001:db8:1::2",
            "last_reserved_ip.0",
            "last_reserved_ip.1",
            "lock"
        ],
        "no temp files left"
    );
}

/// State as the Go plugin leaves it (current and legacy formats) is read and released.
#[test]
fn reads_and_releases_reference_state() {
    let tmp = TempDir::new("disk-legacy");
    let dir = tmp.path().join("net1");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("10.1.0.5"), "go-cid\r\neth0").unwrap();
    fs::write(dir.join("10.1.0.6"), "old-cid").unwrap();
    fs::write(dir.join("10.1.0.7"), "old-cid\n").unwrap();
    fs::write(dir.join("last_reserved_ip.0"), "10.1.0.7").unwrap();
    fs::write(dir.join("lock"), "").unwrap();
    fs::write(dir.join("notes.txt"), "go-cid\r\neth0").unwrap();
    let mut s = DiskStore::open_existing(tmp.path(), "net1")
        .unwrap()
        .unwrap();
    let all = s.list().unwrap();
    assert_eq!(all.len(), 3, "only address-named files: {all:?}");
    assert_eq!(
        s.get_by_id("old-cid", "anything").unwrap(),
        vec![ip("10.1.0.6"), ip("10.1.0.7")]
    );
    assert_eq!(s.last_reserved_ip(0), Some(ip("10.1.0.7")));
    // Round robin continues after the Go plugin's last address.
    let got = allocate(&mut s, &[set("10.1.0.0/24")], "new", "eth0", &[]).unwrap();
    assert_eq!(got[0].address.to_string(), "10.1.0.8/24");
    assert_eq!(
        release(&mut s, "go-cid", "eth0").unwrap(),
        vec![ip("10.1.0.5")]
    );
    assert_eq!(
        release(&mut s, "old-cid", "eth0").unwrap(),
        vec![ip("10.1.0.6"), ip("10.1.0.7")]
    );
    assert!(
        dir.join("notes.txt").exists()
            && dir.join("lock").exists()
            && dir.join("last_reserved_ip.0").exists()
    );
}

/// `last_reserved_ip.N` is overwritten in place: a shorter address leaves no tail behind.
#[test]
fn last_reserved_ip_is_rewritten_exactly() {
    let tmp = TempDir::new("disk-last");
    let dir = tmp.path().join("net1");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("last_reserved_ip.0"), "10.1.0.254").unwrap();
    let mut s = DiskStore::open(tmp.path(), "net1").unwrap();
    let got = allocate(&mut s, &[set("10.1.0.0/24")], "c1", "eth0", &[]).unwrap();
    assert_eq!(got[0].address.to_string(), "10.1.0.2/24", "wrapped around");
    assert_eq!(
        fs::read(dir.join("last_reserved_ip.0")).unwrap(),
        b"10.1.0.2"
    );
    let got = allocate(&mut s, &[set("10.1.0.0/24")], "c2", "eth0", &[]).unwrap();
    assert_eq!(got[0].address.to_string(), "10.1.0.3/24");
    assert_eq!(
        fs::read(dir.join("last_reserved_ip.0")).unwrap(),
        b"10.1.0.3"
    );
}

#[test]
fn missing_directory_is_not_created_for_cleanup() {
    let tmp = TempDir::new("disk-missing");
    assert!(
        DiskStore::open_existing(tmp.path(), "never")
            .unwrap()
            .is_none()
    );
    assert!(!tmp.path().join("never").exists());
    fs::write(tmp.path().join("afile"), "").unwrap();
    assert!(DiskStore::open_existing(tmp.path(), "afile").is_err());
}

#[test]
fn path_escapes_are_rejected_and_write_nothing() {
    let tmp = TempDir::new("disk-escape");
    let data = tmp.path().join("data");
    fs::create_dir_all(&data).unwrap();
    for bad in ["..", "../evil", "a/b", "/abs", ".hidden", ""] {
        let e = DiskStore::open(&data, bad).unwrap_err();
        assert_eq!(crate::error::code_of(&e), 7, "{bad}");
        assert!(DiskStore::open_existing(&data, bad).is_err(), "{bad}");
    }
    let mut s = DiskStore::open(&data, "ok").unwrap();
    for (id, ifname) in [
        ("..", "eth0"),
        ("a/../../x", "eth0"),
        ("c", "../e"),
        ("c", "."),
        ("c\r\nx", "eth0"),
        (" ", "eth0"),
    ] {
        let e = with_lock(&mut s, |s| s.reserve(id, ifname, ip("10.0.0.2"), 0)).unwrap_err();
        assert_eq!(crate::error::code_of(&e), 4, "{id:?} {ifname:?}");
    }
    let mut outside: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    outside.sort();
    assert_eq!(outside, ["data"]);
    let inside: Vec<_> = fs::read_dir(data.join("ok"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(inside, ["lock"]);
}

/// 64 threads, each with its own handle (its own flock fd), reserve from one small pool.
#[test]
fn concurrent_handles_get_distinct_addresses() {
    let tmp = TempDir::new("disk-concurrent");
    let root = tmp.path().to_path_buf();
    let sets = [set("10.9.0.0/24")];
    let handles: Vec<_> = (0..64)
        .map(|i| {
            let (root, sets) = (root.clone(), sets.clone());
            std::thread::spawn(move || {
                let mut s = DiskStore::open(&root, "race").unwrap();
                allocate(&mut s, &sets, &format!("c{i}"), "eth0", &[]).unwrap()[0]
                    .address
                    .addr()
            })
        })
        .collect();
    let mut got: Vec<IpAddr> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 64, "every thread got its own address");
    let s = DiskStore::open_existing(&root, "race").unwrap().unwrap();
    assert_eq!(s.list().unwrap().len(), 64);
}

/// The lock really excludes: a second handle blocks until the first unlocks.
#[test]
fn lock_excludes_other_handles() {
    let tmp = TempDir::new("disk-lock");
    let mut a = DiskStore::open(tmp.path(), "n").unwrap();
    a.lock().unwrap();
    let root = tmp.path().to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        let mut b = DiskStore::open(&root, "n").unwrap();
        b.lock().unwrap();
        tx.send(()).unwrap();
        b.unlock().unwrap();
    });
    assert!(
        rx.recv_timeout(std::time::Duration::from_millis(200))
            .is_err(),
        "second handle got the lock"
    );
    a.unlock().unwrap();
    rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
    t.join().unwrap();
}

/// A named temporary file of a writer killed between write and link (what the named-file
/// fallback, or an older version of this store, could leave) is swept by the next listing; a
/// live writer's is kept.
#[test]
fn orphaned_temp_files_of_dead_writers_are_swept() {
    let tmp = TempDir::new("disk-orphans");
    let mut s = DiskStore::open(tmp.path(), "mynet").unwrap();
    let dir = tmp.path().join("mynet");
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let orphan = dir.join(format!(".tmp.{dead}.0"));
    let live = dir.join(format!(".tmp.{}.7", std::process::id()));
    let foreign = dir.join(".tmp.notapid");
    for f in [&orphan, &live, &foreign] {
        fs::write(f, "cid9\r\neth0").unwrap();
    }
    allocate(&mut s, &[set("10.1.0.0/24")], "cid1", "eth0", &[]).unwrap();
    assert!(!orphan.exists(), "a dead writer's temp file stays");
    assert!(
        live.exists() && foreign.exists(),
        "only dead writers' files go"
    );
    assert_eq!(s.list().unwrap().len(), 1);
}

/// The unnamed-file write is exclusive: linking onto an existing reservation fails as
/// AlreadyExists and leaves the existing file and the directory as they were.
#[test]
fn exclusive_create_never_overwrites() {
    let tmp = TempDir::new("disk-excl");
    let s = DiskStore::open(tmp.path(), "mynet").unwrap();
    let target = s.dir().join("10.1.0.9");
    assert!(s.create_exclusive(&target, "a\r\neth0").unwrap());
    assert!(!s.create_exclusive(&target, "b\r\neth0").unwrap());
    assert_eq!(fs::read(&target).unwrap(), b"a\r\neth0");
    let names: Vec<String> = fs::read_dir(s.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["10.1.0.9"]);
}
