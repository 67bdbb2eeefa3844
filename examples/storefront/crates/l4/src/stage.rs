//! Stage 8 as processes: the network ([`net`](crate::net)), a relay per
//! service on this host's loopback that the stage file names
//! ([`relay`](crate::relay)), the gateways (each a stage-4
//! gateway with its instances, this same program, in a namespace of its
//! own), and on each balancer host keepalived ([`crate::vrrp`]) and the
//! balancer daemon ([`daemon`](crate::daemon)). [`Stage::start`] brings them
//! up in that order and waits until the shop answers at the virtual IP;
//! [`Stage::stop`] (or dropping it) takes them down in the reverse order and
//! removes the network. A crashed run's namespaces, and the processes in them,
//! are removed by the next start ([`net::sweep`](crate::net::sweep)).

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::config::{Datapath, L4Config};
use crate::net::{NetError, Network};
use crate::vrrp::{self, Keepalived};

/// Port of each balancer's status endpoint.
pub const STATUS_PORT: u16 = 9100;

/// A stage file's `X_env` keys resolved: where a table has `url_env`
/// (`redis_url_env`, `redis_cluster_env` ...) beside `url` (`redis_url`,
/// `redis_cluster`), the variable's value (when `lookup` finds it set and not
/// empty) replaces `url`, a comma-separated list for an array, and the `_env`
/// key goes; other `_env` keys (a token's) stay. What the gateways' processes
/// read is then the file alone, whatever their environment.
///
/// ```
/// use storefront_l4::stage::resolve_env;
/// let mut doc: toml::Table = toml::from_str(
///     "[database]\nurl_env = \"PG\"\nurl = \"postgres://x@127.0.0.1/a\"\n[ops]\ntoken_env = \"T\"\n",
/// ).unwrap();
/// resolve_env(&mut doc, &|v| (v == "PG").then(|| "postgres://y@127.0.0.1/b".to_owned()));
/// assert_eq!(doc["database"]["url"].as_str(), Some("postgres://y@127.0.0.1/b"));
/// assert!(doc["database"].get("url_env").is_none());
/// assert_eq!(doc["ops"]["token_env"].as_str(), Some("T"));
/// ```
pub fn resolve_env(doc: &mut toml::Table, lookup: &dyn Fn(&str) -> Option<String>) {
    let keys: Vec<String> = doc.keys().cloned().collect();
    for key in keys {
        if let Some(base) = key.strip_suffix("_env") {
            if doc.contains_key(base) {
                let value = doc
                    .get(&key)
                    .and_then(toml::Value::as_str)
                    .and_then(lookup)
                    .filter(|v| !v.is_empty());
                if let Some(value) = value {
                    let replaced = if doc.get(base).is_some_and(toml::Value::is_array) {
                        toml::Value::Array(
                            value
                                .split(',')
                                .map(str::trim)
                                .filter(|v| !v.is_empty())
                                .map(|v| toml::Value::String(v.to_owned()))
                                .collect(),
                        )
                    } else {
                        toml::Value::String(value)
                    };
                    doc.insert(base.to_owned(), replaced);
                }
                doc.remove(&key);
                continue;
            }
        }
        if let Some(toml::Value::Table(t)) = doc.get_mut(&key) {
            resolve_env(t, lookup);
        }
    }
}

/// Every PostgreSQL or Redis URL in `value` (a stage file, walked whole)
/// that points at this host's loopback, rehosted to `host`; the servers they
/// point at (`host:port` as written), once each.
pub fn rehost_loopback(value: &mut toml::Value, host: Ipv4Addr, servers: &mut Vec<String>) {
    match value {
        toml::Value::String(text) => {
            if let Some((at, url)) = rehost(text, host) {
                let name = at.rsplit_once(':').map_or(at.as_str(), |(h, _)| h);
                if matches!(name, "127.0.0.1" | "localhost" | "[::1]") {
                    if !servers.contains(&at) {
                        servers.push(at);
                    }
                    *text = url;
                }
            }
        }
        toml::Value::Array(items) => {
            for item in items {
                rehost_loopback(item, host, servers);
            }
        }
        toml::Value::Table(t) => {
            for (_, item) in t.iter_mut() {
                rehost_loopback(item, host, servers);
            }
        }
        _ => {}
    }
}

