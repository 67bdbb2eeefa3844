//! A stage on miniature machines: each of its processes (the app or each
//! instance, the gateway, each PostgreSQL cluster, Redis) moved into a
//! [`storefront_machines`] cgroup with a CPU quota, and the CPU time each one
//! used over a window read back.
//!
//! Which servers a stage uses is read from its prepared stage file: every
//! `postgres://` and `redis://` URL on this host names a server, and the
//! process listening on its port is that server's machine (a PostgreSQL
//! postmaster with every backend it has and will fork, a Redis server).
//! Servers the stage file names several times (the catalog and the users
//! databases in one cluster) are one machine.

use std::time::Duration;

use storefront_machines::{children, listener_pid, Machine, Machines};

/// What a machine does, for the model (machines of a kind share its demand).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// The shop's process (stage 1 to 3), or one app instance behind the gateway.
    App,
    /// The gateway in front of the instances (stage 4 on).
    Gateway,
    /// A PostgreSQL cluster that takes writes (the primary, a domain's or a
    /// shard's database).
    Postgres,
    /// A streaming replica: it takes reads.
    Replica,
    /// A Redis server (or one node of a cluster).
    Redis,
}

impl Kind {
    /// The kind's name in tables.
    pub fn label(self) -> &'static str {
        match self {
            Kind::App => "app",
            Kind::Gateway => "gateway",
            Kind::Postgres => "PostgreSQL",
            Kind::Replica => "replica",
            Kind::Redis => "Redis",
        }
    }
}

/// A server a stage file names, on this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backing {
    /// The machine's name (`db`, `replica`, `users-db`, `redis` ...).
    pub name: String,
    /// What it is.
    pub kind: Kind,
    /// Its TCP port on this host.
    pub port: u16,
}

