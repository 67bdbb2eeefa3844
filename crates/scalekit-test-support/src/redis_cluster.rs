//! Drills on the test Redis Cluster (`deploy/services.sh`'s, on loopback): find
//! which node serves a slot, kill a master with `SIGKILL`, fail over by hand,
//! move slots, and put the cluster back whole.
//!
//! Every drill holds [`Drill`], a lock on a file shared by all test processes, so
//! two drills never overlap; [`Drill`]'s drop runs `deploy/services.sh
//! redis-cluster up`, which restarts any killed node (it rejoins as a replica)
//! and waits until all slots are served again, so the cluster is whole after
//! every drill, even one that failed. The nodes are driven with `redis-cli`, as
//! an operator would.

use std::fs::File;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One node of the cluster, as `CLUSTER NODES` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// The node's id.
    pub id: String,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Whether it is a master.
    pub master: bool,
    /// Whether it is flagged as failing (`fail` or `fail?`).
    pub failing: bool,
    /// For a replica, the id of its master.
    pub master_id: Option<String>,
    /// Its slot ranges (masters), inclusive.
    pub slots: Vec<(u16, u16)>,
}

/// Runs `redis-cli -p port args...` and returns its standard output.
pub fn cli(port: u16, args: &[&str]) -> Result<String, String> {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .map_err(|e| format!("cannot run redis-cli: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "redis-cli -p {port} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The ports of `urls` (`redis://127.0.0.1:7000,...`).
pub fn ports(urls: &str) -> Vec<u16> {
    urls.split(',')
        .filter_map(|u| {
            u.trim()
                .rsplit(':')
                .next()?
                .trim_end_matches('/')
                .parse()
                .ok()
        })
        .collect()
}

/// The cluster as the first answering node among `ports` sees it.
pub fn nodes(ports: &[u16]) -> Result<Vec<Node>, String> {
    let mut last = String::from("no ports");
    for &port in ports {
        match cli(port, &["cluster", "nodes"]) {
            Ok(text) if !text.trim().is_empty() => return Ok(parse_nodes(&text)),
            Ok(_) => last = format!("{port}: empty answer"),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn parse_nodes(text: &str) -> Vec<Node> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            let port = f[1].split('@').next()?.rsplit(':').next()?.parse().ok()?;
            let slots = f[8..]
                .iter()
                .filter(|s| !s.starts_with('['))
                .filter_map(|s| match s.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => s.parse().ok().map(|x| (x, x)),
                })
                .collect();
            Some(Node {
                id: f[0].to_string(),
                port,
                master: f[2].contains("master"),
                failing: f[2].contains("fail"),
                master_id: (f[3] != "-").then(|| f[3].to_string()),
                slots,
            })
        })
        .collect()
}

/// The master serving `slot`, if one does.
pub fn master_of(ports: &[u16], slot: u16) -> Result<Option<Node>, String> {
    Ok(nodes(ports)?
        .into_iter()
        .find(|n| n.master && !n.failing && n.slots.iter().any(|&(a, b)| (a..=b).contains(&slot))))
}

/// The Redis Cluster slot of `key` (CRC16 of the key or its hash tag, mod 16384),
/// as the server computes it (`CLUSTER KEYSLOT`).
pub fn slot_of(port: u16, key: &str) -> Result<u16, String> {
    cli(port, &["cluster", "keyslot", key])?
        .trim()
        .parse()
        .map_err(|e| format!("CLUSTER KEYSLOT {key}: {e}"))
}

/// Polls `condition` every 50 ms for up to `limit`; the time it took to hold.
pub fn wait_for(limit: Duration, mut condition: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if condition() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// For a Tokio test: the test cluster's URLs (`SCALEKIT_REDIS_CLUSTER_URLS`) and
/// a [`Drill`] on it, begun off the runtime's threads; `None` after saying why
/// the test is skipped (a failure under `CI`, as
/// [`services`](crate::services) does).
///
/// # Panics
///
/// When the cluster cannot be made whole.
pub async fn begin_drill(test: &str) -> Option<(String, Arc<Drill>)> {
    let urls = crate::services::redis_cluster_urls(test)?;
    let begin = {
        let urls = urls.clone();
        tokio::task::spawn_blocking(move || Drill::begin(&urls))
    };
    match begin.await {
        Ok(Ok(drill)) => Some((urls, Arc::new(drill))),
        Ok(Err(e)) => panic!("{test}: the Redis Cluster is not whole: {e}"),
        Err(e) => panic!("{test}: beginning the drill failed: {e}"),
    }
}

/// Exclusive use of the test cluster for one drill; restores it when dropped.
pub struct Drill {
    /// The cluster's node ports.
    pub ports: Vec<u16>,
    _lock: fd_lock::RwLockWriteGuard<'static, File>,
}

impl std::fmt::Debug for Drill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Drill")
            .field("ports", &self.ports)
            .finish_non_exhaustive()
    }
}

fn services_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/services.sh")
}

