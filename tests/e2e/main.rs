//! End-to-end tests: the built binary, run inside a throwaway "host" netns against a throwaway
//! "container" netns. Root is required; without it each test prints why it skipped.
//! `support` is the rig; each other module tests one applet (or the rig itself, or install.sh).

mod support;

mod bandwidth;
mod bridge;
mod bridge_failures;
mod chain;
mod chain_many;
mod demo;
mod dhcp;
mod host_local;
mod host_local_interop;
mod install_sh;
mod interop;
mod ipam_delegate;
mod loopback;
mod masq_traffic;
mod podman;
mod podnet;
mod podnet_failures;
mod portmap;
mod ptp;
mod rig;
mod runtime;
mod runtime_bad;
mod runtime_env;
mod static_ipam;
mod tuning;
