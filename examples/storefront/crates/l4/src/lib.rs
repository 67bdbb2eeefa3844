//! Stage 8 of the storefront: layer-4 load balancing with a virtual IP.
//!
//! The article's stage 8 puts LVS in front of several nginx, with keepalived
//! moving a virtual IP when a balancer dies. This crate builds it from the
//! real parts this kernel has (it has no IPVS), the way Katran and Cilium pair
//! a Maglev table with a kernel datapath:
//!
//! - [`net`]: the hosts, network namespaces on a bridge, and a link to this
//!   host; swept after a crash;
//! - [`vrrp`]: keepalived (VRRP version 3) on each balancer host, moving the
//!   virtual IP;
//! - [`nft`]: the kernel's datapath, nftables DNAT whose target is a Maglev
//!   table from scalekit-ring, loaded into an nft map;
//! - [`user`]: the userspace datapath over the same table, for hosts without
//!   nftables and as the measured alternative;
//! - [`balancer`]: the control plane, health checks of the gateways turned
//!   into the table (through a scalekit-replica set);
//! - [`daemon`]: one balancer host's process (`storefront l4 balance`);
//! - [`relay`]: the gateways' way to the services on this host's loopback;
//! - [`stage`]: the stage's processes in order (`storefront serve --stage 8`);
//! - [`ops`]: its `/ops` page and `/metrics`;
//! - [`config`]: the stage file's `[l4]` section;
//! - [`mod@bench`]: the hop measured against HAProxy and nginx (`storefront l4
//!   bench`).

pub mod balancer;
pub mod bench;
pub mod config;
pub mod daemon;
pub mod net;
pub mod nft;
pub mod ops;
pub mod relay;
pub mod stage;
pub mod user;
pub mod vrrp;
