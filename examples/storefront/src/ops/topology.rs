//! What runs at a stage ([`Topology`], from the stage file), and its picture: browser → [gateway → N instances] → app
//! (with its L1) → SQLite file or PostgreSQL, and Redis L2 when the stage has caches.

use std::fmt::Write as _;

pub use storefront_contract::ops::topology::{DatabaseNode, GatewayNode, Topology};

use crate::app::svg::escape;
use crate::config::{DatabaseConfig, StageConfig};
use crate::store::Backend;

/// `postgres://user:secret@db.example:5432/shop` → `db.example:5432`.
fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split(['/', '?']).next().unwrap_or_default().to_owned()
}

/// An app alone over `backend`, where only the backend is known.
pub fn for_backend(backend: Backend) -> Topology {
    match backend {
        Backend::Sqlite => Topology::default(),
        Backend::Postgres => Topology {
            database: DatabaseNode {
                backend: "postgres".into(),
                place: "over TCP".into(),
            },
            ..Topology::default()
        },
    }
}

/// The topology a stage file describes.
pub fn of(config: &StageConfig) -> Topology {
    let database = match &config.database {
        DatabaseConfig::Sqlite { file, .. } => DatabaseNode {
            backend: "sqlite".into(),
            place: file.file_name().map_or_else(
                || file.display().to_string(),
                |f| f.to_string_lossy().into(),
            ),
        },
        DatabaseConfig::Postgres { .. } => {
            let mut place = host_of(&config.database.postgres_url().unwrap_or_default());
            // Stage 5: the primary's streaming replicas.
            if let Some(r) = &config.replicas {
                let n = r.servers.len();
                let _ = write!(place, " + {n} replica{}", if n == 1 { "" } else { "s" });
            }
            // Stages 6 and 7: a database per domain, orders sharded.
            match (&config.domains, &config.sharding) {
                (Some(_), Some(s)) => {
                    let _ = write!(
                        place,
                        "; users, catalog, orders in {} shards",
                        s.databases.len()
                    );
                }
                (Some(_), None) => place.push_str("; users, catalog, orders"),
                _ => {}
            }
            DatabaseNode {
                backend: "postgres".into(),
                place,
            }
        }
    };
    Topology {
        gateway: config.gateway.as_ref().map(|g| GatewayNode {
            instances: g.instances,
        }),
        l1: config.cache.is_some(),
        l2: config.cache.as_ref().map(|_| "Redis".to_owned()),
        database,
    }
}

