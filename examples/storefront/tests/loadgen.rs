//! The load generator against a real shop: stage 1 in process on port 0, and
//! `storefront evolve` starting stage 1 as a child process.
//! `storefront loadgen` writes a chart only when `--svg` says where.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use storefront_stage::seed::{self, SeedOptions};
use storefront_storage::SqliteStore;
use storefront_tools::loadgen::{LoadOptions, Loadgen, Mix, Mode, Workload};
use storefront_web::{self as app, AppConfig, AppState, Passwords};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journeys_against_stage_one_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SqliteStore::open(&dir.path().join("shop.db"))
            .await
            .unwrap(),
    );
    let fast = Passwords::fast_insecure();
    let options = SeedOptions {
        products: 300,
        users: 4,
        seed: 42,
    };
    seed::seed(store.as_ref(), options, &fast, &|_| {})
        .await
        .unwrap();
    let mut state = AppState::new(store, AppConfig::default());
    state.passwords = fast;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app::router(state)).await });

    let load = Loadgen::connect(LoadOptions {
        target: format!("http://{addr}"),
        mode: Mode::Closed { concurrency: 6 },
        workload: Workload::Journeys(Mix::default()),
        // Two more customers than were seeded: they are signed up.
        users: 6,
        ..LoadOptions::default()
    })
    .await
    .unwrap();
    assert!(
        load.describe().contains("over 300 products"),
        "{}",
        load.describe()
    );
    let report = load.run(Duration::from_secs(2), None).await;
    server.abort();

    let table = report.table();
    assert_eq!(report.total.errors, 0, "{table}");
    assert!(report.total.count > 100, "{table}");
    for route in [
        "GET /",
        "GET /products/{id}",
        "GET /search",
        "POST /cart/add",
        "GET /cart",
        "POST /checkout",
    ] {
        let row = report.steps.iter().find(|r| r.name == route);
        assert!(row.is_some_and(|r| r.count > 0), "no {route} in\n{table}");
    }
    // Browsing is most of the traffic: catalog pages outnumber checkouts.
    let count = |name: &str| {
        report
            .steps
            .iter()
            .find(|r| r.name == name)
            .map_or(0, |r| r.count)
    };
    assert!(count("GET /") > 2 * count("POST /checkout"), "{table}");
    let per_second: u64 = report.timeline.iter().map(|(n, _)| n).sum();
    assert_eq!(per_second, report.total.count);
}

