//! The picture of what runs at a stage ([`Topology`]): browser → [gateway → N instances] → app
//! (with its L1) → SQLite file or PostgreSQL, and Redis L2 when the stage has caches.

use std::fmt::Write as _;

pub use storefront_contract::ops::topology::{DatabaseNode, GatewayNode, Topology};

use storefront_contract::markup::escape;

const BOX_H: u32 = 56;
const GAP: u32 = 24;
/// Box widths: the browser, the gateway, an app, the database and Redis.
const BROWSER_W: u32 = 120;
const GATEWAY_W: u32 = 130;
const APP_W: u32 = 170;
const STORE_W: u32 = 180;

/// Where the picture's boxes go: one column per tier, the apps stacked.
struct Layout {
    instances: u32,
    /// The apps' column height (at least one box).
    apps_h: u32,
    width: u32,
    height: u32,
    /// The vertical middle of the apps' column: browser, gateway and database sit on it.
    mid: u32,
    browser_x: u32,
    gateway_x: u32,
    app_x: u32,
    db_x: u32,
}

impl Layout {
    fn of(topology: &Topology) -> Layout {
        let instances = topology
            .gateway
            .as_ref()
            .map_or(1, |g| g.instances.clamp(1, 12));
        let apps_h = (instances * BOX_H + (instances - 1) * GAP).max(BOX_H);
        let l2_h = if topology.l2.is_some() {
            BOX_H + 2 * GAP
        } else {
            0
        };
        let app_x = if topology.gateway.is_some() { 340 } else { 190 };
        let db_x = app_x + 270;
        Layout {
            instances,
            apps_h,
            width: db_x + 200,
            height: apps_h + l2_h + 60,
            mid: (apps_h + 60) / 2,
            browser_x: 12,
            gateway_x: 170,
            app_x,
            db_x,
        }
    }

    /// The top of app `i`'s box.
    fn app_y(&self, i: u32) -> u32 {
        self.mid - self.apps_h / 2 + i * (BOX_H + GAP)
    }
}

/// The SVG text being drawn.
struct Canvas(String);

impl Canvas {
    fn node(&mut self, x: u32, y: u32, w: u32, class: &str, title: &str, sub: &str) {
        let _ = write!(
            self.0,
            r#"<g class="node {class}"><rect x="{x}" y="{y}" width="{w}" height="{BOX_H}" rx="8"/><text x="{tx}" y="{ty}" class="title">{}</text><text x="{tx}" y="{sy}" class="sub">{}</text></g>"#,
            escape(title),
            escape(sub),
            tx = x + w / 2,
            ty = y + 24,
            sy = y + 42,
        );
    }

    /// A database server: a cylinder.
    fn cylinder(&mut self, x: u32, y: u32, title: &str, sub: &str) {
        let w = STORE_W;
        let _ = write!(
            self.0,
            r#"<g class="node database"><path d="M{x},{y0} v{h} a{rx},8 0 0,0 {w},0 v-{h} a{rx},8 0 0,0 -{w},0 a{rx},8 0 0,0 {w},0"/><text x="{tx}" y="{ty}" class="title">{}</text><text x="{tx}" y="{sy}" class="sub">{}</text></g>"#,
            escape(title),
            escape(sub),
            y0 = y + 6,
            h = BOX_H - 10,
            rx = w / 2,
            tx = x + w / 2,
            ty = y + 32,
            sy = y + 48,
        );
    }

    /// The small L1 box inside an app's box at `(x, y)`.
    fn l1_badge(&mut self, x: u32, y: u32) {
        let _ = write!(
            self.0,
            r#"<g class="node l1"><rect x="{}" y="{}" width="34" height="22" rx="4"/><text x="{}" y="{}" class="sub">L1</text></g>"#,
            x + 128,
            y + 8,
            x + 145,
            y + 23
        );
    }

