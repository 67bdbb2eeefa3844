//! Miniature machines: each "machine" of a stage (an app instance, the gateway,
//! a PostgreSQL cluster, Redis) runs in a cgroup of its own with a CPU quota, a
//! fixed fraction of a core, so that a stage's machines are separate computers
//! in miniature on one host: adding one adds capacity, and the busiest one is
//! the bottleneck.
//!
//! Linux cgroup v1, as this host has it: the `cpu` hierarchy holds the quota
//! (`cpu.cfs_quota_us` over `cpu.cfs_period_us`), the `cpuacct` hierarchy counts
//! the CPU time (`cpuacct.usage`); a machine is a group in each, under
//! `scalekit-storefront/<run>/`. A process moved in takes its threads along, and
//! what it forks afterwards starts inside (so a PostgreSQL postmaster moved in
//! brings its future backends; [`Machine::add_tree`] moves the ones it already
//! has). Dropping a [`Machines`] moves every process still inside back to the
//! root group and removes the groups; [`Machines::open`] first removes what a
//! crashed run left behind (its run name carries its process id).
//!
//! Without root or without the `cpu` and `cpuacct` controllers, [`Machines::open`]
//! says why, and the caller runs without quotas.
//!
//! ```no_run
//! use storefront_machines::Machines;
//! let Ok(machines) = Machines::open("evolve") else { return };
//! let app = machines.machine("app-1", 0.25).expect("a cgroup");
//! app.add(std::process::id()).expect("moved in");
//! // ... serve ...
//! println!("app-1 used {:?} of CPU", app.usage().expect("cpuacct.usage"));
//! ```

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

const CPU_ROOT: &str = "/sys/fs/cgroup/cpu";
const ACCT_ROOT: &str = "/sys/fs/cgroup/cpuacct";
const DIR: &str = "scalekit-storefront";
/// The scheduler period the quotas are fractions of: 10 ms, a tenth of the
/// kernel's default. A quarter-core machine runs 2.5 ms of every 10 ms; with
/// the default period a busy multi-threaded process spends its 25 ms in a
/// burst and then stops for up to 75 ms, a stall no real machine has, which
/// lands in every tail latency and wastes work held up behind locks.
const PERIOD_US: u64 = 10_000;

/// Why machines cannot be made here, or a group operation that failed.
#[derive(Debug)]
pub struct Error(String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

fn err(what: impl std::fmt::Display, e: io::Error) -> Error {
    Error(format!("{what}: {e}"))
}

/// The machines of one run, removed when dropped.
#[derive(Debug)]
pub struct Machines {
    cpu: PathBuf,
    acct: PathBuf,
}

/// One machine: a cgroup with a CPU quota.
#[derive(Debug)]
pub struct Machine {
    name: String,
    cpu: PathBuf,
    acct: PathBuf,
    cpus: f64,
}

fn write(path: &Path, value: impl std::fmt::Display) -> Result<(), Error> {
    fs::write(path, value.to_string()).map_err(|e| err(path.display(), e))
}

/// Moves every process of `group` to the hierarchy's root, then removes it
/// (children first).
fn remove_group(group: &Path, root: &Path) {
    if let Ok(entries) = fs::read_dir(group) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_group(&entry.path(), root);
            }
        }
    }
    if let Ok(procs) = fs::read_to_string(group.join("cgroup.procs")) {
        for pid in procs.split_whitespace() {
            // A process that just exited cannot be moved: nothing to do.
            let _ = fs::write(root.join("cgroup.procs"), pid);
        }
    }
    let _ = fs::remove_dir(group);
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