/// Runs the storefront binary with `args`: whether it succeeded, and what it
/// printed (stdout, then stderr).
fn run(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_storefront"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run storefront");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn evolve_runs_stage_one_and_writes_the_page() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("evolution.md");
    let (ok, text) = run(&["evolve", "--stages", "1,9"]);
    assert!(
        !ok && text.contains("stage 9 is not built into this storefront"),
        "{text}"
    );
    let (ok, text) = run(&[
        "evolve",
        "--stages",
        "1",
        "--duration",
        "1",
        "--warmup",
        "0",
        "--concurrency",
        "2",
        "--users",
        "2",
        "--machine-cpu",
        "0",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    assert!(
        !dir.path().join("evolution.json").exists(),
        "no machines, no calibration"
    );
    let page = std::fs::read_to_string(&out).unwrap();
    let row = page
        .lines()
        .find(|l| l.starts_with("| 1. Single machine |"))
        .unwrap_or_else(|| panic!("no stage 1 row in\n{page}"));
    // requests/s, p50, p99, errors (0), DB queries/request, hit ratio.
    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
    assert!(cells[2].parse::<f64>().unwrap() > 0.0, "{row}");
    assert_eq!(cells[5], "0", "{row}");
    assert!(page.contains("![Requests per second and latency by stage](evolution.svg)"));
    let svg = std::fs::read_to_string(dir.path().join("evolution.svg")).unwrap();
    storefront_tools::loadgen::svg::well_formed(&svg).unwrap();
}

/// Stage 1 on a miniature machine: the page gains what it carried, the model's
/// checks and the projection, and `storefront project` reads the calibration.
#[test]
fn evolve_on_miniature_machines_calibrates_the_projection() {
    let machines = storefront_machines::Machines::open("evolve-test");
    if let Err(e) = &machines {
        assert!(std::env::var_os("CI").is_none(), "CI: no machines: {e}");
        eprintln!("skipped: no machines here: {e}");
        return;
    }
    drop(machines);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("evolution.md");
    let (ok, text) = run(&[
        "evolve",
        "--stages",
        "1",
        "--duration",
        "1",
        "--warmup",
        "0",
        "--users",
        "2",
        "--concurrency",
        "8",
        "--machine-cpu",
        "0.5",
        "--ramp-step",
        "1",
        "--ramp-steps",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    let page = std::fs::read_to_string(&out).unwrap();
    for section in [
        "## On miniature machines",
        "## The model against the measurements",
        "## Projected to real machines",
        "| 1 | 1 app machine of 0.5 core, 0 others |",
        "| 1 | 1 app machine of 1 core, 0 others |",
    ] {
        assert!(page.contains(section), "{section} in\n{page}");
    }
    let svg = std::fs::read_to_string(dir.path().join("evolution-projection.svg")).unwrap();
    storefront_tools::loadgen::svg::well_formed(&svg).unwrap();
    let calibration = dir.path().join("evolution.json");
    let (ok, text) = run(&[
        "project",
        "--stage",
        "1",
        "--calibration",
        calibration.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("machines: app 1 × 16 cores"), "{text}");
    assert!(text.contains("limited by app"), "{text}");
    let (ok, text) = run(&[
        "project",
        "--stage",
        "1",
        "--machines",
        "app=2",
        "--calibration",
        calibration.to_str().unwrap(),
    ]);
    assert!(!ok && text.contains("is one machine"), "{text}");
    let (ok, text) = run(&[
        "project",
        "--stage",
        "4",
        "--calibration",
        calibration.to_str().unwrap(),
    ]);
    assert!(!ok && text.contains("has no stage 4: it has 1"), "{text}");
}

/// `serve --machine-cpu`: the shop's process sits in its machine's cgroup while
/// it runs, and the group is gone once it stops.
#[test]
fn serve_runs_on_a_miniature_machine_until_it_stops() {
    let machines = storefront_machines::Machines::open("serve-test");
    if let Err(e) = &machines {
        assert!(std::env::var_os("CI").is_none(), "CI: no machines: {e}");
        eprintln!("skipped: no machines here: {e}");
        return;
    }
    drop(machines);
    let dir = tempfile::tempdir().unwrap();
    let port = storefront_tools::loadgen::evolve::free_port().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_storefront"))
        .args(["serve", "--stage", "1", "--machine-cpu", "0.5", "--addr"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir.path())
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start storefront serve");
    let group = std::path::PathBuf::from(format!(
        "/sys/fs/cgroup/cpu/scalekit-storefront/serve-1-{}/app",
        child.id()
    ));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut inside = false;
    while std::time::Instant::now() < deadline && !inside {
        let procs = std::fs::read_to_string(group.join("cgroup.procs")).unwrap_or_default();
        inside = procs
            .split_whitespace()
            .any(|p| p == child.id().to_string());
        std::thread::sleep(Duration::from_millis(100));
    }
    let quota = std::fs::read_to_string(group.join("cpu.cfs_quota_us")).unwrap_or_default();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(inside, "the shop never entered {}", group.display());
    // Half of the 10 ms period.
    assert_eq!(quota.trim(), "5000");
    assert!(status.success(), "{status}");
    assert!(!group.exists(), "{} is left behind", group.display());
}

/// `storefront loadgen` leaves no file behind without `--svg`, and writes the chart
/// where `--svg` says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_writes_a_chart_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SqliteStore::open(&dir.path().join("shop.db"))
            .await
            .unwrap(),
    );
    let fast = Passwords::fast_insecure();
    let options = SeedOptions {
        products: 50,
        users: 2,
        seed: 42,
    };
    seed::seed(store.as_ref(), options, &fast, &|_| {})
        .await
        .unwrap();
    let mut state = AppState::new(store, AppConfig::default());
    state.passwords = fast;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app::router(state)).await });

    let work = tempfile::tempdir().unwrap();
    let target = format!("http://{addr}");
    let run = |extra: &[&str]| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_storefront"));
        command
            .current_dir(work.path())
            .args(["loadgen", "--target", &target, "--duration", "1"])
            .args(["--warmup", "0", "--concurrency", "2", "--users", "2"])
            .args(extra)
            .env("RUST_LOG", "warn");
        command.output()
    };
    let out = run(&[]).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("Chart:"), "{text}");
    let left: Vec<_> = std::fs::read_dir(work.path()).unwrap().collect();
    assert!(left.is_empty(), "files written without --svg: {left:?}");

    let chart = work.path().join("charts").join("run.svg");
    std::fs::create_dir(work.path().join("charts")).unwrap();
    let out = run(&["--svg", chart.to_str().unwrap()]).await.unwrap();
    server.abort();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("Chart: "), "{text}");
    let svg = std::fs::read_to_string(&chart).unwrap();
    storefront_tools::loadgen::svg::well_formed(&svg).unwrap();
}