    fn edge(&mut self, (x1, y1): (u32, u32), (x2, y2): (u32, u32), label: &str, dashed: bool) {
        let _ = write!(
            self.0,
            r#"<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" class="edge{}" marker-end="url(#arrow)"/>"#,
            if dashed { " dashed" } else { "" }
        );
        if !label.is_empty() {
            let _ = write!(
                self.0,
                r#"<text x="{}" y="{}" class="edge-label">{}</text>"#,
                (x1 + x2) / 2,
                (y1 + y2) / 2 - 6,
                escape(label)
            );
        }
    }
}

/// The picture, as an inline SVG element.
pub fn svg(topology: &Topology) -> String {
    let l = Layout::of(topology);
    let mut c = Canvas(String::new());
    let _ = write!(
        c.0,
        r##"<svg class="topology" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="Topology of the running stage"><defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#667085"/></marker></defs>"##,
        w = l.width,
        h = l.height,
    );
    let centre = l.mid - BOX_H / 2;
    c.node(
        l.browser_x,
        centre,
        BROWSER_W,
        "browser",
        "Browser",
        "people, loadgen",
    );
    let from_browser = (l.browser_x + BROWSER_W, l.mid);
    match &topology.gateway {
        Some(gateway) => {
            let sub = format!("{} instances", gateway.instances);
            c.node(l.gateway_x, centre, GATEWAY_W, "gateway", "Gateway", &sub);
            c.edge(from_browser, (l.gateway_x, l.mid), "HTTP", false);
            for i in 0..l.instances {
                let to = (l.app_x, l.app_y(i) + BOX_H / 2);
                c.edge((l.gateway_x + GATEWAY_W, l.mid), to, "", false);
            }
        }
        None => c.edge(from_browser, (l.app_x, l.mid), "HTTP", false),
    }
    let remote = topology.database.backend == "postgres";
    let place = topology.database.place.as_str();
    for i in 0..l.instances {
        let y = l.app_y(i);
        let title = match topology.gateway {
            Some(_) => format!("App {}", i + 1),
            None => "App".to_owned(),
        };
        c.node(l.app_x, y, APP_W, "app", &title, "pages, API");
        if topology.l1 {
            c.l1_badge(l.app_x, y);
        }
        let label = match (i, remote) {
            (0, true) => "SQL over TCP",
            (0, false) => "in process",
            _ => "",
        };
        c.edge(
            (l.app_x + APP_W, y + BOX_H / 2),
            (l.db_x, l.mid),
            label,
            !remote,
        );
    }
    if remote {
        c.cylinder(l.db_x, centre, "PostgreSQL", place);
    } else {
        c.node(
            l.db_x,
            centre,
            STORE_W,
            "database file",
            "SQLite file",
            place,
        );
    }
    if let Some(l2) = &topology.l2 {
        let y = l.mid - l.apps_h / 2 + l.apps_h + 2 * GAP;
        let title = format!("{l2} L2");
        c.node(
            l.db_x,
            y,
            STORE_W,
            "l2",
            &title,
            "shared cache, invalidations",
        );
        for i in 0..l.instances {
            let from = (l.app_x + APP_W, l.app_y(i) + BOX_H - 10);
            c.edge(from, (l.db_x, y + BOX_H / 2), "", true);
        }
    }
    c.0.push_str("</svg>");
    c.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pictures_of_each_shape() {
        let one = Topology::default();
        assert_eq!(one.database.backend, "sqlite");
        let svg = svg(&one);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("SQLite file") && !svg.contains("Redis"));
        let cached = Topology {
            l1: true,
            l2: Some("Redis".into()),
            database: DatabaseNode {
                backend: "postgres".into(),
                place: "db:5432".into(),
            },
            ..Topology::default()
        };
        let svg = super::svg(&cached);
        assert!(svg.contains("PostgreSQL") && svg.contains("Redis L2") && svg.contains(">L1<"));
        let balanced = Topology {
            gateway: Some(GatewayNode { instances: 3 }),
            ..cached
        };
        let svg = super::svg(&balanced);
        assert!(svg.contains("Gateway") && svg.contains("App 3") && !svg.contains("App 4"));
    }
}
