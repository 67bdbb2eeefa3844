//! Stage configurations: `stages/NN-name/stage.toml`, one per stage of the
//! architecture evolution (the folder also holds its `about.md` and deploy
//! files; `build.rs` lists the folders). They are built into the binary (so
//! `storefront serve --stage 2` works from any directory) and can be overridden with `--config FILE`. A bad file is
//! rejected at load with the file, the field or line, and what to write instead.
//!
//! Each section is owned, parsed and checked by the crate that uses it
//! (`[server]` by storefront-server, `[database]`, `[domains]`, `[sharding]`,
//! `[replicas]` by storefront-storage, `[cache]` by storefront-cache, `[gateway]`
//! by storefront-gateway, `[ops]` by storefront-ops, `[auth]` and `[admin]` by
//! storefront-web); this file puts them together and checks what ties them.
//! The sections that switch a component on are listed once, in
//! `stage_config!`: each implements [`Section`] (its check and its pieces of
//! the ops page's picture) in its own crate.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
pub use storefront_cache::CacheConfig;
use storefront_contract::ops::topology::Topology;
use storefront_contract::section::{Invalid, Section};
pub use storefront_gateway::config::{BreakerConfig, EjectionConfig, GatewayConfig};
pub use storefront_server::ServerConfig;

pub use storefront_storage::config::{
    DatabaseConfig, Databases, DomainsConfig, ReplicasConfig, ShardingConfig,
};
#[cfg(test)]
mod stage_tests;

/// A stage shipped with the storefront: the folder `stages/NN-name/` that holds
/// its stage file, its `about.md` and its deploy files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuiltinStage {
    /// The folder's name, `NN-name`.
    pub dir: &'static str,
    /// Its `stage.toml`.
    pub file: &'static str,
    /// Its `about.md`: a title line, what the stage adds, then (under
    /// `## On one small machine`) why it may not pay on one small machine.
    pub about: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/stages.rs"));

impl BuiltinStage {
    /// The built-in stage numbered `number`.
    pub fn find(number: u32) -> Option<&'static BuiltinStage> {
        let prefix = format!("{number:02}-");
        BUILTIN.iter().find(|s| s.dir.starts_with(&prefix))
    }

    /// Where its stage file lives, for messages: `stages/NN-name/stage.toml`.
    pub fn origin(&self) -> String {
        format!("stages/{}/stage.toml", self.dir)
    }

    /// Its `about.md` in two parts: what the stage adds, and why it may not pay
    /// on one small machine (empty when the file says nothing of it). Each is
    /// one paragraph per blank-line-separated block, lines joined.
    pub fn about(&self) -> (String, String) {
        let body = self.about.split_once('\n').map_or("", |(title, rest)| {
            if title.starts_with("# ") {
                rest
            } else {
                self.about
            }
        });
        let (adds, caveat) = body
            .split_once("## On one small machine")
            .unwrap_or((body, ""));
        (paragraphs(adds), paragraphs(caveat))
    }
}

