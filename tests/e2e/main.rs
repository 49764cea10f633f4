//! End-to-end tests: the built binary, run inside a throwaway "host" netns against a throwaway
//! "container" netns. Root is required; without it each test prints why it skipped.
//! `support` is the rig; each other module tests one applet (or the rig itself, or install.sh).

mod support;

mod bandwidth;
mod bridge;
mod bridge_failures;
mod bridge_vlan;
mod chain;
mod chain_many;
mod cluster_ipam;
mod concurrency;
mod demo;
mod doctor;
mod dummy;
mod etcd_rig;
mod firewall;
mod firewall_firewalld;
mod flannel;
mod full_disk;
mod fuzz_binary;
mod host_device;
mod host_device_del;
mod host_device_pci;
mod host_local;
mod host_local_interop;
mod hostile;
mod install_sh;
mod interop;
mod ipam_delegate;
mod ipvlan;
mod kill_steps;
mod loopback;
mod macvlan;
mod macvlan_pod;
mod macvlan_shim;
mod masq_traffic;
mod multi;
mod podman;
mod podnet;
mod podnet_failures;
mod portmap;
mod ptp;
mod quickstart;
mod reference_parity;
mod rig;
mod runtime;
mod runtime_bad;
mod runtime_env;
mod sbr;
mod static_ipam;
mod tap;
mod tuning;
mod vlan;
mod vm_rig;
mod vrf;
