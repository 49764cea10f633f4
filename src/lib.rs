//! cni-multi: the CNI reference plugins and the runtime tool in one busybox-style executable.
//!
//! The protocol lives in [`skel`]; kernel access in [`netns`], [`netlink`] and [`sysctl`];
//! the applets (one per reference plugin) in `applets/`, registered in one sorted table.

pub mod dbus;
pub mod dhcp;
pub mod dispatch;
pub mod doctor;
pub mod error;
pub mod etcd;
pub mod exec;
pub mod fault;
pub mod ipam;
pub mod keys;
pub mod netfilter;
pub mod netlink;
pub mod netns;
pub mod orphans;
pub mod podnet;
pub mod rollback;
pub mod runtime;
pub mod skel;
pub mod sysctl;
pub mod tc;
pub mod tuntap;
pub mod types;
pub mod veth;

#[cfg(test)]
pub mod testutil;

#[path = "../applets/mod.rs"]
pub mod applets;

#[cfg(test)]
mod fuzz_tests;
