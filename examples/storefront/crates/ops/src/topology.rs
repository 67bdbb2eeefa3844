//! The picture of what runs at a stage ([`Topology`], put together from the
//! pieces its components hand in): one column per tier, left to right; a node
//! that runs several times is drawn as that many numbered boxes; every box of a
//! tier has an arrow to every box of the next.

use std::fmt::Write as _;

pub use storefront_contract::ops::topology::{Link, Node, Piece, Shape, Tier, Topology};

use storefront_contract::markup::escape;

const BOX_H: u32 = 56;
const GAP: u32 = 24;
/// Room above and below the tallest column.
const MARGIN: u32 = 30;
/// The widest a column gets for long text.
const MAX_WIDTH: u32 = 340;
/// At most this many boxes of one node are drawn.
const MAX_COPIES: u32 = 12;

/// A column's box width: what stands in it needs the room.
fn width(tier: Tier) -> u32 {
    match tier {
        Tier::Clients => 120,
        Tier::Apps | Tier::Services => 170,
        Tier::Data => 180,
        _ => 130,
    }
}

/// The space before a column: arrows into the data are labelled.
fn space_before(tier: Tier) -> u32 {
    match tier {
        Tier::Data => 100,
        _ => 50,
    }
}

/// One box to draw.
struct Placed<'a> {
    node: &'a Node,
    /// Which of the node's boxes (from 0).
    copy: u32,
    title: String,
    x: u32,
    y: u32,
    w: u32,
}

impl Placed<'_> {
    fn left(&self) -> (u32, u32) {
        (self.x, self.y + BOX_H / 2)
    }
    fn right(&self) -> (u32, u32) {
        (self.x + self.w, self.y + BOX_H / 2)
    }
}

/// Where every box goes: columns side by side, each centred on the picture's
/// middle.
fn layout(topology: &Topology) -> (Vec<Vec<Placed<'_>>>, u32, u32) {
    let copies = |n: &Node| n.count.clamp(1, MAX_COPIES);
    let tallest = topology
        .columns()
        .map(|(_, nodes)| nodes.iter().map(copies).sum::<u32>())
        .max()
        .unwrap_or(1)
        .max(1);
    let height = tallest * BOX_H + (tallest - 1) * GAP + 2 * MARGIN;
    let mut x = 12;
    let mut columns = Vec::new();
    for (i, (tier, nodes)) in topology.columns().enumerate() {
        if i > 0 {
            x += space_before(tier);
        }
        // Wide enough for the longest line (about 7 px a character).
        let longest = nodes
            .iter()
            .map(|n| n.title.chars().count().max(n.sub.chars().count()))
            .max()
            .unwrap_or(0);
        let text_w = u32::try_from(longest).unwrap_or(u32::MAX).saturating_mul(7) + 24;
        let w = width(tier).max(text_w.min(MAX_WIDTH));
        let boxes: u32 = nodes.iter().map(copies).sum();
        let column_h = boxes * BOX_H + boxes.saturating_sub(1) * GAP;
        let mut y = (height - column_h) / 2;
        let mut placed = Vec::new();
        for node in nodes {
            let n = copies(node);
            for copy in 0..n {
                let title = if n > 1 {
                    format!("{} {}", node.title, copy + 1)
                } else {
                    node.title.clone()
                };
                placed.push(Placed {
                    node,
                    copy,
                    title,
                    x,
                    y,
                    w,
                });
                y += BOX_H + GAP;
            }
        }
        columns.push(placed);
        x += w;
    }
    (columns, x + 12, height)
}

/// The SVG text being drawn.
struct Canvas(String);

