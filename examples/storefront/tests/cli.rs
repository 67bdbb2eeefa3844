//! The `storefront` command: `stages`, `seed` into SQLite, and configuration errors
//! that say where.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use storefront_storage::prelude::*;
use storefront_storage::SqliteStore;

fn storefront(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_storefront"))
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
fn stages_lists_every_stage_with_what_it_adds_and_needs() {
    let (ok, text) = storefront(&["stages"]);
    assert!(ok, "{text}");
    for line in [
        "1. Single machine",
        "2. Separate database",
        "3. Caches",
        "4. Load balancing",
        "5. Read/write splitting",
        "6. Business database split",
        "7. Horizontal sharding",
        "services up",
        "adds:",
        "needs:",
        "SCALEKIT_REDIS_URL",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
}

#[tokio::test]
async fn seed_fills_sqlite_in_batches() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let (ok, text) = storefront(&[
        "seed",
        "--products",
        "12000",
        "--users",
        "3",
        "--data-dir",
        data,
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("the catalog holds 12000 products"), "{text}");
    let store = SqliteStore::open(&dir.path().join("storefront.db"))
        .await
        .unwrap();
    assert_eq!(store.count_products().await.unwrap(), 12_000);
    assert_eq!(store.categories().await.unwrap().len(), 12);
    assert!(store
        .user_credentials("user3@example.com")
        .await
        .unwrap()
        .is_some());
    assert!(store
        .user_credentials("user4@example.com")
        .await
        .unwrap()
        .is_none());
}

#[test]
fn bad_stages_and_files_are_refused_with_where() {
    let (ok, text) = storefront(&["serve", "--stage", "9"]);
    assert!(!ok && text.contains("there is no stage 9"), "{text}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[stage]\nnumber = 1\nname = \"x\"\ntitle = \"X\"\nadds = \"a\"\nneeds = \"n\"\n[server]\naddr = \"127.0.0.1:0\"\npage_size = 500\n[database]\nbackend = \"sqlite\"\nfile = \"a.db\"\n").unwrap();
    let (ok, text) = storefront(&["serve", "--config", file.to_str().unwrap()]);
    assert!(
        !ok && text.contains("bad.toml: server.page_size: 500"),
        "{text}"
    );
    std::fs::write(&file, "[stage]\nnumber = \"one\"\n").unwrap();
    let (ok, text) = storefront(&["seed", "--config", file.to_str().unwrap()]);
    assert!(!ok && text.contains("line 2"), "{text}");
}

/// `services status` says what runs where; CI has run `services up` (through
/// .ci/pg-replica.sh) before the tests, so everything is up there.
#[test]
fn services_status_says_what_runs_where() {
    let (ok, text) = storefront(&["services", "status"]);
    if !ok && std::env::var_os("CI").is_none() {
        eprintln!("skipped: services status failed here (PostgreSQL not installed?):\n{text}");
        return;
    }
    assert!(ok, "{text}");
    for line in [
        "PostgreSQL primary   127.0.0.1:5434",
        "PostgreSQL replica   127.0.0.1:5433",
        // Stages 6 and 7: a cluster per database, each with its replica.
        "PostgreSQL users     127.0.0.1:5440",
        "  replica            127.0.0.1:5441",
        "PostgreSQL catalog   127.0.0.1:5442",
        "PostgreSQL orders    127.0.0.1:5444",
        "PostgreSQL orders_0  127.0.0.1:5446",
        "PostgreSQL orders_3  127.0.0.1:5452",
        "  replica            127.0.0.1:5453",
        "Redis                127.0.0.1:6379",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    if std::env::var_os("CI").is_some() {
        assert!(text.contains("storefront_orders_3"), "{text}");
        assert!(text.contains("streaming"), "{text}");
        for port in 5440..=5453 {
            let line = text
                .lines()
                .find(|l| l.contains(&format!("127.0.0.1:{port} ")))
                .unwrap_or_default();
            let up = if port % 2 == 0 {
                line.contains("up, database storefront_")
            } else {
                line.contains("up, streaming")
            };
            assert!(up, "127.0.0.1:{port} is not up: {line:?} in:\n{text}");
        }
    }
    let (ok, text) = storefront(&["services", "sideways"]);
    assert!(!ok && text.contains("invalid value"), "{text}");
}

/// `serve` with its PostgreSQL on a port where nothing listens stops within 6 s
/// (sqlx's pool alone waits 30 s), saying which database and why.
#[test]
fn serve_stops_at_once_when_its_database_cannot_be_reached() {
    use std::io::Read;
    use std::time::{Duration, Instant};

    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dead.toml");
    std::fs::write(&file, format!("[stage]\nnumber = 2\nname = \"x\"\ntitle = \"X\"\nadds = \"a\"\nneeds = \"n\"\n[server]\naddr = \"127.0.0.1:0\"\npage_size = 24\n[database]\nbackend = \"postgres\"\nurl = \"postgres://shop:secret@127.0.0.1:{dead}/shop\"\n")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_storefront"))
        .args(["serve", "--config", file.to_str().unwrap()])
        .args(["--data-dir", dir.path().to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run storefront");
    let deadline = Instant::now() + Duration::from_secs(6);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("serve still starting after 6 s");
    };
    let mut text = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        stderr.read_to_string(&mut text).unwrap();
    }
    assert!(!status.success(), "{text}");
    assert!(
        text.contains(&format!("127.0.0.1:{dead}/shop")) && text.contains("refused"),
        "{text}"
    );
    assert!(
        !text.contains("secret"),
        "the password is not shown: {text}"
    );
}