impl Machines {
    /// Machines for a run named `name` (letters, digits, `-`), after removing
    /// the groups of earlier runs whose process is gone; an [`Error`] saying
    /// why when this host cannot have them (not root, no `cpu` or `cpuacct`
    /// controller).
    pub fn open(name: &str) -> Result<Self, Error> {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(Error(format!(
                "run name {name:?}: use letters, digits and '-'"
            )));
        }
        for (root, file) in [(CPU_ROOT, "cpu.cfs_quota_us"), (ACCT_ROOT, "cpuacct.usage")] {
            if !Path::new(root).join(file).exists() {
                return Err(Error(format!(
                    "no cgroup v1 controller at {root} (no {file})"
                )));
            }
        }
        for root in [CPU_ROOT, ACCT_ROOT] {
            let base = Path::new(root).join(DIR);
            fs::create_dir_all(&base)
                .map_err(|e| err(format!("{} (machines need root)", base.display()), e))?;
            // Runs are `<name>-<pid>`: a run whose process is gone left these.
            for entry in fs::read_dir(&base)
                .map_err(|e| err(base.display(), e))?
                .flatten()
            {
                let run = entry.file_name().to_string_lossy().into_owned();
                let owner = run.rsplit('-').next().and_then(|p| p.parse::<u32>().ok());
                if owner.is_some_and(|pid| !alive(pid)) {
                    remove_group(&entry.path(), Path::new(root));
                }
            }
        }
        let run = format!("{name}-{}", std::process::id());
        let cpu = Path::new(CPU_ROOT).join(DIR).join(&run);
        let acct = Path::new(ACCT_ROOT).join(DIR).join(&run);
        for dir in [&cpu, &acct] {
            fs::create_dir_all(dir).map_err(|e| err(dir.display(), e))?;
        }
        Ok(Self { cpu, acct })
    }

    /// A machine named `name` with `cpus` of a core (0.25 is a quarter: 2.5 ms
    /// of every 10 ms); more than 1 is several cores' worth.
    pub fn machine(&self, name: &str, cpus: f64) -> Result<Machine, Error> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(Error(format!(
                "machine name {name:?}: use letters, digits, '-' and '_'"
            )));
        }
        if !(cpus.is_finite() && (0.01..=64.0).contains(&cpus)) {
            return Err(Error(format!(
                "machine {name}: {cpus} cores (use 0.01 to 64)"
            )));
        }
        let cpu = self.cpu.join(name);
        let acct = self.acct.join(name);
        for dir in [&cpu, &acct] {
            fs::create_dir_all(dir).map_err(|e| err(dir.display(), e))?;
        }
        write(&cpu.join("cpu.cfs_period_us"), PERIOD_US)?;
        let quota = (cpus * PERIOD_US as f64).round() as u64;
        write(&cpu.join("cpu.cfs_quota_us"), quota.max(1_000))?;
        Ok(Machine {
            name: name.to_owned(),
            cpu,
            acct,
            cpus,
        })
    }
}

impl Drop for Machines {
    fn drop(&mut self) {
        remove_group(&self.cpu, Path::new(CPU_ROOT));
        remove_group(&self.acct, Path::new(ACCT_ROOT));
        // The shared parent too, unless another run is using it.
        for root in [CPU_ROOT, ACCT_ROOT] {
            let _ = fs::remove_dir(Path::new(root).join(DIR));
        }
    }
}

/// The children of `pid`, from `/proc/*/stat`'s parent field: a gateway's app
/// instances, a postmaster's backends.
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&child| {
            fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| {
                    // The command may hold spaces and parentheses: the fields
                    // after the last ')' are state, then the parent's id.
                    let rest = &stat[stat.rfind(')')? + 1..];
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// The process that listens on TCP `port` of this host (IPv4 or IPv6, any
/// address): the server to put on a machine (a PostgreSQL postmaster, a Redis
/// server). `None` when nothing listens there, or the socket's owner is not
/// visible (another user's process, without root).
///
/// Read from `/proc/net/tcp{,6}` (the listening socket's inode) and the
/// processes' open files (`/proc/<pid>/fd`): no client of the server's
/// protocol is needed. A forked child that kept the socket (none of
/// PostgreSQL's or Redis's do) would make the answer the first one found.
///
/// ```no_run
/// let postgres = storefront_machines::listener_pid(5432);
/// println!("PostgreSQL's postmaster: {postgres:?}");
/// ```
pub fn listener_pid(port: u16) -> Option<u32> {
    let inodes: Vec<u64> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| fs::read_to_string(f).ok())
        .flat_map(|text| listening_inodes(&text, port))
        .collect();
    if inodes.is_empty() {
        return None;
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    let mut pids: Vec<u32> = fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .collect();
    // The oldest process first: the server before any child that kept the socket.
    pids.sort_unstable();
    pids.into_iter().find(|pid| {
        fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
            fds.flatten().any(|fd| {
                fs::read_link(fd.path())
                    .is_ok_and(|target| wanted.iter().any(|w| target.as_os_str() == w.as_str()))
            })
        })
    })
}