/// Markdown paragraphs with their line breaks joined, separated by a blank line.
fn paragraphs(text: &str) -> String {
    text.split("\n\n")
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// `StageConfig` with the component sections listed after the fixed ones: each
/// listed section becomes an optional field and is checked (and drawn) through
/// its [`Section`] impl, so a new component's section is one line in the list.
macro_rules! stage_config {
    ($( $(#[$doc:meta])* $name:ident: $ty:ty, )*) => {
        /// One stage's configuration.
        #[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
        #[serde(deny_unknown_fields)]
        pub struct StageConfig {
            /// What the stage is.
            pub stage: StageInfo,
            /// The HTTP server.
            pub server: ServerConfig,
            /// Where the data lives.
            pub database: DatabaseConfig,
            /// Users, catalog and orders in databases of their own (stage 6 on).
            #[serde(default)]
            pub domains: Option<DomainsConfig>,
            /// Orders sharded over several databases (stage 7).
            #[serde(default)]
            pub sharding: Option<ShardingConfig>,
            /// Streaming replicas of the PostgreSQL primary that take reads (stage 5 on).
            #[serde(default)]
            pub replicas: Option<ReplicasConfig>,
            /// `Secure` cookies and the sign-in limits: see [`storefront_web::signin`].
            #[serde(default)]
            pub auth: storefront_web::signin::AuthConfig,
            $(
                $(#[$doc])*
                #[serde(default)]
                pub $name: Option<$ty>,
            )*
        }

        impl StageConfig {
            /// The component sections this stage file has, in the registry's order.
            pub fn sections(&self) -> Vec<&dyn Section> {
                let mut sections: Vec<&dyn Section> = Vec::new();
                $(
                    if let Some(section) = &self.$name {
                        sections.push(section);
                    }
                )*
                sections
            }
        }
    };
}

// The registry of components: one line per section a stage file may have.
stage_config! {
    /// Caches in front of the database (stage 3 on).
    cache: CacheConfig,
    /// A gateway in front of several app processes (stage 4 on).
    gateway: GatewayConfig,
    /// The admin pages' token (stage 7): see [`storefront_web::admin`].
    admin: storefront_web::admin::AdminConfig,
    /// Who may read `/ops` and `/metrics`: see [`storefront_ops::access`] (open
    /// without the section).
    ops: storefront_ops::OpsConfig,
    /// Gateways behind balancers that share a virtual IP (stage 8).
    l4: storefront_l4::config::L4Config,
}

/// What a stage is, for `storefront stages`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StageInfo {
    /// Its number, from 1.
    pub number: u32,
    /// Its short name (`single-machine`), as in the file name.
    pub name: String,
    /// Its title.
    pub title: String,
    /// What it adds to the stage before.
    pub adds: String,
    /// What it needs to run.
    pub needs: String,
}

/// A stage file that cannot be used: where, and what is wrong.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not have the expected fields (the
    /// message names the line, column and field).
    Parse {
        /// The file.
        path: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A field has a value that cannot work.
    Invalid {
        /// The file.
        path: String,
        /// The field (`server.page_size`).
        field: &'static str,
        /// What is wrong and what to write instead.
        message: String,
    },
    /// No stage has this number.
    NoSuchStage(u32),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read { path, source } => write!(f, "cannot read {}: {source}", path.display()),
            Self::Parse { path, message } => write!(f, "{path}: {}", message.trim_end()),
            Self::Invalid {
                path,
                field,
                message,
            } => write!(f, "{path}: {field}: {message}"),
            Self::NoSuchStage(n) => {
                write!(
                    f,
                    "there is no stage {n}; `storefront stages` lists the stages (1 to {})",
                    BUILTIN.len()
                )
            }
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Read { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl StageConfig {
    /// Parses and checks a stage file's text; `origin` names it in errors.
    ///
    /// ```
    /// use storefront_stage::config::StageConfig;
    /// let err = StageConfig::parse("x.toml", "[stage]\nnumber = \"one\"\n").unwrap_err();
    /// assert!(err.to_string().contains("line 2"), "{err}");
    /// ```
    pub fn parse(origin: &str, text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            message: e.to_string(),
        })?;
        config.validate(origin)?;
        Ok(config)
    }

    /// Reads, parses and checks a stage file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&path.display().to_string(), &text)
    }

    /// The built-in configuration of stage `number`.
    pub fn builtin(number: u32) -> Result<Self, ConfigError> {
        let stage = BuiltinStage::find(number).ok_or(ConfigError::NoSuchStage(number))?;
        Self::parse(&stage.origin(), stage.file)
    }

    /// All built-in stages, in order.
    pub fn all_builtin() -> Result<Vec<Self>, ConfigError> {
        BUILTIN
            .iter()
            .map(|s| Self::parse(&s.origin(), s.file))
            .collect()
    }

    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        self.check()
            .map_err(|(field, message)| ConfigError::Invalid {
                path: origin.to_owned(),
                field,
                message,
            })
    }

    /// Each section's own check, then what ties sections together; the first
    /// problem found, as (field, what to write instead).
    fn check(&self) -> Result<(), Invalid> {
        self.stage.check()?;
        self.server.check()?;
        for section in self.sections() {
            section.check()?;
        }
        // What ties sections together.
        if let Some(gateway) = &self.gateway {
            gateway.check_beside(self.server.addr)?;
        }
        if self.l4.is_some() && self.gateway.is_none() {
            return Err((
                "l4",
                "the balancers spread connections over stage-4 gateways: add a [gateway] section"
                    .into(),
            ));
        }
        self.databases().check()
    }

    /// The picture of the stage on the ops page: the web app's pieces, the
    /// data's, and each component's.
    pub fn topology(&self) -> Topology {
        let web = storefront_web::pieces();
        let data = self.databases().pieces();
        let components = self.sections().into_iter().flat_map(|s| s.pieces());
        Topology::of(web.into_iter().chain(data).chain(components))
    }

    /// The sections that say where the shop's data lives, for the storage layer.
    pub fn databases(&self) -> Databases<'_> {
        Databases {
            database: &self.database,
            domains: self.domains.as_ref(),
            sharding: self.sharding.as_ref(),
            replicas: self.replicas.as_ref(),
        }
    }
}