/// `url`'s host and port (the scheme's port when it names none), and the URL
/// with its host replaced by `host`; `None` for a URL without `scheme://`.
///
/// ```
/// use storefront_l4::stage::rehost;
/// let (at, url) = rehost("postgres://postgres@127.0.0.1:5433/test", "10.88.1.1".parse().unwrap()).unwrap();
/// assert_eq!((at.as_str(), url.as_str()), ("127.0.0.1:5433", "postgres://postgres@10.88.1.1:5433/test"));
/// let (at, url) = rehost("redis://localhost", "10.88.1.1".parse().unwrap()).unwrap();
/// assert_eq!((at.as_str(), url.as_str()), ("localhost:6379", "redis://10.88.1.1:6379"));
/// ```
pub fn rehost(url: &str, host: Ipv4Addr) -> Option<(String, String)> {
    let (scheme, rest) = url.split_once("://")?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (user, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), authority),
    };
    let default = match scheme {
        "postgres" | "postgresql" => 5432,
        "redis" | "rediss" => 6379,
        _ => return None,
    };
    let (name, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().ok()?),
        None => (hostport, default),
    };
    if name.is_empty() || name.contains(',') {
        return None;
    }
    Some((
        format!("{name}:{port}"),
        format!("{scheme}://{user}{host}:{port}{path}"),
    ))
}

/// How to start the stage.
#[derive(Clone, Debug)]
pub struct Layout {
    /// The `[l4]` section.
    pub l4: L4Config,
    /// This program (the gateways and balancers are it too).
    pub exe: PathBuf,
    /// The stage file the gateways and their instances run, its URLs as this
    /// host sees them (its `_env` keys [resolved](resolve_env)): written with
    /// every loopback PostgreSQL or Redis URL pointed at a relay on the host
    /// link.
    pub gateway_file: String,
    /// A gateway's other arguments (`--data-dir DIR` ...); `serve --config
    /// FILE --behind-l4 --addr host:port` is added.
    pub gateway_args: Vec<OsString>,
    /// How long a gateway may take to be ready (its instances first).
    pub ready_timeout: Duration,
    /// Where the gateways' and balancers' output goes (`<host>.log` each);
    /// `None`: this process's own output.
    pub logs: Option<PathBuf>,
}

/// The running stage.
#[derive(Debug)]
pub struct Stage {
    /// Balancers killed by [`Stage::kill_balancer`] (their hosts are gone).
    dead: Vec<usize>,
    gateways: Vec<Child>,
    balancers: Vec<Child>,
    keepalived: Vec<vrrp::Running>,
    relays: Vec<tokio::task::JoinHandle<()>>,
    _files: tempfile::TempDir,
    // Last: removed after every process in it is gone.
    net: Network,
}

fn host_names(prefix: &str, n: u32) -> Vec<String> {
    (1..=n).map(|i| format!("{prefix}{i}")).collect()
}

fn spawn(
    mut cmd: std::process::Command,
    what: &str,
    logs: Option<&std::path::Path>,
    host: &str,
) -> Result<Child, String> {
    // A group of its own: Ctrl-C in the terminal reaches only the supervisor,
    // which stops everything in order.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    if let Some(dir) = logs {
        let path = dir.join(format!("{host}.log"));
        let log = std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let err = log
            .try_clone()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        cmd.stdout(log).stderr(err);
    }
    cmd.stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {what}: {e}"))
}

