//! The data the protocol carries: spec versions, network configuration, `CNI_ARGS`, and the
//! canonical Result with its per-version codecs.

pub mod args;
pub mod netconf;
pub mod result;
pub mod version;

pub use netconf::{Attachment, IpamConf, NetConf};
pub use result::{CniResult, Dns, Interface, IpConfig, Route};
pub use version::Version;