/// The inodes of the sockets listening on `port` in a `/proc/net/tcp` table.
fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    const LISTEN: &str = "0A";
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = fields.get(1)?;
            let (_, hex_port) = local.rsplit_once(':')?;
            let p = u16::from_str_radix(hex_port, 16).ok()?;
            (p == port && *fields.get(3)? == LISTEN)
                .then(|| fields.get(9)?.parse::<u64>().ok())
                .flatten()
        })
        .collect()
}

impl Machine {
    /// The machine's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its share of a core.
    pub fn cpus(&self) -> f64 {
        self.cpus
    }

    /// Moves process `pid` (all its threads) in.
    pub fn add(&self, pid: u32) -> Result<(), Error> {
        for dir in [&self.cpu, &self.acct] {
            write(&dir.join("cgroup.procs"), pid)?;
        }
        Ok(())
    }

    /// Moves `pid` and every process it has forked (and theirs) in: a
    /// PostgreSQL postmaster with its background workers and backends.
    /// Returns how many processes moved.
    pub fn add_tree(&self, pid: u32) -> Result<usize, Error> {
        let mut todo = vec![pid];
        let mut moved = 0;
        while let Some(p) = todo.pop() {
            match self.add(p) {
                Ok(()) => moved += 1,
                // Exited meanwhile: nothing to move.
                Err(_) if !alive(p) => continue,
                Err(e) => return Err(e),
            }
            todo.extend(children(p));
        }
        Ok(moved)
    }

    /// The processes inside.
    pub fn pids(&self) -> Vec<u32> {
        fs::read_to_string(self.cpu.join("cgroup.procs"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    /// CPU time used by everything inside since the machine was made.
    pub fn usage(&self) -> Result<Duration, Error> {
        let path = self.acct.join("cpuacct.usage");
        let text = fs::read_to_string(&path).map_err(|e| err(path.display(), e))?;
        let nanos: u64 = text
            .trim()
            .parse()
            .map_err(|e| Error(format!("{}: {e}", path.display())))?;
        Ok(Duration::from_nanos(nanos))
    }

    /// How often the quota stopped it, and for how long in all
    /// (`cpu.stat`'s `nr_throttled` and `throttled_time`).
    pub fn throttled(&self) -> Result<(u64, Duration), Error> {
        let path = self.cpu.join("cpu.stat");
        let text = fs::read_to_string(&path).map_err(|e| err(path.display(), e))?;
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok((
            field("nr_throttled "),
            Duration::from_nanos(field("throttled_time ")),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listening_socket_is_found_by_port_and_state() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000   107        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1538 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000   107        0 999 1 0000000000000000 20 4 30 10 -1
   2: 00000000:18EB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 77 1 0000000000000000 100 0 0 10 0
garbage line
";
        // 0x1538 = 5432: the listener, not the established connection.
        assert_eq!(listening_inodes(table, 5432), [4242]);
        assert_eq!(listening_inodes(table, 6379), [77]);
        assert!(listening_inodes(table, 80).is_empty());
    }

    #[test]
    fn this_process_is_found_listening() {
        let Ok(listener) = std::net::TcpListener::bind("127.0.0.1:0") else {
            return;
        };
        let Ok(addr) = listener.local_addr() else {
            return;
        };
        assert_eq!(listener_pid(addr.port()), Some(std::process::id()));
        drop(listener);
        assert_eq!(listener_pid(addr.port()), None);
    }
}
