//! `conditionsV4` / `conditionsV6` in nftables syntax, compiled to expressions so they can be
//! put in each container's own rules (the reference hands them to the `nft` binary and puts
//! them in the shared base chains, where the last ADD wins for every container).
//!
//! Without the `nft` binary only a subset of its grammar is understood, the matches that
//! make sense in front of a port mapping; anything else is a configuration error naming the
//! token. The condition strings are joined with spaces first, as knftables does, so one
//! string may hold several tokens. Supported, each with an optional `==` or `!=`:
//!
//! ```text
//! ip saddr|daddr <address>[/<prefix>]      (conditionsV4)
//! ip6 saddr|daddr <address>[/<prefix>]     (conditionsV6)
//! [meta] iifname|oifname <name>|"<name>"   (a trailing * matches a prefix)
//! [meta] mark <number>                     (decimal or 0x hex)
//! ```

use crate::netfilter::IpFamily;
use crate::netfilter::nftables::expr::{self, AddrField, CmpOp, Expr, REG_1};
use anyhow::{Result, anyhow, bail};
use ipnet::IpNet;
use std::net::IpAddr;

const META_MARK: u32 = 3;
const META_IIFNAME: u32 = 6;
const META_OIFNAME: u32 = 7;
const IFNAMSIZ: usize = 16;

/// Splits on blanks, keeping `"quoted strings"` whole (without the quotes).
fn tokenize(text: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' {
            chars.next();
            let s: String = chars.by_ref().take_while(|&c| c != '"').collect();
            out.push(s);
        } else {
            let mut s = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                s.push(c);
                chars.next();
            }
            out.push(s);
        }
    }
    if text.matches('"').count() % 2 == 1 {
        bail!("unterminated quote in nftables condition {text:?}");
    }
    Ok(out)
}

/// Compiles the conditions for a table of `family`.
pub fn compile(conditions: &[String], family: IpFamily) -> Result<Vec<Expr>> {
    let text = conditions.join(" ");
    let tokens = tokenize(&text)?;
    let mut out = Vec::new();
    let mut rest = tokens.as_slice();
    while !rest.is_empty() {
        let (exprs, used) = one(rest, family).map_err(|e| {
            anyhow!("nftables condition {text:?}: {e:#} (supported: ip/ip6 saddr/daddr, iifname, oifname, mark)")
        })?;
        out.extend(exprs);
        rest = &rest[used..];
    }
    Ok(out)
}

/// An optional `==`/`!=` followed by a value: the operator, the value and tokens used.
fn op_value(t: &[String]) -> Result<(CmpOp, &str, usize)> {
    let (op, at) = match t.first().map(String::as_str) {
        Some("==") | Some("eq") => (CmpOp::Eq, 1),
        Some("!=") | Some("ne") => (CmpOp::Neq, 1),
        _ => (CmpOp::Eq, 0),
    };
    let v = t.get(at).ok_or_else(|| anyhow!("value missing"))?;
    Ok((op, v, at + 1))
}

/// One match at the start of `t`: its expressions and how many tokens it took.
fn one(t: &[String], family: IpFamily) -> Result<(Vec<Expr>, usize)> {
    let word = t[0].as_str();
    let (key, skip) = match (word, t.get(1).map(String::as_str)) {
        ("meta", Some(k)) => (k, 2),
        (k, _) => (k, 1),
    };
    match key {
        "ip" | "ip6" => {
            let (fam, fam_name) = if key == "ip" {
                (IpFamily::V4, "conditionsV4")
            } else {
                (IpFamily::V6, "conditionsV6")
            };
            if fam != family {
                bail!("`{key}` matches do not belong in the other family (use {fam_name})");
            }
            let field = match t.get(1).map(String::as_str) {
                Some("saddr") => AddrField::Saddr,
                Some("daddr") => AddrField::Daddr,
                other => bail!("`{key} {}` is not supported", other.unwrap_or("")),
            };
            let (op, v, used) = op_value(&t[2..])?;
            let net = parse_net(v, family)?;
            Ok((expr::addr_match(field, op, &net), 2 + used))
        }
        "iifname" | "oifname" => {
            let (op, v, used) = op_value(&t[skip..])?;
            let meta = if key == "iifname" {
                META_IIFNAME
            } else {
                META_OIFNAME
            };
            Ok((ifname_match(meta, op, v)?, skip + used))
        }
        "mark" => {
            let (op, v, used) = op_value(&t[skip..])?;
            let n = parse_u32(v)?;
            let e = vec![
                expr::meta(META_MARK, REG_1),
                expr::cmp(op, REG_1, &n.to_ne_bytes()),
            ];
            Ok((e, skip + used))
        }
        other => bail!("`{other}` is not supported"),
    }
}