impl StageInfo {
    fn check(&self) -> Result<(), (&'static str, String)> {
        if self.number == 0 {
            return Err(("stage.number", "stages are numbered from 1".into()));
        }
        if self.name.is_empty()
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err((
                "stage.name",
                format!(
                    "{:?}: use lower-case letters, digits and dashes, like \"single-machine\"",
                    self.name
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_stages_load_in_order() {
        let stages = StageConfig::all_builtin().unwrap_or_default();
        assert_eq!(stages.len(), BUILTIN.len());
        for (i, (s, builtin)) in stages.iter().zip(BUILTIN).enumerate() {
            assert_eq!(s.stage.number as usize, i + 1);
            assert_eq!(
                builtin.dir,
                format!("{:02}-{}", s.stage.number, s.stage.name),
                "the folder names the stage"
            );
            let (adds, _) = builtin.about();
            assert!(!adds.is_empty(), "{} says what it adds", builtin.dir);
            assert!(
                builtin
                    .about
                    .starts_with(&format!("# Stage {}: {}\n", s.stage.number, s.stage.title)),
                "{}/about.md starts with the stage's title",
                builtin.dir
            );
        }
        assert_eq!(stages[0].server.addr.to_string(), "127.0.0.1:8080");
        assert!(matches!(stages[0].database, DatabaseConfig::Sqlite { .. }));
        assert!(matches!(
            stages[1].database,
            DatabaseConfig::Postgres { .. }
        ));
        assert!(stages[0].cache.is_none() && stages[1].cache.is_none());
        assert!(stages[2].cache.is_some());
        assert!(stages[..3].iter().all(|s| s.gateway.is_none()));
        let gw = stages[3].gateway.clone().unwrap_or_default();
        assert!(stages[3].cache.is_some() && stages[3].gateway.is_some());
        assert_eq!(gw.instances, 3);
        assert!(gw.spawns_instances());
        assert_eq!(
            gw.instance_addrs()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["127.0.0.1:8081", "127.0.0.1:8082", "127.0.0.1:8083"]
        );
        assert!(matches!(
            StageConfig::builtin(0),
            Err(ConfigError::NoSuchStage(0))
        ));
        assert!(matches!(
            StageConfig::builtin(99),
            Err(ConfigError::NoSuchStage(99))
        ));
    }

    const GOOD: &str = r#"
[stage]
number = 1
name = "x"
title = "X"
adds = "a"
needs = "n"
[server]
addr = "127.0.0.1:1"
[database]
backend = "sqlite"
file = "a.db"
"#;

    #[test]
    fn errors_say_where() {
        assert!(StageConfig::parse("f.toml", GOOD).is_ok());
        let err = |text: &str| {
            StageConfig::parse("f.toml", text)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let e = err(&GOOD.replace("127.0.0.1:1", "nowhere"));
        assert!(e.starts_with("f.toml: ") && e.contains("line 9"), "{e}");
        let e = err(&GOOD.replace("file = ", "fil = "));
        assert!(e.contains("fil"), "{e}");
        let e = err(&GOOD.replace("\"sqlite\"", "\"oracle\""));
        assert!(e.contains("oracle"), "{e}");
        let e = err(&format!("{GOOD}\n[server.extra]\n"));
        assert!(!e.is_empty(), "{e}");
        let e = err(&GOOD.replace("[server]\n", "[server]\npage_size = 0\n"));
        assert_eq!(
            e,
            "f.toml: server.page_size: 0: use a number of products per page from 1 to 100"
        );
        let e = err(&GOOD.replace("name = \"x\"", "name = \"Bad Name\""));
        assert!(e.starts_with("f.toml: stage.name: "), "{e}");
        let pg = GOOD.replace(
            "backend = \"sqlite\"\nfile = \"a.db\"",
            "backend = \"postgres\"\nurl = \"mysql://x\"",
        );
        assert!(
            err(&pg).starts_with("f.toml: database.url: "),
            "{}",
            err(&pg)
        );
        let cache = format!("{GOOD}[cache]\nredis_url = \"http://x\"\n");
        assert!(
            err(&cache).starts_with("f.toml: cache.redis_url: "),
            "{}",
            err(&cache)
        );
        let cache = format!("{GOOD}[cache]\nredis_url = \"redis://x\"\nl1_capacity = 0\n");
        assert!(
            err(&cache).starts_with("f.toml: cache.l1_capacity: "),
            "{}",
            err(&cache)
        );
        let ok = format!("{GOOD}[cache]\nredis_url = \"redis://x\"\n");
        assert!(StageConfig::parse("f.toml", &ok).is_ok());
        // A cluster by its nodes: it replaces the server.
        let cluster = format!(
            "{GOOD}[cache]\nredis_url = \"redis://x\"\nredis_cluster = [\"redis://a:7000\", \"redis://b:7001\"]\n"
        );
        let parsed = StageConfig::parse("f.toml", &cluster).expect("a cluster");
        let target = parsed
            .cache
            .expect("a cache")
            .redis_target()
            .expect("a target");
        assert!(target.is_cluster());
        assert_eq!(target.to_string(), "redis://a:7000,redis://b:7001");
        let bad =
            format!("{GOOD}[cache]\nredis_url = \"redis://x\"\nredis_cluster = [\"a:7000\"]\n");
        assert!(
            err(&bad).starts_with("f.toml: cache.redis_cluster: "),
            "{}",
            err(&bad)
        );
    }

    #[test]
    fn gateway_errors_say_where() {
        let err = |gateway: &str| {
            StageConfig::parse("f.toml", &format!("{GOOD}[gateway]\n{gateway}"))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let parsed = StageConfig::parse("f.toml", &format!("{GOOD}[gateway]\n"));
        let gw = parsed.ok().and_then(|c| c.gateway).unwrap_or_default();
        assert_eq!(gw, GatewayConfig::default());
        assert!(err("instances = 0\n").starts_with("f.toml: gateway.instances: 0: "));
        assert!(err("base_port = 65535\n").starts_with("f.toml: gateway.base_port: 65535: "));
        // The server listens on 127.0.0.1:1: instances from port 1 would take it.
        let e = err("base_port = 1\n");
        assert!(e.contains("include the gateway's own"), "{e}");
        let e = err("addresses = [\"10.0.0.1:80\"]\n");
        assert!(
            e.starts_with("f.toml: gateway.addresses: 1 addresses but instances = 3"),
            "{e}"
        );
        let ok = "instances = 2\naddresses = [\"10.0.0.1:80\", \"10.0.0.2:80\"]\n";
        assert_eq!(err(ok), "");
        assert!(err("rate_per_sec = 0\n").starts_with("f.toml: gateway.rate_per_sec"));
        assert!(
            err("connect_timeout_ms = 5000\nupstream_timeout_ms = 5000\n")
                .starts_with("f.toml: gateway.connect_timeout_ms: 5000: give less than")
        );
        assert!(err("upstream_timeout_ms = 0\n")
            .starts_with("f.toml: gateway.upstream_timeout_ms: 0: "));
        let e = err("[gateway.breaker]\nwindow = 20\nminimum_calls = 10\nfailure_rate = 0\nopen_secs = 5\nhalf_open_probes = 2\n");
        assert!(
            e.starts_with("f.toml: gateway.breaker.failure_rate: 0: "),
            "{e}"
        );
        let e = err(
            "[gateway.ejection]\nconsecutive_failures = 5\nbase_secs = 10\nmax_percent = 101\n",
        );
        assert!(
            e.starts_with("f.toml: gateway.ejection.max_percent: 101: "),
            "{e}"
        );
        let e = err("instancs = 3\n");
        assert!(e.contains("instancs") && e.contains("line 14"), "{e}");
    }
}