/// The picture, as an inline SVG element.
pub fn svg(topology: &Topology) -> String {
    const BOX_H: u32 = 56;
    const GAP: u32 = 24;
    let instances = topology
        .gateway
        .as_ref()
        .map_or(1, |g| g.instances.clamp(1, 12));
    let apps_h = instances * BOX_H + (instances - 1) * GAP;
    let l2_h = if topology.l2.is_some() {
        BOX_H + 2 * GAP
    } else {
        0
    };
    let height = apps_h.max(BOX_H) + l2_h + 60;
    let mid = (apps_h.max(BOX_H) + 60) / 2;
    let (browser_x, gateway_x) = (12, 170);
    let app_x = if topology.gateway.is_some() { 340 } else { 190 };
    let db_x = app_x + 270;
    let width = db_x + 200;
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg class="topology" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="Topology of the running stage"><defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#667085"/></marker></defs>"##
    );
    let node = |s: &mut String, x: u32, y: u32, w: u32, class: &str, title: &str, sub: &str| {
        let _ = write!(
            s,
            r#"<g class="node {class}"><rect x="{x}" y="{y}" width="{w}" height="{BOX_H}" rx="8"/><text x="{tx}" y="{ty}" class="title">{}</text><text x="{tx}" y="{sy}" class="sub">{}</text></g>"#,
            escape(title),
            escape(sub),
            tx = x + w / 2,
            ty = y + 24,
            sy = y + 42,
        );
    };
    let edge = |s: &mut String, x1: u32, y1: u32, x2: u32, y2: u32, label: &str, dashed: bool| {
        let _ = write!(
            s,
            r#"<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" class="edge{}" marker-end="url(#arrow)"/>"#,
            if dashed { " dashed" } else { "" }
        );
        if !label.is_empty() {
            let _ = write!(
                s,
                r#"<text x="{}" y="{}" class="edge-label">{}</text>"#,
                (x1 + x2) / 2,
                (y1 + y2) / 2 - 6,
                escape(label)
            );
        }
    };
    node(
        &mut s,
        browser_x,
        mid - BOX_H / 2,
        120,
        "browser",
        "Browser",
        "people, loadgen",
    );
    let first_y = mid - apps_h.max(BOX_H) / 2;
    let app_y = |i: u32| first_y + i * (BOX_H + GAP);
    if let Some(gateway) = &topology.gateway {
        node(
            &mut s,
            gateway_x,
            mid - BOX_H / 2,
            130,
            "gateway",
            "Gateway",
            &format!("{} instances", gateway.instances),
        );
        edge(&mut s, browser_x + 120, mid, gateway_x, mid, "HTTP", false);
        for i in 0..instances {
            edge(
                &mut s,
                gateway_x + 130,
                mid,
                app_x,
                app_y(i) + BOX_H / 2,
                "",
                false,
            );
        }
    } else {
        edge(&mut s, browser_x + 120, mid, app_x, mid, "HTTP", false);
    }
    let (db_title, db_sub, db_label, remote) = if topology.database.backend == "postgres" {
        (
            "PostgreSQL",
            topology.database.place.as_str(),
            "SQL over TCP",
            true,
        )
    } else {
        (
            "SQLite file",
            topology.database.place.as_str(),
            "in process",
            false,
        )
    };
    for i in 0..instances {
        let y = app_y(i);
        let title = if topology.gateway.is_some() {
            format!("App {}", i + 1)
        } else {
            "App".to_owned()
        };
        node(&mut s, app_x, y, 170, "app", &title, "pages, API");
        if topology.l1 {
            let _ = write!(
                s,
                r#"<g class="node l1"><rect x="{}" y="{}" width="34" height="22" rx="4"/><text x="{}" y="{}" class="sub">L1</text></g>"#,
                app_x + 128,
                y + 8,
                app_x + 145,
                y + 23
            );
        }
        edge(
            &mut s,
            app_x + 170,
            y + BOX_H / 2,
            db_x,
            mid,
            if i == 0 { db_label } else { "" },
            !remote,
        );
    }
    let db_y = mid - BOX_H / 2;
    if remote {
        // A cylinder.
        let (x, w) = (db_x, 180);
        let _ = write!(
            s,
            r#"<g class="node database"><path d="M{x},{y0} v{h} a{rx},8 0 0,0 {w},0 v-{h} a{rx},8 0 0,0 -{w},0 a{rx},8 0 0,0 {w},0"/><text x="{tx}" y="{ty}" class="title">{}</text><text x="{tx}" y="{sy}" class="sub">{}</text></g>"#,
            escape(db_title),
            escape(db_sub),
            y0 = db_y + 6,
            h = BOX_H - 10,
            rx = w / 2,
            tx = x + w / 2,
            ty = db_y + 32,
            sy = db_y + 48,
        );
    } else {
        node(&mut s, db_x, db_y, 180, "database file", db_title, db_sub);
    }
    if let Some(l2) = &topology.l2 {
        let y = first_y + apps_h.max(BOX_H) + 2 * GAP;
        let x = db_x;
        node(
            &mut s,
            x,
            y,
            180,
            "l2",
            &format!("{l2} L2"),
            "shared cache, invalidations",
        );
        for i in 0..instances {
            edge(
                &mut s,
                app_x + 170,
                app_y(i) + BOX_H - 10,
                x,
                y + BOX_H / 2,
                "",
                true,
            );
        }
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_without_credentials() {
        assert_eq!(host_of("postgres://u:pw@db:5432/shop?x=1"), "db:5432");
        assert_eq!(host_of("postgres://127.0.0.1/test"), "127.0.0.1");
    }

    #[test]
    fn stage_pictures() {
        let one = of(&StageConfig::builtin(1).unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(one.database.backend, "sqlite");
        let svg = super::svg(&one);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("SQLite file") && !svg.contains("Redis"));
        let three = of(&StageConfig::builtin(3).unwrap_or_else(|e| panic!("{e}")));
        let svg = super::svg(&three);
        assert!(svg.contains("PostgreSQL") && svg.contains("Redis L2") && svg.contains(">L1<"));
        assert_eq!(three.gateway, None);
        let four = of(&StageConfig::builtin(4).unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(four.gateway, Some(GatewayNode { instances: 3 }));
        let svg = super::svg(&four);
        assert!(svg.contains("Gateway") && svg.contains("App 3") && !svg.contains("App 4"));
        let place = |n| {
            of(&StageConfig::builtin(n).unwrap_or_else(|e| panic!("{e}")))
                .database
                .place
        };
        assert_eq!(place(5), "127.0.0.1:5434 + 1 replica");
        assert_eq!(
            place(6),
            "127.0.0.1:5434 + 1 replica; users, catalog, orders"
        );
        assert_eq!(
            place(7),
            "127.0.0.1:5434 + 1 replica; users, catalog, orders in 2 shards"
        );
    }
}