fn signal(child: &Child, signal: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

/// Waits (at most `timeout`) until `GET http://addr/readyz` answers 200.
async fn wait_ready(addr: SocketAddr, timeout: Duration, what: &str) -> Result<(), String> {
    let client = storefront_gateway::health_client(Duration::from_secs(1));
    let deadline = Instant::now() + timeout;
    loop {
        let check = storefront_gateway::check_readyz(&client, addr);
        if tokio::time::timeout(Duration::from_secs(1), check)
            .await
            .is_ok_and(|h| h.is_up())
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("{what} at {addr} was not ready within {timeout:?}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl Stage {
    /// Builds the network and starts everything; ready when it returns.
    pub async fn start(layout: &Layout) -> Result<Self, String> {
        let l4 = &layout.l4;
        let lbs = host_names("lb", l4.balancers);
        let gws = host_names("gw", l4.gateways);
        let mut names: Vec<&str> = lbs.iter().map(String::as_str).collect();
        names.extend(gws.iter().map(String::as_str));
        names.push("client");
        let net = Network::build(&names).map_err(|NetError(e)| e)?;
        let files = tempfile::Builder::new()
            .prefix("storefront-l4-")
            .tempdir()
            .map_err(|e| format!("a folder for keepalived: {e}"))?;
        let mut stage = Self {
            dead: Vec::new(),
            gateways: Vec::new(),
            balancers: Vec::new(),
            keepalived: Vec::new(),
            relays: Vec::new(),
            _files: files,
            net,
        };
        let host = stage.net.host_addr();

        // The gateways' stage file, its loopback services relayed from the
        // host link.
        let mut doc: toml::Value = toml::from_str(&layout.gateway_file)
            .map_err(|e| format!("the gateways' stage file: {e}"))?;
        let mut servers = Vec::new();
        rehost_loopback(&mut doc, host, &mut servers);
        for at in servers {
            let to = at
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| format!("cannot resolve {at}"))?;
            let listen = SocketAddr::from((host, to.port()));
            let relay = crate::relay::start(listen, to)
                .await
                .map_err(|e| format!("relay {listen} to {to}: {e}"))?;
            stage.relays.push(relay);
        }
        let file = stage._files.path().join("gateway.toml");
        let text = toml::to_string(&doc).map_err(|e| format!("the gateways' stage file: {e}"))?;
        std::fs::write(&file, text).map_err(|e| format!("{}: {e}", file.display()))?;

        // The gateways, the first alone (it may fill an empty catalog).
        let gateway_addrs: Vec<SocketAddr> = gws
            .iter()
            .map(|g| SocketAddr::from((stage.addr_of(g), l4.port)))
            .collect();
        for (i, (name, addr)) in gws.iter().zip(&gateway_addrs).enumerate() {
            let mut cmd = stage.net.launcher(name);
            cmd.arg(&layout.exe)
                .args(["serve", "--config"])
                .arg(&file)
                .args(&layout.gateway_args)
                .args(["--behind-l4", "--addr", &addr.to_string()]);
            let what = format!("gateway {name}");
            stage
                .gateways
                .push(spawn(cmd, &what, layout.logs.as_deref(), name)?);
            if i == 0 {
                wait_ready(*addr, layout.ready_timeout, "the first gateway").await?;
            }
        }
        for addr in &gateway_addrs {
            wait_ready(*addr, layout.ready_timeout, "a gateway").await?;
        }

        // The balancers: the daemon, then keepalived.
        let vip = stage.net.vip();
        let own: Vec<Ipv4Addr> = lbs.iter().map(|l| stage.addr_of(l)).collect();
        let list = gateway_addrs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",");
        for (i, name) in lbs.iter().enumerate() {
            if l4.datapath == Datapath::Nft {
                stage
                    .net
                    .sysctl(name, "net.ipv4.ip_forward", "1")
                    .map_err(|NetError(e)| e)?;
            }
            let mut cmd = stage.net.launcher(name);
            cmd.arg(&layout.exe).args([
                "l4",
                "balance",
                "--vip",
                &vip.to_string(),
                "--port",
                &l4.port.to_string(),
                "--own",
                &own[i].to_string(),
                "--gateways",
                &list,
                "--datapath",
                &l4.datapath.to_string(),
                "--interval-ms",
                &l4.health_interval_ms.to_string(),
                "--timeout-ms",
                &l4.health_timeout_ms.to_string(),
                "--fall",
                &l4.fall.to_string(),
                "--rise",
                &l4.rise.to_string(),
                "--status",
                &SocketAddr::from((own[i], STATUS_PORT)).to_string(),
            ]);
            stage.balancers.push(spawn(
                cmd,
                &format!("balancer {name}"),
                layout.logs.as_deref(),
                name,
            )?);
        }
        for (i, name) in lbs.iter().enumerate() {
            let k = Keepalived {
                router_id: name.clone(),
                dev: "eth0".into(),
                own: own[i],
                peers: own.iter().copied().filter(|a| *a != own[i]).collect(),
                vip,
                // The first balancer is preferred; each next one less.
                priority: 150u8.saturating_sub(10 * i as u8),
                advert_ms: l4.advert_ms,
            };
            let dir = stage._files.path().join(name);
            stage
                .keepalived
                .push(k.start(Some(stage.net.launcher(name)), &dir)?);
        }
        wait_ready(
            SocketAddr::from((vip, l4.port)),
            Duration::from_secs(20),
            "the shop at the virtual IP",
        )
        .await?;
        Ok(stage)
    }

    fn addr_of(&self, host: &str) -> Ipv4Addr {
        self.net
            .host(host)
            .map_or(Ipv4Addr::UNSPECIFIED, |h| h.addr)
    }

    /// The network.
    pub fn net(&self) -> &Network {
        &self.net
    }

    /// The shop's address: the virtual IP and its port.
    pub fn vip(&self, port: u16) -> SocketAddr {
        SocketAddr::from((self.net.vip(), port))
    }

    /// The balancers' status endpoints, in order.
    pub fn status_addrs(&self) -> Vec<SocketAddr> {
        self.net
            .hosts()
            .iter()
            .filter(|h| h.name.starts_with("lb"))
            .map(|h| SocketAddr::from((h.addr, STATUS_PORT)))
            .collect()
    }

    /// Which live balancer (from 0) holds the virtual IP now (a dead one
    /// keeps the address on its interface, off the network).
    pub fn holder(&self) -> Option<usize> {
        let vip = self.net.vip();
        self.net
            .hosts()
            .iter()
            .filter(|h| h.name.starts_with("lb"))
            .enumerate()
            .find(|(i, h)| !self.dead.contains(i) && self.net.holds(&h.name, vip))
            .map(|(i, _)| i)
    }

    /// Balancer `i` (from 0) dies as a host does: `kill -9` of its daemon
    /// and its keepalived, its link down. Its kernel rules stay (on a dead
    /// host they no longer matter).
    pub fn kill_balancer(&mut self, i: usize) -> Result<(), String> {
        let name = format!("lb{}", i + 1);
        if let Some(k) = self.keepalived.get_mut(i) {
            k.kill();
        }
        if let Some(b) = self.balancers.get_mut(i) {
            signal(b, rustix::process::Signal::KILL);
            let _ = b.wait();
        }
        self.dead.push(i);
        self.net.set_link(&name, false).map_err(|NetError(e)| e)
    }

    /// `kill -9` of gateway `i` (from 0); its instances get SIGTERM from the
    /// kernel (they watch their parent).
    pub fn kill_gateway(&mut self, i: usize) {
        if let Some(g) = self.gateways.get_mut(i) {
            signal(g, rustix::process::Signal::KILL);
            let _ = g.wait();
        }
    }

    /// The process ids of the gateways still running.
    pub fn gateway_pids(&self) -> Vec<u32> {
        self.gateways.iter().map(Child::id).collect()
    }

    /// Stops everything in order: the balancers (the virtual IP goes), the
    /// gateways (SIGTERM: they drain and stop their instances; SIGKILL after
    /// `grace`), the relays; then the network is removed.
    pub fn stop(mut self, grace: Duration) {
        self.keepalived.clear();
        for b in &mut self.balancers {
            signal(b, rustix::process::Signal::TERM);
        }
        for b in &mut self.balancers {
            let _ = b.wait();
        }
        for g in &self.gateways {
            signal(g, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + grace;
        for g in &mut self.gateways {
            while matches!(g.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if matches!(g.try_wait(), Ok(None)) {
                signal(g, rustix::process::Signal::KILL);
                let _ = g.wait();
            }
        }
        self.gateways.clear();
        self.balancers.clear();
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        for r in &self.relays {
            r.abort();
        }
        for p in self.balancers.iter_mut().chain(self.gateways.iter_mut()) {
            signal(p, rustix::process::Signal::KILL);
            let _ = p.wait();
        }
        // The network's drop kills whatever is left in its namespaces.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_rehosted_or_refused() {
        let h = Ipv4Addr::new(10, 88, 2, 1);
        assert_eq!(
            rehost("postgresql://u:p@db.local/x?sslmode=disable", h),
            Some((
                "db.local:5432".into(),
                "postgresql://u:p@10.88.2.1:5432/x?sslmode=disable".into()
            ))
        );
        assert_eq!(rehost("127.0.0.1:5432", h), None);
        assert_eq!(rehost("http://x:80/", h), None);
        assert_eq!(rehost("redis://:6379", h), None);
        assert_eq!(rehost("redis://a:1,b:2", h), None);
        assert_eq!(rehost("redis://host:notaport", h), None);
    }
}
