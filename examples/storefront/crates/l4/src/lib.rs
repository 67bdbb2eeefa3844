//! Stage 8 of the storefront: layer-4 load balancing with a virtual IP.
//!
//! The article's stage 8 puts LVS in front of several nginx, with keepalived
//! moving a virtual IP when a balancer dies. This crate builds it from the
//! real parts this kernel has (it has no IPVS): network namespaces on a bridge
//! ([`net`]), keepalived's VRRP for the virtual IP, and nftables DNAT whose
//! target is a Maglev table computed by scalekit-ring ([`nft`]), the way
//! Katran and Cilium pair a Maglev table with a kernel datapath.

pub mod balancer;
pub mod config;
pub mod daemon;
pub mod net;
pub mod nft;
pub mod relay;
pub mod stage;
pub mod user;
pub mod vrrp;
