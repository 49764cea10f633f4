//! The nftables backend: nf_tables spoken directly over netlink (no `nft` binary, no C
//! library). A change is a [`Batch`] applied atomically by [`Nft::apply`]; state is read back
//! with [`Nft::list_rules`] (chain, handle, comment, expressions) for CHECK, DEL and GC.
//!
//! Layout of tables and rules follows the reference plugins' knftables-based backends, and
//! rules are encoded the way `nft` encodes them, so either side can read and remove what the
//! other made.

pub mod batch;
pub mod expr;
pub mod socket;
pub mod wire;

pub use batch::{BaseChain, Batch, Chain, Hook, NfFamily, Table};
pub use expr::{AddrField, CmpOp, DecodedExpr, Expr, Verdict};
pub use socket::{Nft, NftError, RuleInfo, is_errno};

#[cfg(test)]
mod privileged_tests;