impl Canvas {
    fn node(&mut self, b: &Placed<'_>) {
        let (x, y, w) = (b.x, b.y, b.w);
        let (title, sub) = (escape(&b.title), escape(&b.node.sub));
        let class = escape(&b.node.class);
        let (tx, ty, sy) = (x + w / 2, y + 24, y + 42);
        match b.node.shape {
            Shape::Box => {
                let _ = write!(
                    self.0,
                    r#"<g class="node {class}"><rect x="{x}" y="{y}" width="{w}" height="{BOX_H}" rx="8"/><text x="{tx}" y="{ty}" class="title">{title}</text><text x="{tx}" y="{sy}" class="sub">{sub}</text></g>"#,
                );
            }
            Shape::Cylinder => {
                let _ = write!(
                    self.0,
                    r#"<g class="node {class}"><path d="M{x},{y0} v{h} a{rx},8 0 0,0 {w},0 v-{h} a{rx},8 0 0,0 -{w},0 a{rx},8 0 0,0 {w},0"/><text x="{tx}" y="{ty}" class="title">{title}</text><text x="{tx}" y="{sy}" class="sub">{sub}</text></g>"#,
                    y0 = y + 6,
                    h = BOX_H - 10,
                    rx = w / 2,
                    ty = y + 32,
                    sy = y + 48,
                );
            }
        }
        // Badges at the box's top right, right to left.
        for (i, text) in (0u32..).zip(&b.node.badges) {
            let bx = (x + w).saturating_sub(42 + i * 40);
            let class = escape(&text.to_lowercase());
            let _ = write!(
                self.0,
                r#"<g class="node {class}"><rect x="{bx}" y="{}" width="34" height="22" rx="4"/><text x="{}" y="{}" class="sub">{}</text></g>"#,
                y + 8,
                bx + 17,
                y + 23,
                escape(text)
            );
        }
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
///
/// ```
/// use storefront_ops::topology::{svg, Node, Piece, Tier, Topology};
///
/// let picture = Topology::of([
///     Piece::Node(Tier::Clients, Node::new("browser", "Browser", "people")),
///     Piece::Node(Tier::Apps, Node::new("app", "App", "pages").linked("HTTP")),
/// ]);
/// let svg = svg(&picture);
/// assert!(svg.starts_with("<svg") && svg.contains(">Browser<") && svg.contains(">HTTP<"));
/// ```
pub fn svg(topology: &Topology) -> String {
    let (columns, width, height) = layout(topology);
    let mut c = Canvas(String::new());
    let _ = write!(
        c.0,
        r##"<svg class="topology" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="Topology of the running stage"><defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#667085"/></marker></defs>"##,
    );
    for pair in columns.windows(2) {
        let (from, to) = (&pair[0], &pair[1]);
        for target in to {
            let link = &target.node.link;
            for (i, source) in from.iter().enumerate() {
                // Once per node: on the first arrow into its first box.
                let first = i == 0 && target.copy == 0;
                let label = if first { link.label.as_str() } else { "" };
                c.edge(source.right(), target.left(), label, link.dashed);
            }
        }
    }
    for b in columns.iter().flatten() {
        c.node(b);
    }
    c.0.push_str("</svg>");
    c.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(gateway: Option<u32>, caches: bool, postgres: bool) -> Vec<Piece> {
        let mut pieces = vec![
            Piece::Node(Tier::Clients, Node::new("browser", "Browser", "loadgen")),
            Piece::Node(Tier::Apps, Node::new("app", "App", "pages").linked("HTTP")),
            if postgres {
                let db = Node::new("database", "PostgreSQL", "db:5432");
                Piece::Node(Tier::Data, db.shaped(Shape::Cylinder).linked("SQL"))
            } else {
                let file = Node::new("database", "SQLite file", "shop.db");
                Piece::Node(Tier::Data, file.linked("in process").dashed())
            },
        ];
        if let Some(count) = gateway {
            let gw = Node::new("gateway", "Gateway", "proxy").linked("HTTP");
            pieces.push(Piece::Node(Tier::Front, gw));
            let class = "app".to_owned();
            pieces.push(Piece::Replicas { class, count });
        }
        if caches {
            let (class, text) = ("app".to_owned(), "L1".to_owned());
            pieces.push(Piece::Badge { class, text });
            let l2 = Node::new("l2", "Redis L2", "shared").dashed();
            pieces.push(Piece::Node(Tier::Data, l2));
        }
        pieces
    }

    #[test]
    fn pictures_of_each_shape() {
        let svg_of = |g, c, p| svg(&Topology::of(pieces(g, c, p)));
        let one = svg_of(None, false, false);
        assert!(one.starts_with("<svg") && one.ends_with("</svg>"));
        assert!(one.contains("SQLite file") && !one.contains("Redis") && !one.contains(">L1<"));
        assert!(one.contains("edge dashed") && one.contains(">in process<"));
        let cached = svg_of(None, true, true);
        assert!(cached.contains("PostgreSQL") && cached.contains("Redis L2"));
        assert!(cached.contains(">L1<") && cached.contains("<path"));
        let balanced = svg_of(Some(3), true, true);
        assert!(balanced.contains("Gateway") && balanced.contains("App 3"));
        assert!(!balanced.contains("App 4") && !balanced.contains(">App<"));
        // Browser → gateway, gateway → 3 apps, 3 apps → 2 data nodes.
        assert_eq!(balanced.matches("<line").count(), 1 + 3 + 6);
        // One label per node: the arrows into the apps and into the database
        // are labelled once, not per box.
        assert_eq!(balanced.matches(">SQL<").count(), 1);
        assert_eq!(balanced.matches(">HTTP<").count(), 2);
        let many = svg_of(Some(500), false, false);
        assert!(many.contains("App 12") && !many.contains("App 13"));
    }

    #[test]
    fn text_is_escaped() {
        let picture = Topology::of([Piece::Node(Tier::Apps, Node::new("a\"b", "<script>", "&"))]);
        let svg = svg(&picture);
        assert!(!svg.contains("<script>") && svg.contains("&lt;script&gt;"));
        assert!(svg.contains("&amp;") && !svg.contains("a\"b"));
        assert!(super::svg(&Topology::default()).ends_with("</svg>"));
    }
}
