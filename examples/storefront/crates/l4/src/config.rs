//! The stage file's `[l4]` section (stage 8 on): gateways behind balancers
//! that share a virtual IP.
//!
//! ```
//! use storefront_contract::section::Section;
//! use storefront_l4::config::{Datapath, L4Config};
//! let l4: L4Config = toml::from_str("gateways = 3\ndatapath = \"user\"\n").unwrap();
//! assert_eq!((l4.gateways, l4.balancers, l4.datapath), (3, 2, Datapath::User));
//! assert!(l4.check().is_ok());
//! let bad: L4Config = toml::from_str("health_interval_ms = 5").unwrap();
//! assert_eq!(bad.check().unwrap_err().0, "l4.health_interval_ms");
//! ```

use std::time::Duration;

use serde::Deserialize;
use storefront_contract::ops::topology::{Node, Piece, Tier};
use storefront_contract::section::{Invalid, Section};

use crate::balancer::Options;

/// Which datapath the balancers run.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Datapath {
    /// nftables DNAT through the Maglev map, in the kernel.
    #[default]
    Nft,
    /// The userspace TCP balancer over the same table.
    User,
}

impl std::fmt::Display for Datapath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Nft => "nft",
            Self::User => "user",
        })
    }
}

impl std::str::FromStr for Datapath {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "nft" => Ok(Self::Nft),
            "user" => Ok(Self::User),
            other => Err(format!("datapath {other:?}: nft or user")),
        }
    }
}

/// Stage 8's balancers and gateways.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct L4Config {
    /// Stage-4 gateways (each with the `[gateway]` section's instances), 1 to 16.
    #[serde(default = "default_gateways")]
    pub gateways: u32,
    /// Balancer hosts sharing the virtual IP, 1 to 4.
    #[serde(default = "default_balancers")]
    pub balancers: u32,
    /// The balancers' datapath.
    #[serde(default)]
    pub datapath: Datapath,
    /// The virtual IP's port (the gateways listen on the same).
    #[serde(default = "default_port")]
    pub port: u16,
    /// Between two rounds of the balancers' checks of the gateways (50 to 10,000).
    #[serde(default = "default_interval")]
    pub health_interval_ms: u64,
    /// One check's limit (10 up to the interval).
    #[serde(default = "default_timeout")]
    pub health_timeout_ms: u64,
    /// Failed checks in a row that take a gateway out (1 to 10).
    #[serde(default = "default_fall")]
    pub fall: u32,
    /// Passed checks in a row that bring it back (1 to 10).
    #[serde(default = "default_rise")]
    pub rise: u32,
    /// Milliseconds between keepalived's adverts (10 to 10,000).
    #[serde(default = "default_advert")]
    pub advert_ms: u32,
}

fn default_gateways() -> u32 {
    2
}
fn default_balancers() -> u32 {
    2
}
fn default_port() -> u16 {
    8080
}
fn default_interval() -> u64 {
    200
}
fn default_timeout() -> u64 {
    150
}
fn default_fall() -> u32 {
    2
}
fn default_rise() -> u32 {
    2
}
fn default_advert() -> u32 {
    100
}

impl Default for L4Config {
    fn default() -> Self {
        Self {
            gateways: default_gateways(),
            balancers: default_balancers(),
            datapath: Datapath::default(),
            port: default_port(),
            health_interval_ms: default_interval(),
            health_timeout_ms: default_timeout(),
            fall: default_fall(),
            rise: default_rise(),
            advert_ms: default_advert(),
        }
    }
}

impl L4Config {
    /// The balancers' check options.
    pub fn options(&self) -> Options {
        Options {
            interval: Duration::from_millis(self.health_interval_ms),
            timeout: Duration::from_millis(self.health_timeout_ms),
            fall: self.fall,
            rise: self.rise,
        }
    }
}

fn within(field: &'static str, value: u64, low: u64, high: u64) -> Result<(), Invalid> {
    if (low..=high).contains(&value) {
        Ok(())
    } else {
        Err((field, format!("{value}: give {low} to {high}")))
    }
}

impl Section for L4Config {
    fn check(&self) -> Result<(), Invalid> {
        within("l4.gateways", self.gateways.into(), 1, 16)?;
        within("l4.balancers", self.balancers.into(), 1, 4)?;
        within("l4.port", self.port.into(), 1, 65_535)?;
        within("l4.health_interval_ms", self.health_interval_ms, 50, 10_000)?;
        within(
            "l4.health_timeout_ms",
            self.health_timeout_ms,
            10,
            self.health_interval_ms,
        )?;
        within("l4.fall", self.fall.into(), 1, 10)?;
        within("l4.rise", self.rise.into(), 1, 10)?;
        within("l4.advert_ms", self.advert_ms.into(), 10, 10_000)
    }

    /// The virtual IP and its balancers in front of the gateways.
    fn pieces(&self) -> Vec<Piece> {
        let balancers = format!(
            "{} balancers, {} datapath, keepalived",
            self.balancers,
            match self.datapath {
                Datapath::Nft => "nftables",
                Datapath::User => "userspace",
            }
        );
        vec![
            Piece::Node(
                Tier::Front,
                Node::new("vip", "Virtual IP", &balancers).linked("TCP"),
            ),
            Piece::Replicas {
                class: "gateway".into(),
                count: self.gateways,
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bound_names_its_field() {
        let ok = L4Config::default();
        assert!(ok.check().is_ok());
        let cases: [(&str, L4Config); 6] = [
            (
                "l4.gateways",
                L4Config {
                    gateways: 0,
                    ..ok.clone()
                },
            ),
            (
                "l4.balancers",
                L4Config {
                    balancers: 5,
                    ..ok.clone()
                },
            ),
            (
                "l4.port",
                L4Config {
                    port: 0,
                    ..ok.clone()
                },
            ),
            (
                "l4.health_timeout_ms",
                L4Config {
                    health_timeout_ms: 300,
                    ..ok.clone()
                },
            ),
            (
                "l4.fall",
                L4Config {
                    fall: 0,
                    ..ok.clone()
                },
            ),
            (
                "l4.advert_ms",
                L4Config {
                    advert_ms: 5,
                    ..ok.clone()
                },
            ),
        ];
        for (field, config) in cases {
            assert_eq!(config.check().map_err(|e| e.0), Err(field));
        }
        assert_eq!("user".parse::<Datapath>(), Ok(Datapath::User));
        assert!("ipvs".parse::<Datapath>().is_err());
        assert!(
            toml::from_str::<L4Config>("gateway = 2").is_err(),
            "unknown field"
        );
    }
}
