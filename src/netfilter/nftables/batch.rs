//! Building one nf_tables transaction: `BATCH_BEGIN`, then table/chain/rule additions and
//! deletions, then `BATCH_END`. The kernel applies the whole batch or nothing.
//!
//! Comments are stored the way `nft` stores them (libnftnl "udata": a TLV of type
//! `NFTNL_UDATA_*_COMMENT` = 0, one length byte, the text and its NUL), so `nft list ruleset`
//! shows `comment "..."` on our tables, chains and rules.

use super::expr::{Expr, encode_list};
use super::wire::{
    Attrs, NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END, NFNL_SUBSYS_NFTABLES, encode_msg, flags, msg,
    nft_type,
};

/// Longest comment kept: the udata length byte holds the text plus its NUL.
pub const COMMENT_MAX: usize = 254;

/// An nf_tables address family (`NFPROTO_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NfFamily {
    /// `inet`: IPv4 and IPv6 in one table.
    Inet = 1,
    /// `ip`
    Ip = 2,
    /// `bridge`
    Bridge = 7,
    /// `ip6`
    Ip6 = 10,
}

/// A table: family and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// Address family.
    pub family: NfFamily,
    /// Table name.
    pub name: String,
}

impl Table {
    /// The table `name` of `family`.
    pub fn new(family: NfFamily, name: &str) -> Table {
        Table {
            family,
            name: name.into(),
        }
    }
}

/// A netfilter hook (`NF_INET_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// `prerouting`
    Prerouting = 0,
    /// `input`
    Input = 1,
    /// `forward`
    Forward = 2,
    /// `output`
    Output = 3,
    /// `postrouting`
    Postrouting = 4,
}

/// What makes a chain a base chain: its type (`nat`, `filter`, `route`), hook and priority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseChain {
    /// `nat`, `filter` or `route`.
    pub kind: &'static str,
    /// The hook it is attached to.
    pub hook: Hook,
    /// Priority (`srcnat` = 100, `dstnat` = -100, `filter` = 0).
    pub priority: i32,
}

/// A chain to create: regular when `base` is `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain<'a> {
    /// Chain name.
    pub name: &'a str,
    /// Type, hook and priority of a base chain.
    pub base: Option<BaseChain>,
    /// Optional comment.
    pub comment: Option<&'a str>,
}

/// One message of a batch, with a description used in error messages.
#[derive(Debug, Clone)]
struct Msg {
    kind: u16,
    flags: u16,
    family: NfFamily,
    attrs: Attrs,
    what: String,
}

/// An ordered list of nf_tables changes applied atomically by [`super::Nft::apply`].
#[derive(Debug, Clone, Default)]
pub struct Batch {
    msgs: Vec<Msg>,
}

