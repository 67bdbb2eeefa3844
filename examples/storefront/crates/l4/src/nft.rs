//! The kernel datapath: nftables DNAT whose target is a Maglev table.
//!
//! The balancer's table (`ip storefront_l4`) hashes each new connection's
//! source address and port with the kernel's `jhash` into one of
//! [`SLOTS`] (the Maglev table's size, a prime), and looks the slot up in a map
//! from slot to gateway (`address . port`) that [`fill`] and [`change`] keep
//! equal to the Maglev table of scalekit-ring ([`slots`]). The hash goes
//! through the packet mark (`meta mark set jhash ...`, then `dnat to meta mark
//! map @gateways`): nftables 1.0.6 loads a map typed `jhash ...` directly but
//! crashes listing it. Conntrack decides NAT on a connection's first packet,
//! so a map change moves only new connections; established ones stay where
//! they are. Replies go back through the balancer that translated them (it
//! also rewrites the source to its own address), so a virtual IP that moves
//! to the other balancer moves new connections only.
//!
//! Every change is one `nft -f` transaction: it applies whole or not at all.
//!
//! ```
//! use std::net::SocketAddr;
//! use storefront_l4::nft::{change, slots, Balancer};
//! use scalekit_ring::Maglev;
//! let balancer = Balancer {
//!     vip: "10.88.1.100".parse().unwrap(),
//!     port: 8080,
//!     own: "10.88.1.10".parse().unwrap(),
//!     dev: "eth0".into(),
//! };
//! assert!(balancer.ruleset().contains("jhash ip saddr . tcp sport mod 65537"));
//! let a: SocketAddr = "10.88.1.20:8080".parse().unwrap();
//! let b: SocketAddr = "10.88.1.21:8080".parse().unwrap();
//! let before = slots(&Maglev::with_nodes([a]).unwrap());
//! let after = slots(&Maglev::with_nodes([a, b]).unwrap());
//! // Only the slots that change are rewritten: about half of them.
//! let script = change(&before, &after);
//! assert!(script.matches(" : 10.88.1.21 . 8080").count() > 30_000);
//! ```

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::{Command, Stdio};

use scalekit_ring::Maglev;

/// The nftables table of the balancer.
pub const TABLE: &str = "storefront_l4";

/// The map from slot to gateway.
pub const MAP: &str = "gateways";

/// Slots: the Maglev table's size (a prime; `jhash ... mod SLOTS`).
pub const SLOTS: u32 = scalekit_ring::MAGLEV_DEFAULT_TABLE_SIZE;

/// The hash's seed: the same on every balancer, so that a flow hashes alike
/// wherever the virtual IP is (without one the kernel picks one per rule).
pub const SEED: u32 = 0x5eed;

/// One balancer's datapath.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Balancer {
    /// The virtual IP clients connect to.
    pub vip: Ipv4Addr,
    /// The port balanced.
    pub port: u16,
    /// The balancer's own address (connections to the gateways come from it).
    pub own: Ipv4Addr,
    /// Its interface to the gateways.
    pub dev: String,
}

impl Balancer {
    /// The whole table, replacing any earlier one, with an empty map.
    pub fn ruleset(&self) -> String {
        let Self {
            vip,
            port,
            own,
            dev,
        } = self;
        format!(
            "table ip {TABLE}\n\
             delete table ip {TABLE}\n\
             table ip {TABLE} {{\n\
             \x20 map {MAP} {{ typeof meta mark : ip daddr . tcp dport; }}\n\
             \x20 chain pre {{\n\
             \x20   type nat hook prerouting priority dstnat; policy accept;\n\
             \x20   ip daddr {vip} tcp dport {port} meta mark set jhash ip saddr . tcp sport mod {SLOTS} seed {SEED:#x} dnat ip to meta mark map @{MAP}\n\
             \x20 }}\n\
             \x20 chain post {{\n\
             \x20   type nat hook postrouting priority srcnat; policy accept;\n\
             \x20   ct status dnat oifname \"{dev}\" snat ip to {own}\n\
             \x20 }}\n\
             }}\n"
        )
    }
}

/// The Maglev table as the map holds it: entry `i` is slot `i`'s gateway;
/// empty without gateways. IPv6 gateways are left out (the table is `ip`).
pub fn slots(maglev: &Maglev<SocketAddr>) -> Vec<SocketAddrV4> {
    maglev
        .entries()
        .filter_map(|a| match a {
            SocketAddr::V4(v4) => Some(*v4),
            SocketAddr::V6(_) => None,
        })
        .collect()
}

fn elements(out: &mut String, entries: impl Iterator<Item = (usize, SocketAddrV4)>) {
    let mut first = true;
    for (slot, gw) in entries {
        let sep = if first { "" } else { ", " };
        first = false;
        let _ = write!(out, "{sep}{slot} : {} . {}", gw.ip(), gw.port());
    }
}

/// One transaction that empties the map and fills it with `table`.
pub fn fill(table: &[SocketAddrV4]) -> String {
    let mut out = format!("flush map ip {TABLE} {MAP}\n");
    if !table.is_empty() {
        let _ = write!(out, "add element ip {TABLE} {MAP} {{ ");
        elements(&mut out, table.iter().copied().enumerate());
        out.push_str(" }\n");
    }
    out
}

