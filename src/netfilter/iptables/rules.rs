//! iptables rules as data: a [`Rule`] is a chain plus argument tokens in the canonical order
//! `iptables-save` prints them (matches, then `-m comment --comment ...`, then `-j TARGET`);
//! a [`Change`] renders as one `iptables-restore --noflush` input; [`Saved`] parses
//! `iptables-save -t <table>` output.
//!
//! Quoting follows iptables itself: values are written like `xtables_save_string` (quoted
//! with `"` when they hold anything but `[A-Za-z0-9_-]`, with `"`, `\` and `'` escaped) and
//! read back like iptables-restore's `add_param_to_argv`, so a rule read from `iptables-save`
//! renders to the same text and compares equal token by token.
//!
//! Note: with `--noflush`, declaring an existing user chain (`:CHAIN - [0:0]`) flushes it.

use anyhow::{Result, bail};
use std::borrow::Cow;
use std::fmt::Write;

/// One rule: its chain and its arguments (unquoted tokens).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The chain holding the rule.
    pub chain: String,
    /// Match and target arguments, e.g. `["-d", "10.0.0.0/24", "-j", "ACCEPT"]`.
    pub args: Vec<String>,
}

impl Rule {
    /// A rule of `chain` with `args`.
    pub fn new<S: Into<String>>(chain: &str, args: impl IntoIterator<Item = S>) -> Rule {
        Rule {
            chain: chain.into(),
            args: args.into_iter().map(Into::into).collect(),
        }
    }

    /// The arguments as `iptables-save` writes them.
    pub fn spec(&self) -> String {
        let mut out = String::new();
        for (i, a) in self.args.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            let after_comment = i > 0 && self.args[i - 1] == "--comment";
            out.push_str(&if after_comment {
                save_string(a)
            } else {
                quote_if_needed(a)
            });
        }
        out
    }

    /// The value following `flag` (`-j`, `--comment`, ...).
    pub fn value_of(&self, flag: &str) -> Option<&str> {
        let i = self.args.iter().position(|a| a == flag)?;
        self.args.get(i + 1).map(String::as_str)
    }

    /// The jump target (`-j X`).
    pub fn target(&self) -> Option<&str> {
        self.value_of("-j")
    }
}

/// `xtables_save_string`: bare when only `[A-Za-z0-9_-]`, else double-quoted with `"`, `\`
/// and `'` escaped by a backslash.
pub fn save_string(v: &str) -> Cow<'_, str> {
    let bare = !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        return Cow::Borrowed(v);
    }
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        if matches!(c, '"' | '\\' | '\'') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    Cow::Owned(out)
}

/// Quotes only what iptables-restore's tokenizer would otherwise split or unescape.
fn quote_if_needed(v: &str) -> Cow<'_, str> {
    if v.is_empty() || v.contains([' ', '\t', '"', '\\', '\'', '\n']) {
        save_string(v)
    } else {
        Cow::Borrowed(v)
    }
}

/// Splits one restore/save line into tokens like iptables-restore (`"` quotes, `\` escapes
/// the next character inside quotes, blanks separate).
pub fn split_args(line: &str) -> Result<Vec<String>> {
    let (mut out, mut cur) = (Vec::new(), String::new());
    let (mut quoted, mut escaped, mut had_quotes) = (false, false, false);
    for c in line.chars() {
        match (quoted, escaped, c) {
            (true, true, c) => {
                cur.push(c);
                escaped = false;
            }
            (true, false, '\\') => escaped = true,
            (true, false, '"') => quoted = false,
            (true, false, c) => cur.push(c),
            (false, _, '"') => (quoted, had_quotes) = (true, true),
            (false, _, ' ' | '\t' | '\n') => {
                if !cur.is_empty() || had_quotes {
                    out.push(std::mem::take(&mut cur));
                }
                had_quotes = false;
            }
            (false, _, c) => cur.push(c),
        }
    }
    if quoted {
        bail!("unterminated quote in {line:?}");
    }
    if !cur.is_empty() || had_quotes {
        out.push(cur);
    }
    Ok(out)
}

