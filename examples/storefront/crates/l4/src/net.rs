//! A small network of namespaces on one bridge, as stage 8 needs: hosts (two
//! balancers, the gateways, a client) each in a network namespace of its own
//! with one interface (`eth0`) on a bridge that lives in a namespace of its
//! own too, plus a link from the bridge to this host's own namespace (so the
//! host's browser reaches the virtual IP, and the hosts reach what the host
//! serves on that link's address). Every address is in `10.88.X.0/24`, `X`
//! chosen so that no other network of this kind on the host uses it; no
//! traffic leaves the machine.
//!
//! Names carry the creating process's id (`sk8-<pid>-<host>`), so that
//! [`sweep`] (called by [`Network::build`]) removes what a crashed run left:
//! its namespaces, the processes still in them, and its host link. Dropping a
//! [`Network`] removes everything it made.
//!
//! Built with the `ip` command (iproute2): what an operator would type, and
//! what the tests can show.
//!
//! ```no_run
//! use storefront_l4::net::Network;
//! let net = Network::build(&["lb1", "lb2", "gw1", "client"])?;
//! let lb1 = net.host("lb1").expect("a host");
//! println!("lb1 is {} in namespace {}", lb1.addr, lb1.namespace);
//! let status = net.command("client", "ping").args(["-c1", &lb1.addr.to_string()]).status();
//! # let _ = status;
//! # Ok::<(), storefront_l4::net::NetError>(())
//! ```

use std::fs::File;
use std::net::Ipv4Addr;
use std::process::{Command, Output};

/// Why the network could not be built or used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetError(pub String);

impl std::fmt::Display for NetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NetError {}

/// The prefix of every namespace and link this module makes.
pub const PREFIX: &str = "sk8";

/// The host part of the first host's address (`10.88.X.10`); the host link
/// is `.1`, the virtual IP `.100`.
const FIRST_HOST: u8 = 10;

/// One host: a namespace with `eth0` on the bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Its name in the network (`lb1`, `gw2` ...).
    pub name: String,
    /// The network namespace (`sk8-<pid>-<name>`).
    pub namespace: String,
    /// Its address on the bridge.
    pub addr: Ipv4Addr,
}

/// A built network, removed when dropped.
#[derive(Debug)]
pub struct Network {
    id: String,
    subnet: u8,
    hosts: Vec<Host>,
    bridge_ns: String,
    host_link: String,
}

