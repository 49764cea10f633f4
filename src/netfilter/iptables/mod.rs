//! The iptables backend: state is read with `iptables-save -t <table>` and changed with ONE
//! `iptables-restore -w 5 --noflush` run per table per change (`ip6tables-*` for IPv6), the
//! rendered text piped to its stdin. This is the project's one sanctioned exec: there is no
//! usable in-process x_tables API. Works the same with the `nft` and `legacy` flavours.
//!
//! The reference (go-iptables) runs one `iptables` process per rule; a restore is atomic per
//! table instead, and callers read the state first so that deleting what is already gone never
//! makes a restore fail.

pub mod rules;

pub use rules::{Change, Rule, Saved};

use super::IpFamily;
use anyhow::{Context, Result, bail};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Seconds iptables-restore waits for the xtables lock held by another writer.
const LOCK_WAIT_SECS: &str = "5";

/// iptables or ip6tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Iptables {
    family: IpFamily,
    flavour: &'static str,
}

impl Iptables {
    /// The tools of `family`.
    pub fn new(family: IpFamily) -> Iptables {
        Iptables {
            family,
            flavour: "",
        }
    }

    /// The `iptables-legacy-*` tools, whatever `iptables` points to (tests run both flavours).
    pub fn legacy(family: IpFamily) -> Iptables {
        Iptables {
            family,
            flavour: "-legacy",
        }
    }

    /// The family handled.
    pub fn family(&self) -> IpFamily {
        self.family
    }

    fn tool(&self, what: &str) -> String {
        match self.family {
            IpFamily::V4 => format!("iptables{}-{what}", self.flavour),
            IpFamily::V6 => format!("ip6tables{}-{what}", self.flavour),
        }
    }

    /// True when `*-restore` is on `PATH` and `*-save -t nat` works (the tools run and the
    /// kernel has the table). The reference asks `iptables` whether it can list a chain.
    pub fn usable(&self) -> bool {
        find_in_path(&self.tool("restore")).is_some() && self.save("nat").is_ok()
    }

    /// The current content of `table`.
    pub fn save(&self, table: &str) -> Result<Saved> {
        let tool = self.tool("save");
        let out = Command::new(&tool)
            .args(["-t", table])
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("run {tool}"))?;
        if !out.status.success() {
            bail!(
                "{tool} -t {table}: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let text =
            String::from_utf8(out.stdout).with_context(|| format!("{tool} printed non-UTF-8"))?;
        Saved::parse(&text, table).with_context(|| format!("parse {tool} -t {table}"))
    }

    /// Applies `change` with one `*-restore --noflush` run; nothing to do is not a run.
    pub fn restore(&self, change: &Change) -> Result<()> {
        if change.is_empty() {
            return Ok(());
        }
        let tool = self.tool("restore");
        let input = change.render();
        let mut child = Command::new(&tool)
            .args(["-w", LOCK_WAIT_SECS, "--noflush"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("run {tool}"))?;
        let mut stdin = child.stdin.take().context("restore stdin")?;
        let written = stdin.write_all(input.as_bytes());
        drop(stdin);
        let out = child
            .wait_with_output()
            .with_context(|| format!("wait for {tool}"))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            bail!(
                "{tool} --noflush: {}: {}; input was:\n{input}",
                out.status,
                err.trim()
            );
        }
        written.with_context(|| format!("write to {tool}"))
    }
}

/// The first executable file called `name` in the directories of `PATH`.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netfilter::oracle;

    #[test]
    fn tool_names_per_family() {
        assert_eq!(Iptables::new(IpFamily::V4).tool("save"), "iptables-save");
        assert_eq!(
            Iptables::new(IpFamily::V6).tool("restore"),
            "ip6tables-restore"
        );
        assert_eq!(
            Iptables::legacy(IpFamily::V6).tool("save"),
            "ip6tables-legacy-save"
        );
    }

    /// A change with awkward quoting survives restore and save unchanged, in both flavours,
    /// and a deletion read back from the state removes it.
    #[test]
    fn restore_save_round_trip() {
        let Some(_ns) = crate::testutil::fresh_netns("restore_save_round_trip") else {
            return;
        };
        for (ipt, save) in [
            (Iptables::new(IpFamily::V4), "iptables-save"),
            (Iptables::legacy(IpFamily::V4), "iptables-legacy-save"),
            (Iptables::new(IpFamily::V6), "ip6tables-save"),
        ] {
            if !oracle::have(save) {
                println!("skipped: {save} missing");
                continue;
            }
            let comment = r#"it's "quoted" \ and spaced"#;
            let rule = Rule::new(
                "CNI-T",
                ["-m", "comment", "--comment", comment, "-j", "RETURN"],
            );
            let mut add = Change::new("nat");
            add.declare_chain("CNI-T");
            add.append(rule.clone());
            ipt.restore(&add).unwrap();
            let saved = ipt.save("nat").unwrap();
            assert!(
                saved.has_chain("CNI-T") && saved.contains(&rule),
                "{saved:?}"
            );
            let line = format!("-A CNI-T {}", rule.spec());
            assert_eq!(
                oracle::nat_state(save),
                [":CNI-T - [0:0]".to_string(), line]
            );

            let mut del = Change::new("nat");
            del.delete(saved.rules_in("CNI-T").next().unwrap().clone());
            del.delete_chain("CNI-T");
            ipt.restore(&del).unwrap();
            assert!(oracle::nat_state(save).is_empty());
            assert!(
                ipt.restore(&del).is_err(),
                "deleting what is gone fails the restore"
            );
        }
    }

    #[test]
    fn find_in_path_finds_sh_only() {
        assert!(find_in_path("sh").is_some());
        assert!(find_in_path("no-such-binary-cni-multi").is_none());
    }
}