/// One line of a change.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Append(Rule),
    Insert(Rule, u32),
    Delete(Rule),
    DeleteChain(String),
}

/// Changes to one table, applied by one `iptables-restore --noflush` run (atomically per
/// table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    table: String,
    declare: Vec<String>,
    ops: Vec<Op>,
}

impl Change {
    /// An empty change of `table` (`nat`, `filter`, ...).
    pub fn new(table: &str) -> Change {
        Change {
            table: table.into(),
            declare: Vec::new(),
            ops: Vec::new(),
        }
    }

    /// The table changed.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.declare.is_empty() && self.ops.is_empty()
    }

    /// Declares a user chain: creates it, or **flushes** it when it exists.
    pub fn declare_chain(&mut self, chain: &str) {
        if !self.declare.iter().any(|c| c == chain) {
            self.declare.push(chain.into());
        }
    }

    /// `-A`: appends `rule` (once per change).
    pub fn append(&mut self, rule: Rule) {
        self.push(Op::Append(rule));
    }

    /// `-I chain <pos>`: inserts `rule` at 1-based position `pos` (once per change).
    pub fn insert(&mut self, rule: Rule, pos: u32) {
        self.push(Op::Insert(rule, pos));
    }

    /// `-D`: deletes the first rule equal to `rule` (it must exist).
    pub fn delete(&mut self, rule: Rule) {
        self.push(Op::Delete(rule));
    }

    /// `-X`: deletes a user chain (it must exist, be empty and unreferenced).
    pub fn delete_chain(&mut self, chain: &str) {
        self.push(Op::DeleteChain(chain.into()));
    }

    fn push(&mut self, op: Op) {
        if !self.ops.contains(&op) {
            self.ops.push(op);
        }
    }

    /// True when `rule` is already added (appended or inserted) by this change.
    pub fn adds(&self, rule: &Rule) -> bool {
        self.ops
            .iter()
            .any(|op| matches!(op, Op::Append(r) | Op::Insert(r, _) if r == rule))
    }

    /// The `iptables-restore` input.
    pub fn render(&self) -> String {
        let mut out = format!("*{}\n", self.table);
        for c in &self.declare {
            let _ = writeln!(out, ":{c} - [0:0]");
        }
        for op in &self.ops {
            let _ = match op {
                Op::Append(r) => writeln!(out, "-A {} {}", r.chain, r.spec()),
                Op::Insert(r, pos) => writeln!(out, "-I {} {pos} {}", r.chain, r.spec()),
                Op::Delete(r) => writeln!(out, "-D {} {}", r.chain, r.spec()),
                Op::DeleteChain(c) => writeln!(out, "-X {c}"),
            };
        }
        out.push_str("COMMIT\n");
        out
    }
}

/// One table as `iptables-save` printed it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Saved {
    /// Every chain, built-in ones included, in save order.
    pub chains: Vec<String>,
    /// Every rule, in save order (per chain, rule order).
    pub rules: Vec<Rule>,
}