/// Runs `ip` with `args`; its error output on failure.
fn ip(args: &[&str]) -> Result<Output, NetError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| NetError(format!("cannot run ip (iproute2): {e}")))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(NetError(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Whether this host can make network namespaces here: root, `ip` present,
/// and a namespace can be made and removed. `Err` says what is missing.
/// Probed once per process (the answer does not change while it runs).
pub fn available() -> Result<(), NetError> {
    static PROBED: std::sync::OnceLock<Result<(), NetError>> = std::sync::OnceLock::new();
    PROBED.get_or_init(probe).clone()
}

/// [`available`], and each of `programs` installed (it runs with
/// `--version`): what stage 8's parts need, or what is missing.
pub fn available_with(programs: &[&str]) -> Result<(), NetError> {
    available()?;
    for p in programs {
        if Command::new(p).arg("--version").output().is_err() {
            return Err(NetError(format!(
                "{p} is not installed (storefront services up installs it)"
            )));
        }
    }
    Ok(())
}

fn probe() -> Result<(), NetError> {
    if !rustix::process::geteuid().is_root() {
        return Err(NetError(
            "stage 8 builds network namespaces, which needs root".into(),
        ));
    }
    let probe = format!("{PREFIX}-{}-probe", std::process::id());
    ip(&["netns", "add", &probe])
        .map_err(|e| NetError(format!("cannot make a network namespace: {e}")))?;
    ip(&["netns", "del", &probe]).map(|_| ())
}

/// Whether process `pid` is alive.
fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The owner's pid in a name made here (`sk8-<pid>-<host>`, `sk8h<pid>`).
fn owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let rest = rest.strip_prefix('-').or_else(|| rest.strip_prefix('h'))?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Kills every process in namespace `ns` (`SIGKILL`) and removes it.
fn remove_namespace(ns: &str) {
    if let Ok(out) = ip(&["netns", "pids", ns]) {
        for pid in String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }
    let _ = ip(&["netns", "del", ns]);
}

/// The namespaces on this host, by name.
fn namespaces() -> Vec<String> {
    ip(&["netns", "list"])
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Removes what networks of dead processes left: their namespaces (and any
/// process still in them) and their host links. Returns what it removed.
pub fn sweep() -> Vec<String> {
    let mut removed = Vec::new();
    for ns in namespaces() {
        if owner(&ns).is_some_and(|pid| !alive(pid)) {
            remove_namespace(&ns);
            removed.push(ns);
        }
    }
    if let Ok(out) = ip(&["-o", "link", "show"]) {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Some(name) = line.split(':').nth(1).map(str::trim) else {
                continue;
            };
            let name = name.split('@').next().unwrap_or(name);
            if name.starts_with(&format!("{PREFIX}h")) && owner(name).is_some_and(|p| !alive(p)) {
                let _ = ip(&["link", "del", name]);
                removed.push(name.to_owned());
            }
        }
    }
    removed
}

/// The third octets of the `10.88.X.1` host links in this namespace.
fn subnets_in_use() -> Vec<u8> {
    ip(&["-o", "-4", "addr", "show"])
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|w| {
                    w.strip_prefix("10.88.")?
                        .strip_suffix(".1/24")?
                        .parse()
                        .ok()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Holds an exclusive lock on a file while choosing a subnet, so that two
/// networks built at once do not pick the same one.
struct SubnetLock {
    _file: File,
}

impl SubnetLock {
    fn take() -> Result<Self, NetError> {
        let path = std::env::temp_dir().join("storefront-l4-subnets.lock");
        let file = File::create(&path).map_err(|e| NetError(format!("{}: {e}", path.display())))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| NetError(format!("lock {}: {e}", path.display())))?;
        Ok(Self { _file: file })
    }
}

impl Network {
    /// Builds a network with one host per name (each name at most 8
    /// characters: letters and digits), after [`sweep`]ing what dead runs
    /// left. Fails with what is missing without root, `ip` or namespaces.
    pub fn build(names: &[&str]) -> Result<Self, NetError> {
        for name in names {
            if name.is_empty() || name.len() > 8 || !name.chars().all(|c| c.is_ascii_alphanumeric())
            {
                return Err(NetError(format!(
                    "host name {name:?}: give 1 to 8 letters or digits"
                )));
            }
        }
        if names.len() > usize::from(100 - FIRST_HOST) {
            return Err(NetError(format!("{} hosts: at most 90", names.len())));
        }
        available()?;
        sweep();
        let pid = std::process::id();
        // Several networks of one process: a counter in the id.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("{PREFIX}-{pid}-{n}");
        let lock = SubnetLock::take()?;
        let used = subnets_in_use();
        let subnet = (1..=254u8)
            .find(|x| !used.contains(x))
            .ok_or_else(|| NetError("every 10.88.X.0/24 is in use".into()))?;
        let mut net = Self {
            bridge_ns: format!("{id}-br"),
            host_link: format!("{PREFIX}h{pid}x{n}"),
            id,
            subnet,
            hosts: Vec::new(),
        };
        if net.host_link.len() > 15 {
            return Err(NetError(format!("link name {} too long", net.host_link)));
        }
        net.make_bridge()?;
        drop(lock);
        for (i, name) in names.iter().enumerate() {
            net.add_host(name, FIRST_HOST + i as u8)?;
        }
        Ok(net)
    }

    fn make_bridge(&mut self) -> Result<(), NetError> {
        let br = self.bridge_ns.clone();
        ip(&["netns", "add", &br])?;
        ip(&["-n", &br, "link", "set", "lo", "up"])?;
        ip(&["-n", &br, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &br, "link", "set", "br0", "up"])?;
        // The host's link: one end here, the other on the bridge.
        ip(&[
            "link",
            "add",
            &self.host_link,
            "type",
            "veth",
            "peer",
            "name",
            "v-host",
            "netns",
            &br,
        ])?;
        ip(&["-n", &br, "link", "set", "v-host", "master", "br0", "up"])?;
        let addr = format!("{}/24", self.addr(1));
        ip(&["addr", "add", &addr, "dev", &self.host_link])?;
        ip(&["link", "set", &self.host_link, "up"])?;
        Ok(())
    }

    fn add_host(&mut self, name: &str, last: u8) -> Result<(), NetError> {
        let ns = format!("{}-{name}", self.id);
        ip(&["netns", "add", &ns])?;
        let port = format!("v-{name}");
        ip(&[
            "link",
            "add",
            &port,
            "netns",
            &self.bridge_ns,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &ns,
        ])?;
        ip(&[
            "-n",
            &self.bridge_ns,
            "link",
            "set",
            &port,
            "master",
            "br0",
            "up",
        ])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        let addr = self.addr(last);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        self.hosts.push(Host {
            name: name.to_owned(),
            namespace: ns,
            addr,
        });
        Ok(())
    }

    /// `10.88.X.last` in this network's subnet.
    pub fn addr(&self, last: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 88, self.subnet, last)
    }

    /// The address this host (its own namespace) has on the bridge.
    pub fn host_addr(&self) -> Ipv4Addr {
        self.addr(1)
    }

    /// The address set aside for a virtual IP (`.100`).
    pub fn vip(&self) -> Ipv4Addr {
        self.addr(100)
    }

    /// The host called `name`.
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// Every host, in the order built.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// The name of the link from this host's namespace to the bridge.
    pub fn host_link(&self) -> &str {
        &self.host_link
    }

    /// `ip netns exec <namespace>` for host `name`: a command to which the
    /// program and its arguments are added (the process is the program
    /// itself, so its id is the program's).
    ///
    /// # Panics
    ///
    /// When there is no host `name` (a caller's mistake, not input).
    pub fn launcher(&self, name: &str) -> Command {
        let host = self
            .host(name)
            .unwrap_or_else(|| panic!("no host {name:?} in this network"));
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &host.namespace]);
        c
    }

    /// `program` to run inside host `name`'s namespace (see
    /// [`launcher`](Self::launcher)).
    ///
    /// # Panics
    ///
    /// When there is no host `name` (a caller's mistake, not input).
    pub fn command(&self, name: &str, program: &str) -> Command {
        let mut c = self.launcher(name);
        c.arg(program);
        c
    }

    /// Runs `f` on a thread of its own that has entered host `name`'s network
    /// namespace, and waits for it: the sockets it (and any thread it starts)
    /// opens are the host's. For a load generator on the client host, or a
    /// probe.
    pub fn run_in<T: Send + 'static>(
        &self,
        name: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, NetError> {
        self.spawn_in(name, f)?
            .join()
            .map_err(|_| NetError(format!("the thread in {name} panicked")))?
    }

    /// [`run_in`](Self::run_in) without waiting: the thread's handle.
    pub fn spawn_in<T: Send + 'static>(
        &self,
        name: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<std::thread::JoinHandle<Result<T, NetError>>, NetError> {
        let host = self
            .host(name)
            .ok_or_else(|| NetError(format!("no host {name:?}")))?;
        let path = format!("/run/netns/{}", host.namespace);
        let file = File::open(&path).map_err(|e| NetError(format!("{path}: {e}")))?;
        Ok(std::thread::spawn(move || {
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&file),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .map_err(|e| NetError(format!("setns {path}: {e}")))?;
            Ok(f())
        }))
    }

    /// Whether host `name` holds `addr` on its `eth0`.
    pub fn holds(&self, name: &str, addr: Ipv4Addr) -> bool {
        self.host(name).is_some_and(|h| {
            ip(&[
                "-n",
                &h.namespace,
                "-o",
                "-4",
                "addr",
                "show",
                "dev",
                "eth0",
            ])
            .is_ok_and(|out| {
                String::from_utf8_lossy(&out.stdout).contains(&format!("inet {addr}/"))
            })
        })
    }

    /// Sets `key` to `value` with `sysctl` inside host `name`.
    pub fn sysctl(&self, name: &str, key: &str, value: &str) -> Result<(), NetError> {
        let out = self
            .command(name, "sysctl")
            .args(["-qw", &format!("{key}={value}")])
            .output()
            .map_err(|e| NetError(format!("sysctl in {name}: {e}")))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(NetError(format!(
                "sysctl {key}={value} in {name}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }

    /// Takes host `name` off the bridge (`down`) or puts it back: a host that
    /// dies, as the network sees it.
    pub fn set_link(&self, name: &str, up: bool) -> Result<(), NetError> {
        let port = format!("v-{name}");
        ip(&[
            "-n",
            &self.bridge_ns,
            "link",
            "set",
            &port,
            if up { "up" } else { "down" },
        ])
        .map(|_| ())
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for host in &self.hosts {
            remove_namespace(&host.namespace);
        }
        remove_namespace(&self.bridge_ns);
        let _ = ip(&["link", "del", &self.host_link]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_made_here_say_whose_they_are() {
        assert_eq!(owner("sk8-1234-0-lb1"), Some(1234));
        assert_eq!(owner("sk8-1234-0-br"), Some(1234));
        assert_eq!(owner("sk8h1234x0"), Some(1234));
        assert_eq!(owner("sk8-probe"), None);
        assert_eq!(owner("other-1234"), None);
        assert_eq!(owner("sk8h"), None);
    }

    #[test]
    fn bad_host_names_are_refused_before_anything_is_made() {
        for bad in ["", "a-b", "averylongname", "lb 1"] {
            let e = Network::build(&[bad]).unwrap_err();
            assert!(e.0.contains("1 to 8 letters"), "{bad:?}: {e}");
        }
    }
}
