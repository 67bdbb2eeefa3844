//! The process layout of stage 4: the gateway process starts the app instances
//! (this same executable, `storefront instance ...`), restarts one that exits
//! unexpectedly, and stops them when it stops.
//!
//! * Instances run in a process group of their own, so Ctrl-C in a terminal reaches
//!   only the gateway: it drains its requests first (within the drain deadline,
//!   `server.drain_timeout_ms` or `--drain-timeout`), then sends the instances
//!   SIGTERM (they drain within the same deadline, which the gateway passes on)
//!   and kills any still there 2 s after it. Stopping takes at most twice the
//!   deadline and 2 s; in practice the instances stop at once, as the gateway was
//!   their only client and has finished with them.
//! * If the gateway dies without stopping them (`kill -9`), each instance gets
//!   SIGTERM from the kernel (Linux `PR_SET_PDEATHSIG`, set by
//!   [`instance_setup`] in the instance).
//! * An instance that exits on its own is started again after a backoff (1 s,
//!   doubling up to 30 s while it keeps failing within 30 s of its start).

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{StatusCode, Uri};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::StageConfig;
use storefront_gateway::Gateway;

/// The environment variable that tells an instance which process started it.
pub const PARENT_PID_ENV: &str = "STOREFRONT_GATEWAY_PID";

/// How long the gateway waits for the instances' `/readyz` at start.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// How long past its drain deadline an instance asked to stop may take to exit
/// before it is killed.
const INSTANCE_STOP_MARGIN: Duration = Duration::from_secs(2);

/// Starts, watches and stops app instance processes.
#[derive(Debug)]
pub struct Supervisor {
    exe: PathBuf,
    args: Vec<OsString>,
    stop: watch::Sender<bool>,
    instances: Vec<(JoinHandle<()>, Arc<AtomicU32>)>,
    grace: Duration,
}

impl Supervisor {
    /// A supervisor that runs `exe` with `args` followed by `--number K --addr ADDR`
    /// for each instance added. Instances asked to stop get `grace` to finish.
    pub fn new(exe: PathBuf, args: Vec<OsString>, grace: Duration) -> Self {
        Self {
            exe,
            args,
            stop: watch::channel(false).0,
            instances: Vec::new(),
            grace,
        }
    }

    /// Starts instance number `number` on `addr`, and keeps it running.
    pub fn add(&mut self, number: u32, addr: SocketAddr) {
        let pid = Arc::new(AtomicU32::new(0));
        let task = tokio::spawn(keep_running(
            self.exe.clone(),
            self.args.clone(),
            number,
            addr,
            self.stop.subscribe(),
            Arc::clone(&pid),
            self.grace,
        ));
        self.instances.push((task, pid));
    }

    /// The process id of the `index`-th instance added (from 0), while it runs.
    pub fn pid(&self, index: usize) -> Option<u32> {
        self.instances
            .get(index)
            .map(|(_, pid)| pid.load(Ordering::Acquire))
            .filter(|&pid| pid != 0)
    }

    /// Stops every instance (SIGTERM, then SIGKILL after the grace period) and waits
    /// for them.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for (task, _) in self.instances {
            let _ = task.await;
        }
    }
}

