//! Netfilter for the plugins that program it (bridge and ptp `ipMasq`; later portmap and
//! firewall). This first part: the reference's chain and hash naming.

pub mod naming;
