//! doctor's human output: one aligned table per section, the verdict last.

use super::{InstalledKind, Report, Status};
use std::fmt::Write;

/// The report as text tables.
pub fn table(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "cni-multi doctor: plugins in {}, configurations in {}\n",
        r.cni_path.join(":"),
        r.conf_dir
    );
    let rows: Vec<[String; 3]> = r
        .checks
        .iter()
        .map(|c| [c.id.clone(), status_word(c.status).into(), c.detail.clone()])
        .collect();
    section(&mut s, "NODE", ["check", "status", "detail"], &rows);
    let rows: Vec<[String; 3]> = r
        .plugins
        .iter()
        .map(|p| {
            let target = p.target.as_ref().map(|t| format!(" -> {t}"));
            [
                p.name.clone(),
                kind_word(p.kind).into(),
                format!("{}{}", p.dir, target.unwrap_or_default()),
            ]
        })
        .collect();
    section(&mut s, "PLUGINS", ["plugin", "kind", "where"], &rows);
    let rows: Vec<[String; 3]> = r
        .applets
        .iter()
        .map(|a| {
            let can = if a.can_work { "yes" } else { "NO" };
            let mut why = vec![
                if a.installed {
                    "installed"
                } else {
                    "not installed"
                }
                .to_string(),
            ];
            if !a.missing.is_empty() {
                why.push(format!("missing {}", a.missing.join(", ")));
            }
            if !a.limited.is_empty() {
                why.push(format!(
                    "options that cannot work: {}",
                    a.limited.join(", ")
                ));
            }
            [a.name.clone(), can.into(), why.join("; ")]
        })
        .collect();
    section(&mut s, "APPLETS", ["type", "can work", "why"], &rows);
    configs(&mut s, r);
    s
}

fn configs(s: &mut String, r: &Report) {
    let _ = writeln!(s, "CONFIGURATIONS");
    if r.configs.is_empty() {
        let _ = writeln!(s, "  none in {}", r.conf_dir);
    }
    for c in &r.configs {
        let net = c.network.as_deref().unwrap_or("?");
        let verdict = if c.problems.is_empty() { "ok" } else { "FAIL" };
        let _ = writeln!(
            s,
            "  {}  network {net} ({})  {verdict}",
            c.file,
            c.plugins.join(", ")
        );
        for p in &c.problems {
            let _ = writeln!(s, "      {p}");
        }
    }
    let bad = r.configs.iter().filter(|c| !c.problems.is_empty()).count();
    let _ = match bad {
        0 => writeln!(s, "\nverdict: every configuration can work here"),
        n => writeln!(s, "\nverdict: {n} configuration(s) cannot work here"),
    };
}

/// A titled section with aligned columns; the last column is free text.
fn section(s: &mut String, title: &str, head: [&str; 3], rows: &[[String; 3]]) {
    let _ = writeln!(s, "{title}");
    if rows.is_empty() {
        let _ = writeln!(s, "  (none)\n");
        return;
    }
    let w0 = rows.iter().map(|r| r[0].len()).chain([head[0].len()]).max();
    let w1 = rows.iter().map(|r| r[1].len()).chain([head[1].len()]).max();
    let (w0, w1) = (w0.unwrap_or(0), w1.unwrap_or(0));
    let _ = writeln!(s, "  {:w0$}  {:w1$}  {}", head[0], head[1], head[2]);
    for r in rows {
        let _ = writeln!(s, "  {:w0$}  {:w1$}  {}", r[0], r[1], r[2]);
    }
    s.push('\n');
}

/// Upper case for what needs attention, so it stands out.
fn status_word(st: Status) -> &'static str {
    match st {
        Status::Ok => "ok",
        Status::Warn => "WARN",
        Status::Missing => "MISSING",
        Status::Error => "ERROR",
    }
}

fn kind_word(k: InstalledKind) -> &'static str {
    match k {
        InstalledKind::Ours => "ours",
        InstalledKind::OursUnknown => "OURS-UNKNOWN",
        InstalledKind::Foreign => "foreign",
        InstalledKind::Broken => "BROKEN",
        InstalledKind::NotExecutable => "NOT-EXECUTABLE",
    }
}
