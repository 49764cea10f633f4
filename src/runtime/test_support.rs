//! Test helpers for the runtime (shared with the rest of the crate in `testutil`).

pub use crate::testutil::{TempDir, testdata};