async fn keep_running(
    exe: PathBuf,
    args: Vec<OsString>,
    number: u32,
    addr: SocketAddr,
    mut stop: watch::Receiver<bool>,
    pid: Arc<AtomicU32>,
    grace: Duration,
) {
    let mut backoff = Duration::from_secs(1);
    loop {
        if *stop.borrow() {
            return;
        }
        let mut command = tokio::process::Command::new(&exe);
        command
            .args(&args)
            .arg("--number")
            .arg(number.to_string())
            .arg("--addr")
            .arg(addr.to_string())
            .env(PARENT_PID_ENV, std::process::id().to_string())
            .kill_on_drop(true);
        #[cfg(unix)]
        command.process_group(0);
        let started = Instant::now();
        match command.spawn() {
            Ok(mut child) => {
                pid.store(child.id().unwrap_or(0), Ordering::Release);
                tracing::info!(
                    "instance {number} started on {addr} (pid {})",
                    child.id().unwrap_or(0)
                );
                tokio::select! {
                    status = child.wait() => {
                        pid.store(0, Ordering::Release);
                        if *stop.borrow() {
                            return;
                        }
                        let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
                        if started.elapsed() > Duration::from_secs(30) {
                            backoff = Duration::from_secs(1);
                        }
                        tracing::warn!("instance {number} on {addr} exited ({status}); restarting it in {backoff:?}");
                    }
                    _ = stop.changed() => {
                        terminate(&mut child, number, grace).await;
                        pid.store(0, Ordering::Release);
                        return;
                    }
                }
            }
            Err(e) => {
                tracing::error!(
                    "cannot start instance {number} ({}): {e}; trying again in {backoff:?}",
                    exe.display()
                );
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// SIGTERM, wait up to `grace`, then SIGKILL.
async fn terminate(child: &mut tokio::process::Child, number: u32, grace: Duration) {
    #[cfg(unix)]
    if let Some(pid) = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(_) => tracing::info!("instance {number} stopped"),
        Err(_) => {
            tracing::warn!("instance {number} did not stop within {grace:?}: killing it");
            let _ = child.kill().await;
        }
    }
}

/// Called first in an instance process started by the gateway: asks the kernel to
/// send this process SIGTERM when the gateway dies, and refuses to run if it
/// already has. Does nothing in a process not started by a gateway.
pub fn instance_setup() -> Result<(), String> {
    let Some(parent) = std::env::var(PARENT_PID_ENV)
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
    else {
        return Ok(());
    };
    #[cfg(target_os = "linux")]
    {
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM))
            .map_err(|e| format!("cannot ask to be stopped with the gateway: {e}"))?;
        if rustix::process::getppid().map(|p| p.as_raw_nonzero().get()) != Some(parent) {
            return Err(format!(
                "the gateway that started this instance (pid {parent}) is gone"
            ));
        }
    }
    let _ = parent;
    Ok(())
}

/// Waits until `GET /readyz` answers 200 on every address, or `timeout` passes.
pub async fn wait_ready(addrs: &[SocketAddr], timeout: Duration) -> Result<(), String> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let deadline = Instant::now() + timeout;
    for addr in addrs {
        let uri = Uri::try_from(format!("http://{addr}/readyz")).map_err(|e| e.to_string())?;
        loop {
            let req = axum::http::Request::get(uri.clone())
                .body(Full::new(Bytes::new()))
                .map_err(|e| e.to_string())?;
            let ok = matches!(
                tokio::time::timeout(Duration::from_secs(2), client.request(req)).await,
                Ok(Ok(resp)) if resp.status() == StatusCode::OK
            );
            if ok {
                break;
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the app instance at {addr} was not ready within {timeout:?} (see its log above)"
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// `storefront serve --stage 4`: starts the stage's instances (unless it lists
/// `addresses` of instances started elsewhere), waits for them to be ready (the
/// first alone, so that only it fills an empty catalog), then serves the gateway on
/// `addr` until Ctrl-C or SIGTERM; then drains the gateway and stops the instances.
///
/// `stage`, `config_file` and `data_dir` are passed on to the instances, which load
/// the same configuration.
pub async fn run_stage(
    config: &StageConfig,
    stage: u32,
    config_file: Option<&Path>,
    data_dir: &Path,
    addr: SocketAddr,
) -> Result<(), crate::compose::BoxError> {
    let gw = config
        .gateway
        .as_ref()
        .ok_or("this stage has no [gateway] section")?;
    let addrs = gw.instance_addrs();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let supervisor = if gw.spawns_instances() {
        match start_instances(config, stage, config_file, data_dir, &addrs).await? {
            Some(sup) => Some(sup),
            // Stopped before the instances were ready.
            None => return Ok(()),
        }
    } else {
        None
    };
    let gateway = Gateway::new(gw, &addrs)?;
    // Each client connection may hold one to an instance: two descriptors.
    let server = Arc::new(storefront_server::Server::new(
        storefront_server::Limits::from_config(&config.server).fit_to_file_limit(2),
    ));
    // The ops page at the gateway: its own figures and the instances' summed.
    let ops = Arc::new(crate::compose::ops_for(config));
    let poller = gateway.attach_ops(Arc::clone(&ops));
    let figures = Arc::clone(&server);
    ops.set_connections(Arc::new(move || figures.stats()));
    let sampler = ops.start();
    let health = gateway.spawn_health_checks();
    tracing::info!(
        "stage {} ({}): gateway serving at http://{addr} in front of {} instances",
        config.stage.number,
        config.stage.title,
        addrs.len()
    );
    let served = gateway
        .serve_with(&server, listener, storefront_server::shutdown_signal())
        .await;
    health.abort();
    poller.abort();
    sampler.abort();
    if let Some(sup) = supervisor {
        tracing::info!("gateway drained; stopping the instances");
        sup.stop().await;
    }
    served?;
    tracing::info!("stopped");
    Ok(())
}

/// Starts the instances of a stage whose gateway spawns them, the first alone
/// (so that only it fills an empty catalog), and waits until all are ready.
/// `None` when Ctrl-C or SIGTERM came first (they are stopped again).
async fn start_instances(
    config: &StageConfig,
    stage: u32,
    config_file: Option<&Path>,
    data_dir: &Path,
    addrs: &[SocketAddr],
) -> Result<Option<Supervisor>, crate::compose::BoxError> {
    // A taken port would only show as an instance restarting again and again.
    for (k, a) in addrs.iter().enumerate() {
        std::net::TcpListener::bind(a).map_err(|e| {
            format!(
                "instance {} cannot listen on {a}: {e}; change gateway.base_port",
                k + 1
            )
        })?;
    }
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot find this program to start the instances: {e}"))?;
    let mut args: Vec<OsString> = vec!["instance".into()];
    match config_file {
        Some(file) => {
            args.push("--config".into());
            args.push(std::path::absolute(file)?.into());
        }
        None => {
            args.push("--stage".into());
            args.push(stage.to_string().into());
        }
    }
    args.push("--data-dir".into());
    args.push(std::path::absolute(data_dir)?.into());
    // The instances drain as the gateway does (the flag may have changed it);
    // one still there a moment after its own deadline is killed.
    let drain = Duration::from_millis(config.server.drain_timeout_ms);
    args.push("--drain-timeout".into());
    args.push(format!("{}ms", drain.as_millis()).into());
    let mut sup = Supervisor::new(exe, args, drain + INSTANCE_STOP_MARGIN);
    tracing::info!(
        "starting {} app instances on {}",
        addrs.len(),
        addrs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let ready = async {
        let (first, rest) = addrs.split_first().ok_or("no instances")?;
        sup.add(1, *first);
        wait_ready(std::slice::from_ref(first), READY_TIMEOUT).await?;
        for (i, a) in rest.iter().enumerate() {
            sup.add(i as u32 + 2, *a);
        }
        wait_ready(rest, READY_TIMEOUT).await
    };
    let outcome = tokio::select! {
        r = ready => r.map(|()| true),
        () = storefront_server::shutdown_signal() => Ok(false),
    };
    match outcome {
        Ok(true) => Ok(Some(sup)),
        Ok(false) => {
            sup.stop().await;
            Ok(None)
        }
        Err(e) => {
            sup.stop().await;
            Err(e.into())
        }
    }
}
