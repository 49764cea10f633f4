//! The one classifier the bandwidth plugin needs: a `u32` filter matching every packet, with a
//! `mirred` action that redirects it to the egress of another link (the IFB). It is what
//! `tc filter add dev H parent ffff: protocol all prio 1 u32 match u32 0 0 classid 1:1
//! action mirred egress redirect dev IFB` sends, and what the reference builds with
//! vishvananda/netlink (which, given both `RedirIndex` and an explicit mirred action, sends the
//! redirect twice; the second never runs, so we send it once).
//!
//! Wire layout: `TCA_OPTIONS { TCA_U32_CLASSID: u32, TCA_U32_SEL: tc_u32_sel + 1 key,
//! TCA_U32_ACT { 1: { TCA_ACT_KIND "mirred", TCA_ACT_OPTIONS { TCA_MIRRED_PARMS: tc_mirred } } } }`.

use crate::netlink::attr::{Attr, attr, find, nest, nested, str_of, u32_of};

const TCA_U32_CLASSID: u16 = 1;
const TCA_U32_SEL: u16 = 5;
const TCA_U32_ACT: u16 = 7;
const TCA_ACT_KIND: u16 = 1;
const TCA_ACT_OPTIONS: u16 = 2;
const TCA_MIRRED_PARMS: u16 = 2;
/// `TC_U32_TERMINAL`: a match ends classification.
const TC_U32_TERMINAL: u8 = 1;
/// `TC_ACT_STOLEN`: the packet is consumed (the redirect owns it now).
pub(crate) const TC_ACT_STOLEN: i32 = 4;
/// `TCA_EGRESS_REDIR`.
pub(crate) const TCA_EGRESS_REDIR: i32 = 1;
/// `sizeof(struct tc_u32_sel)` without keys: flags, offshift, nkeys, a pad byte, offmask,
/// off, offoff, hoff (u16 each), hmask (u32).
const SEL_HEAD_LEN: usize = 16;
/// `sizeof(struct tc_u32_key)`: mask, val (big-endian u32), off, offmask (i32).
const KEY_LEN: usize = 16;
/// `sizeof(struct tc_mirred)`: index, capab, action, refcnt, bindcnt, eaction, ifindex.
const MIRRED_LEN: usize = 28;

/// A `tc_u32_sel` with one all-zero key (mask 0 matches anything), terminal.
pub(crate) fn match_all_sel() -> [u8; SEL_HEAD_LEN + KEY_LEN] {
    let mut b = [0u8; SEL_HEAD_LEN + KEY_LEN];
    b[0] = TC_U32_TERMINAL;
    b[2] = 1; // nkeys
    b
}

/// A `tc_mirred` redirecting to the egress of `ifindex`.
pub(crate) fn mirred_bytes(ifindex: u32) -> [u8; MIRRED_LEN] {
    let mut b = [0u8; MIRRED_LEN];
    b[8..12].copy_from_slice(&TC_ACT_STOLEN.to_ne_bytes());
    b[20..24].copy_from_slice(&TCA_EGRESS_REDIR.to_ne_bytes());
    b[24..28].copy_from_slice(&ifindex.to_ne_bytes());
    b
}

/// The `TCA_OPTIONS` children of the match-all redirect filter.
pub(crate) fn redirect_options(classid: u32, to_ifindex: u32) -> anyhow::Result<Vec<Attr<u16>>> {
    let mirred = vec![
        attr(TCA_ACT_KIND, "mirred")?,
        nest(
            TCA_ACT_OPTIONS,
            vec![attr(TCA_MIRRED_PARMS, mirred_bytes(to_ifindex))?],
        )?,
    ];
    Ok(vec![
        attr(TCA_U32_CLASSID, classid)?,
        attr(TCA_U32_SEL, match_all_sel())?,
        // Actions are listed under their order number, starting at 1.
        nest(TCA_U32_ACT, vec![nest(1u16, mirred)?])?,
    ])
}

/// What a dumped `u32` filter node says, as far as we read it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct U32Info {
    /// `TCA_U32_CLASSID` (`flowid`), if set.
    pub classid: Option<u32>,
    /// True when the node's selector is the terminal match-all one (one key, mask 0).
    pub match_all: bool,
    /// The ifindex of a `mirred` egress redirect among its actions.
    pub redirect_to: Option<u32>,
}

/// Reads a dumped `u32` filter's `TCA_OPTIONS` payload.
pub(crate) fn parse_u32_options(p: &[u8]) -> anyhow::Result<U32Info> {
    let opts = nested::<u16>(p)?;
    let mut info = U32Info {
        classid: find(&opts, TCA_U32_CLASSID).and_then(u32_of),
        match_all: find(&opts, TCA_U32_SEL).is_some_and(is_match_all),
        redirect_to: None,
    };
    if let Some(acts) = find(&opts, TCA_U32_ACT) {
        for act in nested::<u16>(acts)?.iter() {
            if let Some(to) = egress_redirect(act.rta_payload().as_ref())? {
                info.redirect_to = Some(to);
            }
        }
    }
    Ok(info)
}

fn is_match_all(sel: &[u8]) -> bool {
    sel.len() >= SEL_HEAD_LEN + KEY_LEN
        && sel[0] & TC_U32_TERMINAL != 0
        && sel[2] == 1
        && sel[SEL_HEAD_LEN..SEL_HEAD_LEN + 4] == [0; 4]
}

/// The target of one action if it is a `mirred` egress redirect.
fn egress_redirect(act: &[u8]) -> anyhow::Result<Option<u32>> {
    let attrs = nested::<u16>(act)?;
    if find(&attrs, TCA_ACT_KIND).map(str_of).as_deref() != Some("mirred") {
        return Ok(None);
    }
    let Some(opts) = find(&attrs, TCA_ACT_OPTIONS) else {
        return Ok(None);
    };
    let opts = nested::<u16>(opts)?;
    let Some(parms) = find(&opts, TCA_MIRRED_PARMS).filter(|p| p.len() >= MIRRED_LEN) else {
        return Ok(None);
    };
    let eaction = u32_of(&parms[20..]).map(|v| v as i32);
    Ok((eaction == Some(TCA_EGRESS_REDIR))
        .then(|| u32_of(&parms[24..]))
        .flatten())
}