/// `deploy/services.sh redis-cluster up`: starts the nodes that are down and
/// waits until the cluster is whole (each master with a replica).
pub fn restore() -> Result<(), String> {
    let out = Command::new("bash")
        .arg(services_script())
        .args(["redis-cluster", "up"])
        .output()
        .map_err(|e| format!("cannot run services.sh: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "services.sh redis-cluster up failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

impl Drill {
    /// Takes the cluster whose nodes `urls` names (waiting for any other drill
    /// to end), after making sure it is whole.
    pub fn begin(urls: &str) -> Result<Self, String> {
        let path = std::env::temp_dir().join("scalekit-redis-cluster-drill.lock");
        let file = File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        // One lock per drill, leaked: a few bytes per drill in a test process.
        let lock: &'static mut fd_lock::RwLock<File> =
            Box::leak(Box::new(fd_lock::RwLock::new(file)));
        let lock = lock
            .write()
            .map_err(|e| format!("lock {}: {e}", path.display()))?;
        restore()?;
        Ok(Self {
            ports: ports(urls),
            _lock: lock,
        })
    }

    /// Kills the master serving `slot` with `SIGKILL`; its port.
    pub fn kill_master_of(&self, slot: u16) -> Result<u16, String> {
        let master =
            master_of(&self.ports, slot)?.ok_or(format!("no master serves slot {slot}"))?;
        let info = cli(master.port, &["info", "server"])?;
        let pid = info
            .lines()
            .find_map(|l| l.strip_prefix("process_id:"))
            .and_then(|p| p.trim().parse::<i32>().ok())
            .ok_or("no process_id in INFO server")?;
        let status = Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .map_err(|e| format!("kill: {e}"))?;
        if !status.success() {
            return Err(format!("kill -9 {pid} failed"));
        }
        Ok(master.port)
    }

    /// Waits until a master other than `old` serves `slot`; how long it took.
    pub fn wait_promoted(&self, slot: u16, old: u16, limit: Duration) -> Option<Duration> {
        let alive: Vec<u16> = self.ports.iter().copied().filter(|&p| p != old).collect();
        wait_for(
            limit,
            || matches!(master_of(&alive, slot), Ok(Some(n)) if n.port != old),
        )
    }

    /// `CLUSTER FAILOVER` on the replica of the master serving `slot`: the two
    /// swap roles without losing a write. The new master's port.
    pub fn manual_failover(&self, slot: u16) -> Result<u16, String> {
        let all = nodes(&self.ports)?;
        let master =
            master_of(&self.ports, slot)?.ok_or(format!("no master serves slot {slot}"))?;
        let replica = all
            .iter()
            .find(|n| n.master_id.as_deref() == Some(master.id.as_str()) && !n.failing)
            .ok_or(format!("master {} has no replica", master.port))?;
        cli(replica.port, &["cluster", "failover"])?;
        let port = replica.port;
        // Every node's view, not one: the roles spread by gossip, and a tool
        // asked to act on a stale view refuses ("not known or not a master").
        wait_for(Duration::from_secs(20), || {
            self.ports
                .iter()
                .all(|&p| matches!(master_of(&[p], slot), Ok(Some(n)) if n.port == port))
        })
        .ok_or(format!(
            "replica {port} did not take over slot {slot} in every node's view"
        ))?;
        Ok(port)
    }

    /// Moves `count` slots from the master serving `slot` to another master with
    /// `redis-cli --cluster reshard` (keys migrated one by one: clients meet
    /// `ASK` during the move and `MOVED` after). Returns the two masters' ports,
    /// from and to, for [`reshard`](Self::reshard) to move them back.
    pub fn reshard_from(&self, slot: u16, count: u32) -> Result<(u16, u16), String> {
        let from = master_of(&self.ports, slot)?.ok_or(format!("no master serves slot {slot}"))?;
        // A master that serves slots: right after a failover a node's view may
        // still call the demoted master a master (with no slots) until gossip
        // reaches it.
        let to = nodes(&self.ports)?
            .into_iter()
            .find(|n| n.master && !n.failing && n.id != from.id && !n.slots.is_empty())
            .ok_or("no other master")?;
        self.reshard(from.port, to.port, count)?;
        Ok((from.port, to.port))
    }

    /// Moves `count` slots from the master on port `from` to the one on `to`.
    pub fn reshard(&self, from: u16, to: u16, count: u32) -> Result<(), String> {
        // Start only from a settled cluster: every node's view calls both
        // masters masters, no slot open, the slots agreed (right after a
        // failover gossip may still be spreading, and redis-cli refuses a
        // node that some view still calls a replica).
        let port = self.ports.first().copied().ok_or("no ports")?;
        let settled = || {
            self.master_in_every_view(from)
                && self.master_in_every_view(to)
                && Command::new("redis-cli")
                    .args(["--cluster", "check", &format!("127.0.0.1:{port}")])
                    .output()
                    .is_ok_and(|o| {
                        let text = String::from_utf8_lossy(&o.stdout);
                        !text.contains("[ERR]") && !text.contains("[WARNING]")
                    })
        };
        let mut last = String::new();
        for _ in 0..20 {
            wait_for(Duration::from_secs(15), settled).ok_or(format!(
                "the cluster did not settle before resharding {from} to {to}"
            ))?;
            // The ids are read again on every try, from the settled view.
            let all = nodes(&self.ports)?;
            let id = |port: u16| {
                all.iter()
                    .find(|n| n.port == port && n.master)
                    .map(|n| n.id.clone())
                    .ok_or(format!("no master on port {port}"))
            };
            let (from_id, to_id) = (id(from)?, id(to)?);
            let out = Command::new("redis-cli")
                .args(["--cluster", "reshard", &format!("127.0.0.1:{from}")])
                .args(["--cluster-from", &from_id, "--cluster-to", &to_id])
                .args(["--cluster-slots", &count.to_string(), "--cluster-yes"])
                .output()
                .map_err(|e| format!("redis-cli --cluster reshard: {e}"))?;
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if out.status.success() && !text.contains("*** ") {
                return Ok(());
            }
            let retry = text.contains("not known or not a master") || text.contains("don't agree");
            last = text;
            if !retry {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        Err(format!("reshard failed: {last}"))
    }

    /// Whether every answering node's view calls the node on `port` a master
    /// that is not failing.
    fn master_in_every_view(&self, port: u16) -> bool {
        self.ports.iter().all(|&p| match nodes(&[p]) {
            Ok(view) => view
                .iter()
                .any(|n| n.port == port && n.master && !n.failing),
            // A node that does not answer (killed by the drill) has no say.
            Err(_) => true,
        })
    }
}

impl Drill {
    /// Runs `step` (a kill, a wait for a promotion, a failover: each blocks on
    /// `redis-cli` or sleeps) off a Tokio test's threads, so the load it
    /// measures keeps running.
    pub async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        step: impl FnOnce(&Drill) -> T + Send + 'static,
    ) -> T {
        let drill = Arc::clone(self);
        tokio::task::spawn_blocking(move || step(&drill))
            .await
            .unwrap_or_else(|e| panic!("a drill step failed: {e}"))
    }
}

impl Drop for Drill {
    fn drop(&mut self) {
        if let Err(e) = restore() {
            eprintln!("the Redis Cluster could not be restored after a drill: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_nodes_lines_parse() {
        let text = "\
a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7003@17003 slave a1 0 1 1 connected
c3 127.0.0.1:7001@17001 master,fail? - 0 1 2 connected 5461-10922 12000 [5-<-x]
";
        let n = parse_nodes(text);
        assert_eq!(n.len(), 3);
        assert_eq!(
            (n[0].port, n[0].master, n[0].slots.clone()),
            (7000, true, vec![(0, 5460)])
        );
        assert_eq!(
            (n[1].master, n[1].master_id.as_deref()),
            (false, Some("a1"))
        );
        assert!(n[2].failing);
        assert_eq!(n[2].slots, vec![(5461, 10922), (12000, 12000)]);
        assert_eq!(
            ports("redis://127.0.0.1:7000,redis://127.0.0.1:7001/"),
            vec![7000, 7001]
        );
    }
}