impl Saved {
    /// Parses the section of `table` in `iptables-save` output.
    pub fn parse(text: &str, table: &str) -> Result<Saved> {
        let mut saved = Saved::default();
        let mut current: Option<&str> = None;
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(t) = line.strip_prefix('*') {
                current = Some(t);
            } else if line == "COMMIT" {
                current = None;
            } else if current != Some(table) {
                continue;
            } else if let Some(decl) = line.strip_prefix(':') {
                saved.chains.push(
                    decl.split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_string(),
                );
            } else if let Some(rest) = line.strip_prefix("-A ") {
                let mut args = split_args(rest)?;
                if args.is_empty() {
                    bail!("iptables-save: rule without a chain: {line:?}");
                }
                let chain = args.remove(0);
                saved.rules.push(Rule { chain, args });
            } else {
                bail!("iptables-save: unexpected line {line:?}");
            }
        }
        Ok(saved)
    }

    /// True when `chain` exists.
    pub fn has_chain(&self, chain: &str) -> bool {
        self.chains.iter().any(|c| c == chain)
    }

    /// True when an identical rule exists.
    pub fn contains(&self, rule: &Rule) -> bool {
        self.rules.contains(rule)
    }

    /// The rules of `chain`, in order.
    pub fn rules_in<'a>(&'a self, chain: &'a str) -> impl Iterator<Item = &'a Rule> + 'a {
        self.rules.iter().filter(move |r| r.chain == chain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_string_matches_xtables() {
        assert_eq!(save_string("abc-_9"), "abc-_9");
        assert_eq!(save_string(""), "\"\"");
        assert_eq!(save_string("x y"), "\"x y\"");
        assert_eq!(save_string(r#"a'b\c"d"#), r#""a\'b\\c\"d""#);
    }

    #[test]
    fn split_args_undoes_quoting() {
        let line = r#"POSTROUTING -s 10.0.0.0/24 -m comment --comment "a\'b\\c \"d\"" -j CNI-abc"#;
        let args = split_args(line).unwrap();
        assert_eq!(args[6], r#"a'b\c "d""#);
        assert_eq!(args.len(), 9);
        assert_eq!(split_args(r#"a "" b"#).unwrap(), ["a", "", "b"]);
        assert!(split_args("\"open").is_err());
    }

    #[test]
    fn spec_round_trips_through_split() {
        let r = Rule::new(
            "C",
            [
                "-d",
                "10.0.0.0/24",
                "-m",
                "comment",
                "--comment",
                "name: \"n\" id: \"x y\"",
                "-j",
                "ACCEPT",
            ],
        );
        assert_eq!(
            r.spec(),
            r#"-d 10.0.0.0/24 -m comment --comment "name: \"n\" id: \"x y\"" -j ACCEPT"#
        );
        assert_eq!(split_args(&r.spec()).unwrap(), r.args);
        assert_eq!(r.target(), Some("ACCEPT"));
        assert_eq!(r.value_of("--comment"), Some("name: \"n\" id: \"x y\""));
    }

    #[test]
    fn change_dedups_and_orders() {
        let mut c = Change::new("nat");
        assert!(c.is_empty());
        let r = Rule::new("X", ["-j", "RETURN"]);
        c.declare_chain("X");
        c.declare_chain("X");
        c.insert(r.clone(), 1);
        c.insert(r.clone(), 1);
        c.delete(Rule::new("POSTROUTING", ["-j", "X"]));
        c.delete_chain("Y");
        assert!(c.adds(&r));
        assert_eq!(
            c.render(),
            "*nat\n:X - [0:0]\n-I X 1 -j RETURN\n-D POSTROUTING -j X\n-X Y\nCOMMIT\n"
        );
    }

    #[test]
    fn parse_save_output() {
        let text = "# Generated by iptables-save v1.8.9\n*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j DROP\nCOMMIT\n\
                    *nat\n:POSTROUTING ACCEPT [3:180]\n:CNI-a - [0:0]\n\
                    -A POSTROUTING -s 10.0.0.5/32 -m comment --comment \"x y\" -j CNI-a\nCOMMIT\n# Completed\n";
        let s = Saved::parse(text, "nat").unwrap();
        assert_eq!(s.chains, ["POSTROUTING", "CNI-a"]);
        assert!(s.has_chain("CNI-a") && !s.has_chain("INPUT"));
        let r = Rule::new(
            "POSTROUTING",
            [
                "-s",
                "10.0.0.5/32",
                "-m",
                "comment",
                "--comment",
                "x y",
                "-j",
                "CNI-a",
            ],
        );
        assert!(s.contains(&r));
        assert_eq!(s.rules_in("POSTROUTING").count(), 1);
        assert!(Saved::parse("*nat\nbogus\n", "nat").is_err());
    }
}