/// One transaction that turns the map from `old` into `new`, rewriting only
/// the slots that differ (a gateway leaving rewrites its own slots and the
/// few that Maglev's refill moves). From or to an empty table, a [`fill`].
pub fn change(old: &[SocketAddrV4], new: &[SocketAddrV4]) -> String {
    if old.len() != new.len() || old.is_empty() || new.is_empty() {
        return fill(new);
    }
    let changed: Vec<(usize, SocketAddrV4)> = new
        .iter()
        .copied()
        .enumerate()
        .filter(|(i, gw)| old.get(*i) != Some(gw))
        .collect();
    if changed.is_empty() {
        return String::new();
    }
    let mut out = format!("delete element ip {TABLE} {MAP} {{ ");
    for (i, (slot, _)) in changed.iter().enumerate() {
        let _ = write!(out, "{}{slot}", if i == 0 { "" } else { ", " });
    }
    let _ = write!(out, " }}\nadd element ip {TABLE} {MAP} {{ ");
    elements(&mut out, changed.into_iter());
    out.push_str(" }\n");
    out
}

/// Runs `nft -f -` (as `nft`, a command that is `nft` or runs it in a
/// namespace) with `script` on its input; nft's complaint on failure, with
/// nothing applied.
pub fn apply(mut nft: Command, script: &str) -> Result<(), String> {
    if script.is_empty() {
        return Ok(());
    }
    let mut child = nft
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run nft: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| format!("nft's input: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft -f: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The map as nftables holds it, from `nft -j list map ip storefront_l4
/// gateways`: slot and gateway, in slot order.
pub fn parse_map(json: &str) -> Result<Vec<(u32, SocketAddrV4)>, String> {
    let doc: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("nft's JSON: {e}"))?;
    let items = doc
        .get("nftables")
        .and_then(|v| v.as_array())
        .ok_or("nft's JSON has no nftables array")?;
    let map = items
        .iter()
        .find_map(|i| i.get("map"))
        .ok_or("nft's JSON has no map")?;
    let mut out = Vec::new();
    for elem in map
        .get("elem")
        .and_then(|e| e.as_array())
        .into_iter()
        .flatten()
    {
        let pair = elem.as_array().filter(|p| p.len() == 2);
        let parsed = pair.and_then(|p| {
            let slot = u32::try_from(p[0].as_u64()?).ok()?;
            let concat = p[1].get("concat")?.as_array()?;
            let addr: Ipv4Addr = concat.first()?.as_str()?.parse().ok()?;
            let port = u16::try_from(concat.get(1)?.as_u64()?).ok()?;
            Some((slot, SocketAddrV4::new(addr, port)))
        });
        out.push(
            parsed.ok_or_else(|| {
                format!("an element nft's JSON does not spell as expected: {elem}")
            })?,
        );
    }
    out.sort_unstable_by_key(|e| e.0);
    Ok(out)
}

/// The map's command: `nft -j list map ip storefront_l4 gateways` through
/// `nft` (a command that is `nft` or runs it in a namespace).
pub fn read_map(mut nft: Command) -> Result<Vec<(u32, SocketAddrV4)>, String> {
    let out = nft
        .args(["-j", "list", "map", "ip", TABLE, MAP])
        .output()
        .map_err(|e| format!("cannot run nft: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "nft list map: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    parse_map(&String::from_utf8_lossy(&out.stdout))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gw(last: u8) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(10, 88, 1, last), 8080)
    }

    #[test]
    fn the_ruleset_balances_the_vip_through_the_map_and_snats_replies_home() {
        let b = Balancer {
            vip: Ipv4Addr::new(10, 88, 1, 100),
            port: 8080,
            own: Ipv4Addr::new(10, 88, 1, 10),
            dev: "eth0".into(),
        };
        let r = b.ruleset();
        assert!(r.contains("ip daddr 10.88.1.100 tcp dport 8080 meta mark set jhash ip saddr . tcp sport mod 65537 seed 0x5eed dnat ip to meta mark map @gateways"), "{r}");
        assert!(
            r.contains("ct status dnat oifname \"eth0\" snat ip to 10.88.1.10"),
            "{r}"
        );
        assert!(r.starts_with("table ip storefront_l4\ndelete table ip storefront_l4\n"));
    }

    #[test]
    fn fill_and_change_say_what_the_map_must_become() {
        assert_eq!(fill(&[]), "flush map ip storefront_l4 gateways\n");
        assert_eq!(
            fill(&[gw(20), gw(21)]),
            "flush map ip storefront_l4 gateways\nadd element ip storefront_l4 gateways { 0 : 10.88.1.20 . 8080, 1 : 10.88.1.21 . 8080 }\n"
        );
        let old = [gw(20), gw(21), gw(20)];
        let new = [gw(20), gw(20), gw(20)];
        assert_eq!(
            change(&old, &new),
            "delete element ip storefront_l4 gateways { 1 }\nadd element ip storefront_l4 gateways { 1 : 10.88.1.20 . 8080 }\n"
        );
        assert_eq!(change(&new, &new), "");
        assert_eq!(change(&old, &[]), fill(&[]));
    }

    #[test]
    fn the_map_is_read_back_from_nfts_json() {
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
            {"map": {"family": "ip", "name": "gateways", "table": "storefront_l4", "type": "mark",
             "handle": 1, "map": ["ipv4_addr", "inet_service"],
             "elem": [[1, {"concat": ["10.88.1.21", 8080]}], [0, {"concat": ["10.88.1.20", 8080]}]]}}]}"#;
        assert_eq!(parse_map(json), Ok(vec![(0, gw(20)), (1, gw(21))]));
        let empty = r#"{"nftables": [{"map": {"name": "gateways"}}]}"#;
        assert_eq!(parse_map(empty), Ok(vec![]));
        assert!(parse_map("{}").is_err());
        assert!(parse_map(r#"{"nftables": [{"map": {"elem": [[0, "x"]]}}]}"#).is_err());
        assert!(parse_map("not json").is_err());
    }
}
