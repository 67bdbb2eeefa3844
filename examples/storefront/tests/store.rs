//! The storage contract, run against both backends: SQLite (always) and PostgreSQL
//! (with `SCALEKIT_PG_URL`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

#[path = "common/suite.rs"]
mod suite;

use suite::*;

/// Writes a `#[tokio::test]` per backend for each `async fn(Arc<dyn Store>)`.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let (store, _dir) = crate::common::sqlite().await;
                    super::$name(store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some((store, _schema)) = crate::common::postgres(stringify!($name)).await else { return };
                    super::$name(store).await;
                }
            )*
        }
    };
}

both_backends!(
    catalog_lists_pages_and_categories,
    search_matches_every_word_and_binds_input,
    accounts_and_sessions,
    cart_adds_caps_and_removes,
    checkout_writes_the_order_and_empties_the_cart,
    checkout_refuses_what_is_not_in_stock,
    concurrent_checkouts_never_oversell,
);

/// Every PostgreSQL stage (2, 5, 6, 7) with its servers moved to a port where
/// nothing listens: opening fails at once (well within a 6 s deadline, where
/// sqlx's pool alone waits 30 s) and names the database and the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_fails_the_start_with_its_address_and_why() {
    use std::time::Duration;
    use storefront_stage::config::{BuiltinStage, StageConfig};

    // The stages' servers (5432 to 5434, and a server per database from 5440 to
    // 5453 in stages 6 and 7), each moved to a port of its own where nothing
    // listens (a replica on its primary's port would be refused as the primary).
    let ports: Vec<u16> = (5432..=5434).chain(5440..=5453).collect();
    let base = (20_000..60_000)
        .step_by(97)
        .find(|base| {
            (*base..*base + ports.len() as u16)
                .all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
        })
        .expect("free ports");
    let dead = |port: u16| base + ports.iter().position(|p| *p == port).unwrap_or(0) as u16;
    let dir = tempfile::tempdir().unwrap();
    for number in [2, 5, 6, 7] {
        let builtin = BuiltinStage::find(number).unwrap();
        // No environment override, every server on a dead port.
        let text: String = builtin
            .file
            .lines()
            .filter(|line| !line.trim_start().starts_with("url_env"))
            .map(|line| {
                let mut line = line.to_owned();
                for port in &ports {
                    line = line.replace(
                        &format!("127.0.0.1:{port}"),
                        &format!("127.0.0.1:{}", dead(*port)),
                    );
                }
                line + "\n"
            })
            .collect();
        let config = StageConfig::parse(&builtin.origin(), &text).unwrap();
        let opened = tokio::time::timeout(
            Duration::from_secs(6),
            storefront_storage::open(&config.databases(), dir.path()),
        )
        .await;
        let err = match opened {
            Ok(Err(e)) => e.to_string(),
            Ok(Ok(store)) => panic!("stage {number}: opened {store:?} on a dead port"),
            Err(_) => panic!("stage {number}: still opening after 6 s"),
        };
        let on_a_dead_port = (base..base + ports.len() as u16)
            .any(|port| err.contains(&format!("127.0.0.1:{port}/")));
        assert!(
            on_a_dead_port && err.contains("refused"),
            "stage {number}: {err}"
        );
        assert!(!err.contains("postgres@"), "no user in the message: {err}");
    }
}

/// A fresh SQLite store is readable by its owner only: the folders it makes 0700,
/// the database file and its `-wal` and `-shm` files 0600.
#[cfg(unix)]
#[tokio::test]
async fn sqlite_files_and_folders_are_private() {
    use std::os::unix::fs::PermissionsExt;
    use storefront_storage::prelude::*;
    use storefront_storage::SqliteStore;

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("storefront-data");
    let file = data.join("nested").join("storefront.db");
    let store = SqliteStore::open(&file).await.unwrap();
    store
        .insert_categories(&[("books".into(), "Books".into())])
        .await
        .unwrap();
    let mode = |path: &std::path::Path| {
        std::fs::metadata(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(&data), 0o700, "{}", data.display());
    assert_eq!(mode(&data.join("nested")), 0o700);
    for suffix in ["", "-wal", "-shm"] {
        let path = std::path::PathBuf::from(format!("{}{suffix}", file.display()));
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
    // Opening it again keeps it as it is.
    drop(store);
    let again = SqliteStore::open(&file).await.unwrap();
    assert_eq!(again.categories().await.unwrap().len(), 1);
    assert_eq!(mode(&file), 0o600);
}
