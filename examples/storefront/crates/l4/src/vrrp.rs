//! The virtual IP: keepalived (VRRP version 3, Debian's package) on each
//! balancer host, unicast between them (no multicast on the bridge needed),
//! advertising every 100 ms. The higher priority holds the address; when it
//! stops advertising, the other takes it over after three missed adverts plus
//! its skew (about 0.36 s here) and announces it with gratuitous ARP, which
//! moves the clients' ARP entries. `nopreempt` keeps the address where it is
//! when the first balancer comes back, so a recovery does not move flows a
//! second time.
//!
//! ```
//! use storefront_l4::vrrp::Keepalived;
//! let k = Keepalived {
//!     router_id: "lb1".into(),
//!     dev: "eth0".into(),
//!     own: "10.88.1.10".parse().unwrap(),
//!     peers: vec!["10.88.1.11".parse().unwrap()],
//!     vip: "10.88.1.100".parse().unwrap(),
//!     priority: 150,
//!     advert_ms: 100,
//! };
//! let conf = k.config();
//! assert!(conf.contains("unicast_peer {\n    10.88.1.11\n  }"));
//! assert!(conf.contains("advert_int 0.1"));
//! ```

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// One balancer's keepalived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keepalived {
    /// Its name in the logs.
    pub router_id: String,
    /// The interface the virtual IP goes on.
    pub dev: String,
    /// The balancer's own address (the adverts' source).
    pub own: Ipv4Addr,
    /// The other balancers' addresses.
    pub peers: Vec<Ipv4Addr>,
    /// The virtual IP.
    pub vip: Ipv4Addr,
    /// Higher holds the address (1 to 254).
    pub priority: u8,
    /// Milliseconds between adverts (10 to 255,000; VRRP version 3).
    pub advert_ms: u32,
}

impl Keepalived {
    /// The configuration file.
    pub fn config(&self) -> String {
        let peers: String = self.peers.iter().map(|p| format!("    {p}\n")).collect();
        let advert = f64::from(self.advert_ms.clamp(10, 255_000)) / 1_000.0;
        format!(
            "global_defs {{\n  router_id {id}\n  vrrp_version 3\n  script_user root\n  enable_script_security\n}}\n\
             vrrp_instance storefront {{\n  state BACKUP\n  nopreempt\n  interface {dev}\n  virtual_router_id 88\n  priority {prio}\n  advert_int {advert}\n  unicast_src_ip {own}\n  unicast_peer {{\n{peers}  }}\n  virtual_ipaddress {{\n    {vip}/32 dev {dev}\n  }}\n}}\n",
            id = self.router_id,
            dev = self.dev,
            prio = self.priority.clamp(1, 254),
            own = self.own,
            vip = self.vip,
        )
    }

    /// Starts keepalived in the foreground through `launcher` (a command
    /// that runs its arguments in the balancer's namespace, such as
    /// `ip netns exec <ns>`, or `None` to run here), its configuration, pid
    /// files and log in `dir`. Only the VRRP part runs (`-P`).
    pub fn start(&self, launcher: Option<Command>, dir: &Path) -> Result<Running, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let conf = dir.join("keepalived.conf");
        std::fs::write(&conf, self.config()).map_err(|e| format!("{}: {e}", conf.display()))?;
        let log = std::fs::File::create(dir.join("keepalived.log"))
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut cmd = match launcher {
            Some(mut l) => {
                l.arg("keepalived");
                l
            }
            None => Command::new("keepalived"),
        };
        let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
        cmd.args(["-n", "-l", "-D", "-P", "-G", "-f"])
            .arg(&conf)
            .args(["-p", &path("keepalived.pid"), "-r", &path("vrrp.pid")])
            .args(["-c", &path("checkers.pid"), "-b", &path("bfd.pid")])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start keepalived: {e}"))?;
        Ok(Running {
            child: Some(child),
            dir: dir.to_owned(),
        })
    }
}

/// A running keepalived: stopped (its VRRP child too) when dropped.
#[derive(Debug)]
pub struct Running {
    child: Option<Child>,
    dir: PathBuf,
}

impl Running {
    /// The process ids: the parent, and its VRRP child once it has started.
    pub fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.child.iter().map(Child::id).collect();
        if let Some(vrrp) = std::fs::read_to_string(self.dir.join("vrrp.pid"))
            .ok()
            .and_then(|p| p.trim().parse().ok())
        {
            pids.push(vrrp);
        }
        pids
    }

    /// `kill -9` of both processes, as when the host dies: nothing is given
    /// up, the address stays on the dead balancer's interface.
    pub fn kill(&mut self) {
        for pid in self.pids() {
            if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("keepalived.log")).unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A stop that gives the address up, then whatever is left.
        if let Some(pid) = self
            .child
            .as_ref()
            .and_then(|c| rustix::process::Pid::from_raw(c.id() as i32))
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            for _ in 0..50 {
                if self
                    .child
                    .as_mut()
                    .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))))
                {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        self.kill();
    }
}
