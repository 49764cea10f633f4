//! The runtime side, libcni's equivalent: load a network configuration list
//! ([`config`]), derive each plugin's stdin ([`inject`]), run the list's plugins for ADD, CHECK,
//! DEL, GC and STATUS ([`ops`]), and keep the result cache ([`cache`]) in libcni's on-disk
//! format. The `cnitool`/`net` applet is the command-line face of this module.

mod base64;
pub mod cache;
pub mod config;
pub mod inject;
pub mod ops;

#[cfg(test)]
pub(crate) mod test_support;

pub use cache::{CacheEntry, ResultCache};
pub use config::{LoadError, NetworkConfigList, PluginConf, load_network};
pub use ops::{CniConfig, GcArgs, RuntimeConf};
