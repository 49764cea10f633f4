//! IP address management shared by the IPAM applets: range logic ([`range`]), the host-local
//! allocation algorithm ([`allocator`]) over a reservation [`store::Store`] (on disk in
//! [`disk`], compatible with the reference's files), and the IPAM config keys ([`config`]).

pub mod allocator;
pub mod config;
pub mod configure;
pub mod disk;
pub mod etcd;
pub mod exclude;
pub mod range;
pub mod store;

#[cfg(test)]
pub mod test_support;

pub use disk::DiskStore;
pub use range::{Range, RangeSet};
pub use store::{MemStore, Reservation, Store};
