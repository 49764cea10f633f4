//! Temporary files whose writer was killed between writing them and moving them into place
//! (SIGKILL from a kubelet timeout, the OOM killer, a node shutdown). Writers name such files
//! `<prefix><pid><sep><n>`; a file whose writer no longer exists is an orphan that the next
//! writer or DEL may remove. The reference leaks such files forever (issue 15's kill test).

/// Whether `name` is `<prefix><pid><sep>...` and process `pid` no longer exists. A pid reused
/// by another process only delays the sweep; a name of any other shape is never an orphan.
pub fn is_orphan(name: &str, prefix: &str, sep: char) -> bool {
    let Some(rest) = name.strip_prefix(prefix) else {
        return false;
    };
    let Some(pid) = rest.split(sep).next().and_then(|p| p.parse::<i32>().ok()) else {
        return false;
    };
    pid > 0
        && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
            == Err(nix::errno::Errno::ESRCH)
}

/// Removes the orphans named `<prefix><pid><sep>...` in `dir`; errors are ignored (a sweep
/// is housekeeping, never a reason to fail the call that makes it).
pub fn sweep(dir: &std::path::Path, prefix: &str, sep: char) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name()
            .to_str()
            .is_some_and(|n| is_orphan(n, prefix, sep))
        {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dead_writers_files_are_orphans() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let me = std::process::id();
        assert!(is_orphan(&format!(".tmp.{dead}.3"), ".tmp.", '.'));
        assert!(!is_orphan(&format!(".tmp.{me}.3"), ".tmp.", '.'));
        assert!(is_orphan(
            &format!(".net-c1-eth0.tmp-{dead}-0"),
            ".net-c1-eth0.tmp-",
            '-'
        ));
        for other in [".tmp.x.1", ".tmp.", "10.1.0.2", ".tmp.0.1", ".tmp.-5.1"] {
            assert!(!is_orphan(other, ".tmp.", '.'), "{other}");
        }
    }
}