/// The servers on this host that stage file `text` (TOML) names, one per
/// port: every string (or string in an array or table) that is a
/// `postgres://`, `postgresql://` or `redis://` URL whose host is loopback.
/// The name says where it was found: `users-db` for `[domains] users`,
/// `db` for `[database]`, `shards-db` for `[sharding]`, `redis`, and a
/// replica is named after its primary (`users-replica`; `replica` for the
/// `[database]`'s). Domains are read before `[database]`, so a database that
/// is also a domain's takes the domain's name; a shard server whose database
/// is not in `[sharding] databases` (a resharding target, idle until a
/// reshard) is left out, and so are the replicas of a primary left out.
pub fn backing_servers(text: &str) -> Result<Vec<Backing>, String> {
    let doc: toml::Table =
        toml::from_str(text).map_err(|e| format!("the prepared stage file: {e}"))?;
    let mut found = Vec::new();
    let mut sections: Vec<(&String, &toml::Value)> = doc.iter().collect();
    let rank = |name: &str| match name {
        "domains" => 0,
        "sharding" => 1,
        "database" => 2,
        "replicas" => 4,
        _ => 3,
    };
    sections.sort_by_key(|(name, _)| rank(name));
    let in_use: Vec<&str> = doc
        .get("sharding")
        .and_then(|s| s.get("databases"))
        .and_then(toml::Value::as_array)
        .map(|a| a.iter().filter_map(toml::Value::as_str).collect())
        .unwrap_or_default();
    for (section, value) in sections {
        if section == "replicas" {
            continue;
        }
        walk(section, section, value, &in_use, &mut found);
    }
    // Replicas: `servers` of the section itself (the [database]'s primary),
    // and of each `[[replicas.cluster]]`, named after its primary.
    let mut extra = Vec::new();
    if let Some(replicas) = doc.get("replicas") {
        let mut add = |primary: Option<&Backing>, servers: Option<&toml::Value>| {
            let name = match primary {
                None => "replica".to_owned(),
                Some(p) if p.name == "db" => "replica".to_owned(),
                Some(p) => format!("{}-replica", p.name.trim_end_matches("-db")),
            };
            for url in servers
                .and_then(toml::Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(toml::Value::as_str)
            {
                if let Some(mut b) = backing("replicas", "servers", url) {
                    b.name = name.clone();
                    extra.push(b);
                }
            }
        };
        let database = found.iter().find(|b| b.name == "db").cloned();
        add(database.as_ref(), replicas.get("servers"));
        for cluster in replicas
            .get("cluster")
            .and_then(toml::Value::as_array)
            .into_iter()
            .flatten()
        {
            let port = cluster
                .get("primary")
                .and_then(toml::Value::as_str)
                .and_then(|p| p.rsplit_once(':'))
                .and_then(|(_, port)| port.parse::<u16>().ok());
            // A primary that is not one of the stage's (a reshard target): none.
            let Some(primary) = found.iter().find(|b| Some(b.port) == port).cloned() else {
                continue;
            };
            add(Some(&primary), cluster.get("servers"));
        }
    }
    found.extend(extra);
    let mut out: Vec<Backing> = Vec::new();
    for b in found {
        if !out.iter().any(|o| o.port == b.port) {
            out.push(b);
        }
    }
    // Two servers of one name (two shards): number them by port.
    let names: Vec<String> = out.iter().map(|b| b.name.clone()).collect();
    for b in &mut out {
        if names.iter().filter(|n| **n == b.name).count() > 1 {
            b.name = format!("{}-{}", b.name, b.port);
        }
    }
    Ok(out)
}

fn walk(section: &str, key: &str, value: &toml::Value, in_use: &[&str], out: &mut Vec<Backing>) {
    match value {
        toml::Value::String(s) => {
            if let Some(b) = backing(section, key, s) {
                out.push(b);
            }
        }
        toml::Value::Array(items) => {
            for item in items {
                walk(section, key, item, in_use, out);
            }
        }
        toml::Value::Table(table) => {
            for (k, v) in table {
                // `[sharding.servers]`: a database's server, if it is in use.
                if section == "sharding" && key == "servers" && !in_use.contains(&k.as_str()) {
                    continue;
                }
                walk(section, k, v, in_use, out);
            }
        }
        _ => {}
    }
}

fn backing(section: &str, key: &str, url: &str) -> Option<Backing> {
    let (scheme, rest) = url.split_once("://")?;
    let kind = match scheme {
        "postgres" | "postgresql" if section == "replicas" => Kind::Replica,
        "postgres" | "postgresql" => Kind::Postgres,
        "redis" => Kind::Redis,
        _ => return None,
    };
    let authority = rest.split(['/', '?']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = host_port.rsplit_once(':')?;
    if !matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
        return None;
    }
    let port: u16 = port.parse().ok()?;
    let name = match (kind, section) {
        (Kind::Replica, _) => "replica".to_owned(),
        (Kind::Redis, _) => "redis".to_owned(),
        (_, "database") => "db".to_owned(),
        (_, "domains") => format!("{key}-db"),
        (_, "sharding") => "shards-db".to_owned(),
        (_, other) => format!("{other}-db"),
    };
    let name = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    Some(Backing { name, kind, port })
}

/// One placed machine.
#[derive(Debug)]
pub struct Placed {
    /// The cgroup.
    pub machine: Machine,
    /// What it runs.
    pub kind: Kind,
}

/// A stage's machines. Dropping it moves every process back to the host's
/// root group (PostgreSQL and Redis keep running, unlimited).
#[derive(Debug)]
pub struct Placement {
    placed: Vec<Placed>,
    // Dropped after the machines' handles (which are only paths).
    _machines: Machines,
}

/// CPU seconds each machine used over a window.
#[derive(Clone, Debug, PartialEq)]
pub struct Usage {
    /// Per machine: name, kind, its cores, CPU seconds used.
    pub machines: Vec<(String, Kind, f64, f64)>,
}

/// A machine `name` of `cpus` cores with process `pid` in it (and, with
/// `tree`, every process it forked).
fn put(
    machines: &Machines,
    name: &str,
    kind: Kind,
    cpus: f64,
    pid: u32,
    tree: bool,
) -> Result<Placed, String> {
    let machine = machines.machine(name, cpus).map_err(|e| e.to_string())?;
    let moved = if tree {
        machine.add_tree(pid).map(|_| ())
    } else {
        machine.add(pid)
    };
    moved.map_err(|e| format!("{name}: {e}"))?;
    Ok(Placed { machine, kind })
}

impl Placement {
    /// Moves stage server `pid` (and, when it is a gateway, each instance it
    /// started: its children) and the `servers` the stage uses onto machines of
    /// `cpus` cores each; `app_cpus` for the app machines when given.
    pub fn place(
        run: &str,
        pid: u32,
        servers: &[Backing],
        cpus: f64,
        app_cpus: Option<f64>,
    ) -> Result<Self, String> {
        let machines = Machines::open(run).map_err(|e| e.to_string())?;
        let mut placed = Vec::new();
        let app_cpus = app_cpus.unwrap_or(cpus);
        let mut instances = children(pid);
        instances.sort_unstable();
        if instances.is_empty() {
            placed.push(put(&machines, "app", Kind::App, app_cpus, pid, true)?);
        } else {
            // The gateway alone (not its tree): its instances go to machines
            // of their own.
            placed.push(put(&machines, "gateway", Kind::Gateway, cpus, pid, false)?);
            for (i, child) in instances.iter().enumerate() {
                let name = format!("app-{}", i + 1);
                placed.push(put(&machines, &name, Kind::App, app_cpus, *child, true)?);
            }
        }
        for server in servers {
            let owner = listener_pid(server.port).ok_or_else(|| {
                format!(
                    "{} (port {}): no process of this host listens there",
                    server.name, server.port
                )
            })?;
            placed.push(put(
                &machines,
                &server.name,
                server.kind,
                cpus,
                owner,
                true,
            )?);
        }
        Ok(Self {
            placed,
            _machines: machines,
        })
    }

    /// The machines, gateway and apps first.
    pub fn machines(&self) -> &[Placed] {
        &self.placed
    }

    /// CPU time used so far by each machine.
    pub fn usage(&self) -> Usage {
        Usage {
            machines: self
                .placed
                .iter()
                .map(|p| {
                    (
                        p.machine.name().to_owned(),
                        p.kind,
                        p.machine.cpus(),
                        p.machine.usage().map_or(0.0, |d| d.as_secs_f64()),
                    )
                })
                .collect(),
        }
    }
}

impl Usage {
    /// What was used between `self` (earlier) and `later`.
    pub fn until(&self, later: &Usage) -> Usage {
        Usage {
            machines: later
                .machines
                .iter()
                .map(|(name, kind, cpus, after)| {
                    let before = self
                        .machines
                        .iter()
                        .find(|m| &m.0 == name)
                        .map_or(0.0, |m| m.3);
                    (name.clone(), *kind, *cpus, (after - before).max(0.0))
                })
                .collect(),
        }
    }

    /// Each machine's use as cores: CPU seconds over `window`.
    pub fn per_second(&self, window: Duration) -> Usage {
        let secs = window.as_secs_f64();
        Usage {
            machines: self
                .machines
                .iter()
                .map(|(n, k, c, used)| {
                    (
                        n.clone(),
                        *k,
                        *c,
                        if secs > 0.0 { used / secs } else { 0.0 },
                    )
                })
                .collect(),
        }
    }

    /// The busiest machine over a window of `window`: name and utilisation
    /// (CPU used over its quota, 0 to about 1).
    pub fn busiest(&self, window: Duration) -> Option<(String, f64)> {
        let secs = window.as_secs_f64();
        self.machines
            .iter()
            .filter(|m| m.2 > 0.0 && secs > 0.0)
            .map(|(name, _, cpus, used)| (name.clone(), used / (cpus * secs)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stage_files_servers_are_found_once_each() {
        let text = r#"
            [database]
            url = "postgres://postgres@127.0.0.1:5434/storefront?options=-csearch_path%3Dx"
            [domains]
            users = "postgres://postgres@127.0.0.1:5440/storefront_users"
            catalog = "postgres://postgres@127.0.0.1:5434/storefront_catalog"
            [replicas]
            servers = ["postgres://postgres@127.0.0.1:5433", "postgres://postgres@127.0.0.1:5441"]
            [cache]
            redis_url = "redis://127.0.0.1:6379"
            namespace = "redis://not-a-host"
            [elsewhere]
            url = "postgres://db.example.com:5432/x"
            other = "http://127.0.0.1:8080"
        "#;
        let got = found(text);
        let got: Vec<(&str, Kind, u16)> =
            got.iter().map(|(n, k, p)| (n.as_str(), *k, *p)).collect();
        assert_eq!(
            got,
            [
                // The catalog's domain database is the [database]'s too.
                ("catalog-db", Kind::Postgres, 5434),
                ("users-db", Kind::Postgres, 5440),
                ("redis", Kind::Redis, 6379),
                ("replica-5433", Kind::Replica, 5433),
                ("replica-5441", Kind::Replica, 5441),
            ]
        );
        assert!(backing_servers("not toml [").is_err());
    }

    fn found(text: &str) -> Vec<(String, Kind, u16)> {
        backing_servers(text)
            .unwrap_or_default()
            .into_iter()
            .map(|b| (b.name, b.kind, b.port))
            .collect()
    }

    #[test]
    fn a_cluster_per_database_names_each_primary_and_its_replica() {
        // Stage 7's shape: domains, shards on servers of their own (two in
        // use, one a reshard target), each primary with its replica.
        let text = r#"
            [database]
            url = "postgres://postgres@127.0.0.1:5442/storefront_catalog"
            [domains]
            users = "postgres://postgres@127.0.0.1:5440/storefront_users"
            catalog = "postgres://postgres@127.0.0.1:5442/storefront_catalog"
            [[replicas.cluster]]
            primary = "127.0.0.1:5440"
            servers = ["postgres://postgres@127.0.0.1:5441"]
            [[replicas.cluster]]
            primary = "127.0.0.1:5442"
            servers = ["postgres://postgres@127.0.0.1:5443"]
            [[replicas.cluster]]
            primary = "127.0.0.1:5446"
            servers = ["postgres://postgres@127.0.0.1:5447"]
            [[replicas.cluster]]
            primary = "127.0.0.1:5448"
            servers = ["postgres://postgres@127.0.0.1:5449"]
            [[replicas.cluster]]
            primary = "127.0.0.1:5450"
            servers = ["postgres://postgres@127.0.0.1:5451"]
            [sharding]
            databases = ["orders_0", "orders_1"]
            reshard_to = ["orders_0", "orders_2", "orders_1"]
            [sharding.servers]
            orders_0 = "postgres://postgres@127.0.0.1:5446"
            orders_1 = "postgres://postgres@127.0.0.1:5448"
            orders_2 = "postgres://postgres@127.0.0.1:5450"
        "#;
        let names: Vec<String> = found(text).into_iter().map(|b| b.0).collect();
        assert_eq!(
            names,
            [
                "catalog-db",
                "users-db",
                "shards-db-5446",
                "shards-db-5448",
                "users-replica",
                "catalog-replica",
                "shards-replica-5447",
                "shards-replica-5449",
            ]
        );
    }

    #[test]
    fn usage_over_a_window_names_the_busiest_machine() {
        let at = |a: f64, b: f64| Usage {
            machines: vec![
                ("app".into(), Kind::App, 0.25, a),
                ("db".into(), Kind::Postgres, 0.5, b),
            ],
        };
        let used = at(1.0, 1.0).until(&at(3.0, 3.5));
        assert_eq!(used.machines[0].3, 2.0);
        // 2 s of 0.25 core over 10 s: 80%; 2.5 s of 0.5 core: 50%.
        let (name, share) = used.busiest(Duration::from_secs(10)).unwrap_or_default();
        assert_eq!(name, "app");
        assert!((share - 0.8).abs() < 1e-9);
    }
}
