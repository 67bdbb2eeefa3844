//! The composition root, `storefront_stage::compose::build`, as `serve` and each
//! `instance` use it: a stage file in, a process's routes out, with its parts
//! wired (the store metered into the ops recorder, the caches reporting to it,
//! the demo catalog seeded), driven without a socket. Stage 3 runs on the real
//! PostgreSQL and Redis of `SCALEKIT_PG_URL` and `SCALEKIT_REDIS_URL` in a schema
//! and namespace of its own, prepared the way `evolve` prepares a run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::Value;
use storefront_stage::catalog::BuiltinStages;
use storefront_stage::compose::{build, BuildOptions};
use storefront_stage::config::{DatabaseConfig, StageConfig};
use storefront_tools::stages::StageCatalog;
use tower::ServiceExt;

async fn get(app: &Router, path: &str) -> (StatusCode, String) {
    let response = app
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn data(app: &Router) -> Value {
    let (status, body) = get(app, "/ops/data.json").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn stage_1_is_built_seeded_and_metered() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StageConfig::builtin(1).unwrap();
    config.database = DatabaseConfig::Sqlite {
        file: PathBuf::from("shop.db"),
        seed_if_empty: 30,
    };
    let options = BuildOptions {
        data_dir: dir.path().into(),
        behind_proxy: false,
    };
    let app = build(&config, &options).await.unwrap();
    assert!(
        dir.path().join("shop.db").is_file(),
        "the file is in the data dir"
    );
    assert_eq!(get(&app.router, "/readyz").await.0, StatusCode::OK);
    let (status, page) = get(&app.router, "/products/1").await;
    assert_eq!(status, StatusCode::OK, "the demo catalog was seeded");
    assert!(page.contains("<h1>"), "{page}");
    let d = data(&app.router).await;
    assert_eq!(d["stage"]["number"], 1);
    // The picture: the web app's pieces and the data's, nothing else.
    let tiers = &d["topology"]["tiers"];
    assert_eq!(tiers.as_array().map(Vec::len), Some(3), "{d}");
    assert_eq!(tiers[2]["nodes"][0]["title"], "SQLite file");
    // The product page reached the database through the metered store.
    assert!(d["totals"]["db_queries"].as_u64().unwrap() > 0, "{d}");
    assert!(
        d.get("gateway").is_none(),
        "no gateway part at stage 1: {d}"
    );
    // Built again over the same file: the catalog is not seeded twice.
    let again = build(&config, &options).await.unwrap();
    let (_, body) = get(&again.router, "/api/products?per_page=100").await;
    let listed: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(listed["total"], 30, "{body}");
}

#[tokio::test]
async fn stage_3_reports_its_caches_through_the_recorder() {
    for var in ["SCALEKIT_PG_URL", "SCALEKIT_REDIS_URL"] {
        if std::env::var(var).map_or(true, |v| v.is_empty()) {
            assert!(
                std::env::var_os("CI").is_none(),
                "{var} must be set under CI"
            );
            eprintln!("skipped: {var} is not set");
            return;
        }
    }
    let catalog = BuiltinStages;
    let tag = format!("compose_test_{}", std::process::id());
    let prepared = catalog.prepare(3, &tag).await.unwrap();
    // Everything that can fail runs before the schema is released; the checks
    // come after.
    let result = async {
        let mut config =
            StageConfig::parse("prepared.toml", &prepared.text).map_err(|e| e.to_string())?;
        if let DatabaseConfig::Postgres { seed_if_empty, .. } = &mut config.database {
            *seed_if_empty = 30;
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let options = BuildOptions {
            data_dir: dir.path().into(),
            behind_proxy: false,
        };
        let app = build(&config, &options).await.map_err(|e| e.to_string())?;
        // Stage 3 keeps its ops routes behind the admin token; this test reads
        // them without one.
        app.ops.set_access(storefront_ops::OpsAccess::Open);
        let mut statuses = Vec::new();
        for _ in 0..3 {
            statuses.push(get(&app.router, "/products/2").await.0);
        }
        Ok::<_, String>((statuses, data(&app.router).await))
    }
    .await;
    catalog.release(&prepared).await;
    let (statuses, d) = result.unwrap();
    assert_eq!(statuses, [StatusCode::OK; 3]);
    assert_eq!(d["stage"]["number"], 3);
    // The caches' pieces: an L1 badge on the app, Redis beside the database.
    let tiers = &d["topology"]["tiers"];
    assert_eq!(tiers[1]["nodes"][0]["badges"][0], "L1", "{d}");
    assert_eq!(tiers[2]["nodes"][1]["title"], "Redis L2", "{d}");
    let l1 = &d["totals"]["cache"]["l1"];
    assert!(
        l1["hits"].as_u64().unwrap() >= 2,
        "the second and third product page came from L1: {d}"
    );
    assert!(d["totals"]["cache"]["l2"].is_object(), "{d}");
    assert!(d.get("degraded").is_none(), "{d}");
}
