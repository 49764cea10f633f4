//! Test helpers for IPAM (shared with the rest of the crate in `testutil`).

pub use crate::testutil::TempDir;