fn parse_net(v: &str, family: IpFamily) -> Result<IpNet> {
    let net = v
        .parse::<IpNet>()
        .or_else(|_| v.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| anyhow!("{v:?} is not an address or prefix"))?;
    if IpFamily::of(&net) != family {
        bail!("{v} is not of the table's family");
    }
    Ok(net.trunc())
}

fn parse_u32(v: &str) -> Result<u32> {
    let r = match v.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => v.parse(),
    };
    r.map_err(|_| anyhow!("{v:?} is not a number"))
}

/// `iifname "eth0"` compares all 16 bytes (NUL padded); `"eth*"` only the prefix, as nft.
fn ifname_match(meta: u32, op: CmpOp, name: &str) -> Result<Vec<Expr>> {
    let (bytes, wildcard) = match name.strip_suffix('*') {
        Some(prefix) => (prefix.as_bytes().to_vec(), true),
        None => (name.as_bytes().to_vec(), false),
    };
    if bytes.len() >= IFNAMSIZ || name.is_empty() {
        bail!("{name:?} is not an interface name");
    }
    let data = if wildcard {
        bytes
    } else {
        let mut d = bytes;
        d.resize(IFNAMSIZ, 0);
        d
    };
    Ok(vec![expr::meta(meta, REG_1), expr::cmp(op, REG_1, &data)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn tokens_keep_quoted_names() {
        assert_eq!(
            tokenize(r#"iifname "eth 0"  ip saddr 1.2.3.4"#).unwrap(),
            ["iifname", "eth 0", "ip", "saddr", "1.2.3.4"]
        );
        assert!(tokenize(r#"iifname "eth0"#).is_err());
    }

    #[test]
    fn supported_matches_compile() {
        let e = compile(
            &c(&[
                "ip saddr != 10.0.0.0/8",
                "iifname",
                "eth0",
                "meta mark 0x10",
            ]),
            IpFamily::V4,
        )
        .unwrap();
        // payload+cmp, meta+cmp, meta+cmp
        assert_eq!(e.len(), 6);
        let e = compile(
            &c(&["ip6", "daddr", "2001:db8::1", "oifname == \"veth*\""]),
            IpFamily::V6,
        )
        .unwrap();
        assert_eq!(e.len(), 4);
        assert!(compile(&[], IpFamily::V4).unwrap().is_empty());
    }

    #[test]
    fn bad_conditions_name_the_token() {
        let e = compile(&c(&["a", "b"]), IpFamily::V4).unwrap_err();
        assert!(format!("{e:#}").contains("`a` is not supported"), "{e:#}");
        let e = compile(&c(&["ip6 saddr ::1"]), IpFamily::V4).unwrap_err();
        assert!(format!("{e:#}").contains("conditionsV6"), "{e:#}");
        assert!(compile(&c(&["ip saddr"]), IpFamily::V4).is_err());
        assert!(compile(&c(&["ip saddr fd00::1"]), IpFamily::V4).is_err());
        assert!(compile(&c(&["mark x"]), IpFamily::V4).is_err());
        assert!(compile(&c(&["iifname averyveryverylongname"]), IpFamily::V4).is_err());
    }
}