/// The udata TLV holding a comment, cut to [`COMMENT_MAX`] bytes on a character boundary.
pub fn comment_udata(text: &str) -> Vec<u8> {
    let mut end = text.len().min(COMMENT_MAX);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut v = vec![0u8, (end + 1) as u8];
    v.extend_from_slice(&text.as_bytes()[..end]);
    v.push(0);
    v
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    /// True when there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    /// Number of messages between `BATCH_BEGIN` and `BATCH_END`.
    pub fn len(&self) -> usize {
        self.msgs.len()
    }

    fn push(&mut self, kind: u16, extra: u16, family: NfFamily, attrs: Attrs, what: String) {
        self.msgs.push(Msg {
            kind,
            flags: flags::REQUEST | flags::ACK | extra,
            family,
            attrs,
            what,
        });
    }

    /// `add table`: creates the table unless it exists.
    pub fn add_table(&mut self, t: &Table, comment: Option<&str>) {
        let mut a = Attrs::new();
        a.str(1, &t.name);
        if let Some(c) = comment {
            a.bytes(6, &comment_udata(c));
        }
        self.push(
            msg::NEWTABLE,
            flags::CREATE,
            t.family,
            a,
            format!("add table {}", t.name),
        );
    }

    /// `delete table` (with everything in it).
    pub fn delete_table(&mut self, t: &Table) {
        let mut a = Attrs::new();
        a.str(1, &t.name);
        self.push(
            msg::DELTABLE,
            0,
            t.family,
            a,
            format!("delete table {}", t.name),
        );
    }

    /// `add chain`: creates the chain unless it exists (an existing one is left as it is).
    pub fn add_chain(&mut self, t: &Table, c: &Chain<'_>) {
        let mut a = Attrs::new();
        a.str(1, &t.name).str(3, c.name);
        if let Some(b) = &c.base {
            a.nest(4, |h| {
                h.be32(1, b.hook as u32).be32(2, b.priority as u32);
            });
            a.str(7, b.kind);
        }
        if let Some(text) = c.comment {
            a.bytes(12, &comment_udata(text));
        }
        self.push(
            msg::NEWCHAIN,
            flags::CREATE,
            t.family,
            a,
            format!("add chain {} {}", t.name, c.name),
        );
    }

    /// `flush chain`: a `DELRULE` naming the chain but no rule.
    pub fn flush_chain(&mut self, t: &Table, chain: &str) {
        let mut a = Attrs::new();
        a.str(1, &t.name).str(2, chain);
        self.push(
            msg::DELRULE,
            0,
            t.family,
            a,
            format!("flush chain {} {chain}", t.name),
        );
    }

    /// `delete chain` (it must be empty and unreferenced).
    pub fn delete_chain(&mut self, t: &Table, chain: &str) {
        let mut a = Attrs::new();
        a.str(1, &t.name).str(3, chain);
        self.push(
            msg::DELCHAIN,
            0,
            t.family,
            a,
            format!("delete chain {} {chain}", t.name),
        );
    }

    /// `add rule`: appends `exprs` to `chain`, with an optional comment.
    pub fn add_rule(&mut self, t: &Table, chain: &str, exprs: &[Expr], comment: Option<&str>) {
        let udata = comment.map(comment_udata).unwrap_or_default();
        self.add_rule_udata(t, chain, exprs, &udata, comment);
    }

    /// `add rule` with raw userdata (libnftnl TLVs, e.g. [`comment_udata`] plus private
    /// ones, which `nft` skips); `note` names the rule in error messages.
    pub fn add_rule_udata(
        &mut self,
        t: &Table,
        chain: &str,
        exprs: &[Expr],
        udata: &[u8],
        note: Option<&str>,
    ) {
        let mut a = Attrs::new();
        a.str(1, &t.name).str(2, chain);
        a.nest(4, |l| encode_list(exprs, l));
        if !udata.is_empty() {
            a.bytes(7, udata);
        }
        let what = format!(
            "add rule {} {chain}{}",
            t.name,
            note.map(|c| format!(" ({c})")).unwrap_or_default()
        );
        self.push(
            msg::NEWRULE,
            flags::CREATE | flags::APPEND,
            t.family,
            a,
            what,
        );
    }

    /// `insert rule`: puts `exprs` first in `chain` (no position given, no APPEND flag).
    pub fn prepend_rule(&mut self, t: &Table, chain: &str, exprs: &[Expr], comment: Option<&str>) {
        let mut a = Attrs::new();
        a.str(1, &t.name).str(2, chain);
        a.nest(4, |l| encode_list(exprs, l));
        if let Some(c) = comment {
            a.bytes(7, &comment_udata(c));
        }
        let what = format!("insert rule {} {chain}", t.name);
        self.push(msg::NEWRULE, flags::CREATE, t.family, a, what);
    }

    /// `delete rule ... handle <h>`.
    pub fn delete_rule(&mut self, t: &Table, chain: &str, handle: u64) {
        let mut a = Attrs::new();
        a.str(1, &t.name).str(2, chain).be64(3, handle);
        self.push(
            msg::DELRULE,
            0,
            t.family,
            a,
            format!("delete rule {} {chain} handle {handle}", t.name),
        );
    }

    /// The wire bytes, numbering messages from `first_seq` (the batch begin) upwards.
    pub fn encode(&self, first_seq: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let none = Attrs::new();
        // The batch markers carry AF_UNSPEC and, in res_id, the subsystem they open.
        encode_msg(
            &mut out,
            NFNL_MSG_BATCH_BEGIN,
            flags::REQUEST,
            first_seq,
            0,
            NFNL_SUBSYS_NFTABLES,
            &none,
        );
        for (i, m) in self.msgs.iter().enumerate() {
            let seq = first_seq + 1 + i as u32;
            encode_msg(
                &mut out,
                nft_type(m.kind),
                m.flags,
                seq,
                m.family as u8,
                0,
                &m.attrs,
            );
        }
        let end = first_seq + 1 + self.msgs.len() as u32;
        encode_msg(
            &mut out,
            NFNL_MSG_BATCH_END,
            flags::REQUEST,
            end,
            0,
            NFNL_SUBSYS_NFTABLES,
            &none,
        );
        out
    }

    /// What message `i` (0-based, after the batch begin) does.
    pub fn describe(&self, i: usize) -> Option<&str> {
        self.msgs.get(i).map(|m| m.what.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comment_udata_layout_and_cut() {
        assert_eq!(comment_udata("hi"), [0, 3, b'h', b'i', 0]);
        let long = "é".repeat(200);
        let u = comment_udata(&long);
        assert_eq!(u[1] as usize, u.len() - 2);
        assert!(std::str::from_utf8(&u[2..u.len() - 1]).is_ok());
        assert!(u.len() - 3 <= COMMENT_MAX);
    }

    /// NEWTABLE + NEWCHAIN, checked byte by byte against nf_tables.h and `nft --debug=mnl`.
    #[test]
    fn table_and_base_chain_bytes() {
        let t = Table::new(NfFamily::Inet, "t");
        let mut b = Batch::new();
        b.add_table(&t, Some("tc"));
        let base = BaseChain {
            kind: "nat",
            hook: Hook::Postrouting,
            priority: 100,
        };
        b.add_chain(
            &t,
            &Chain {
                name: "pr",
                base: Some(base),
                comment: None,
            },
        );
        let got = b.encode(100);
        #[rustfmt::skip]
        let want: Vec<u8> = [
            // BATCH_BEGIN: len 20, type 0x10, flags REQUEST, seq 100, pid 0
            &[20, 0, 0, 0, 0x10, 0, 1, 0, 100, 0, 0, 0, 0, 0, 0, 0][..],
            &[0, 0, 0, 10],                       // nfgenmsg: AF_UNSPEC, v0, res_id=htons(10)
            // NEWTABLE: len 40 (16 + 4 + 8 + 12), type 0x0a00, flags REQUEST|ACK|CREATE = 0x405, seq 101
            &[40, 0, 0, 0, 0x00, 0x0a, 0x05, 0x04, 101, 0, 0, 0, 0, 0, 0, 0],
            &[1, 0, 0, 0],                        // nfgenmsg: NFPROTO_INET
            &[6, 0, 1, 0, b't', 0, 0, 0],         // NFTA_TABLE_NAME "t\0" + pad
            &[9, 0, 6, 0, 0, 3, b't', b'c', 0, 0, 0, 0], // NFTA_TABLE_USERDATA {comment, 3, "tc\0"}
            // NEWCHAIN: len 64 (16 + 4 + 8 + 8 + 20 + 8), type 0x0a03, seq 102
            &[64, 0, 0, 0, 0x03, 0x0a, 0x05, 0x04, 102, 0, 0, 0, 0, 0, 0, 0],
            &[1, 0, 0, 0],
            &[6, 0, 1, 0, b't', 0, 0, 0],         // NFTA_CHAIN_TABLE
            &[7, 0, 3, 0, b'p', b'r', 0, 0],      // NFTA_CHAIN_NAME
            &[20, 0, 4, 0x80],                    // NFTA_CHAIN_HOOK (nested)
            &[8, 0, 1, 0, 0, 0, 0, 4],            //   NFTA_HOOK_HOOKNUM = NF_INET_POST_ROUTING (BE)
            &[8, 0, 2, 0, 0, 0, 0, 100],          //   NFTA_HOOK_PRIORITY = 100 (BE)
            &[8, 0, 7, 0, b'n', b'a', b't', 0],   // NFTA_CHAIN_TYPE "nat"
            // BATCH_END: type 0x11, seq 103
            &[20, 0, 0, 0, 0x11, 0, 1, 0, 103, 0, 0, 0, 0, 0, 0, 0],
            &[0, 0, 0, 10],
        ]
        .concat();
        assert_eq!(got, want);
    }

    #[test]
    fn negative_priority_is_twos_complement_be() {
        let t = Table::new(NfFamily::Ip, "x");
        let mut b = Batch::new();
        let base = BaseChain {
            kind: "nat",
            hook: Hook::Prerouting,
            priority: -100,
        };
        b.add_chain(
            &t,
            &Chain {
                name: "p",
                base: Some(base),
                comment: None,
            },
        );
        let bytes = b.encode(1);
        let prio = (-100i32).to_be_bytes();
        assert!(
            bytes
                .windows(8)
                .any(|w| w == [8, 0, 2, 0, prio[0], prio[1], prio[2], prio[3]])
        );
        assert_eq!(b.describe(0), Some("add chain x p"));
    }
}
