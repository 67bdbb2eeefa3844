//! What runs at a stage, for the ops page's picture: tiers from left to right
//! (the clients, what stands in front of the apps, the apps, the data), each a
//! column of nodes, every node of a tier linked to every node of the next.
//!
//! No part of the shop draws the whole picture: each component of a stage
//! hands in its [`Piece`]s (the web app its browser and app, the gateway its box
//! and the app's instances, the caches the L1 badge and Redis, the storage its
//! database), and [`Topology::of`] puts them together. A later stage's component
//! (a balancer in front of the gateways, a search engine beside the database)
//! adds its own pieces and no code here changes.
//!
//! ```
//! use storefront_contract::ops::topology::{Node, Piece, Tier, Topology};
//!
//! let picture = Topology::of([
//!     Piece::Node(Tier::Clients, Node::new("browser", "Browser", "people")),
//!     Piece::Node(Tier::Apps, Node::new("app", "App", "pages, API").linked("HTTP")),
//!     Piece::Node(Tier::Front, Node::new("gateway", "Gateway", "3 instances").linked("HTTP")),
//!     Piece::Replicas { class: "app".into(), count: 3 },
//!     Piece::Badge { class: "app".into(), text: "L1".into() },
//! ]);
//! let tiers: Vec<_> = picture.columns().map(|(tier, _)| tier).collect();
//! assert_eq!(tiers, [Tier::Clients, Tier::Front, Tier::Apps]);
//! let apps = picture.nodes(Tier::Apps);
//! assert_eq!((apps[0].count, apps[0].badges.as_slice()), (3, ["L1".to_owned()].as_slice()));
//! ```

use serde::{Deserialize, Serialize};

/// A column of the picture, left to right.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Tier {
    /// Who sends requests: browsers, the load generator.
    Clients,
    /// Name resolution in front of everything (DNS across data centres).
    Resolve,
    /// What takes the traffic first: a virtual IP and its L4 balancers.
    Edge,
    /// What spreads requests over the apps: the gateway, nginx.
    Front,
    /// The processes that serve pages and the API.
    Apps,
    /// Services the apps call (later stages' microservices, bus).
    Services,
    /// Where data lives: databases, caches, search.
    Data,
}

/// How a node is drawn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    /// A rounded box.
    #[default]
    Box,
    /// A database server's cylinder.
    Cylinder,
}

/// One box of the picture.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// What it is, as a CSS class (`app`, `gateway`, `database`): pieces that
    /// change a node ([`Piece::Badge`], [`Piece::Replicas`]) find it by class.
    pub class: String,
    /// Its title (`PostgreSQL`).
    pub title: String,
    /// The line under it (a host and port, never credentials).
    pub sub: String,
    /// How it is drawn.
    #[serde(default)]
    pub shape: Shape,
    /// How many run side by side (a gateway's instances): drawn as that many
    /// boxes, numbered.
    #[serde(default = "one")]
    pub count: u32,
    /// Small labels inside it (`L1`: a cache in the process).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub badges: Vec<String>,
    /// How the tier before reaches it.
    #[serde(default)]
    pub link: Link,
}

fn one() -> u32 {
    1
}

/// The arrows into a node from the tier before.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// Written on the first arrow (`SQL over TCP`); empty for none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub label: String,
    /// Dashed: a call inside the process or a side channel, not a hop.
    #[serde(default)]
    pub dashed: bool,
}

impl Node {
    /// A box of `class` titled `title` with `sub` under it, one of it, reached
    /// by a plain arrow.
    pub fn new(class: &str, title: &str, sub: &str) -> Node {
        Node {
            class: class.to_owned(),
            title: title.to_owned(),
            sub: sub.to_owned(),
            shape: Shape::Box,
            count: 1,
            badges: Vec::new(),
            link: Link::default(),
        }
    }

    /// Drawn as `shape`.
    pub fn shaped(mut self, shape: Shape) -> Node {
        self.shape = shape;
        self
    }

    /// Its arrows labelled `label`.
    pub fn linked(mut self, label: &str) -> Node {
        self.link.label = label.to_owned();
        self
    }

    /// Its arrows dashed.
    pub fn dashed(mut self) -> Node {
        self.link.dashed = true;
        self
    }
}

/// What one component adds to the picture.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Piece {
    /// A node in a tier, below the ones already there.
    Node(Tier, Node),
    /// A label inside every node of `class`.
    Badge {
        /// The nodes' class.
        class: String,
        /// The label.
        text: String,
    },
    /// Every node of `class` runs `count` times side by side.
    Replicas {
        /// The nodes' class.
        class: String,
        /// How many.
        count: u32,
    },
}

/// What runs at a stage: its tiers, left to right, each with its nodes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topology {
    /// The tiers that have nodes, in order.
    pub tiers: Vec<Column>,
}

/// One tier of the picture and its nodes, top to bottom.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    /// The tier.
    pub tier: Tier,
    /// Its nodes.
    pub nodes: Vec<Node>,
}

impl Topology {
    /// The picture the `pieces` make, in their order: nodes first, then what
    /// changes them (a badge or a count for a class no node has changes nothing).
    pub fn of(pieces: impl IntoIterator<Item = Piece>) -> Topology {
        let mut picture = Topology::default();
        let mut changes = Vec::new();
        for piece in pieces {
            match piece {
                Piece::Node(tier, node) => picture.add(tier, node),
                change => changes.push(change),
            }
        }
        for change in changes {
            picture.apply(change);
        }
        picture
    }

    fn add(&mut self, tier: Tier, node: Node) {
        match self.tiers.binary_search_by_key(&tier, |c| c.tier) {
            Ok(i) => self.tiers[i].nodes.push(node),
            Err(i) => self.tiers.insert(
                i,
                Column {
                    tier,
                    nodes: vec![node],
                },
            ),
        }
    }

    fn apply(&mut self, change: Piece) {
        let nodes = self.tiers.iter_mut().flat_map(|c| c.nodes.iter_mut());
        match change {
            Piece::Node(..) => {}
            Piece::Badge { class, text } => {
                for node in nodes.filter(|n| n.class == class) {
                    if !node.badges.contains(&text) {
                        node.badges.push(text.clone());
                    }
                }
            }
            Piece::Replicas { class, count } => {
                for node in nodes.filter(|n| n.class == class) {
                    node.count = count.max(1);
                }
            }
        }
    }

    /// The tiers with their nodes, left to right.
    pub fn columns(&self) -> impl Iterator<Item = (Tier, &[Node])> {
        self.tiers.iter().map(|c| (c.tier, c.nodes.as_slice()))
    }

    /// The nodes of `tier` (none if it has none).
    pub fn nodes(&self, tier: Tier) -> &[Node] {
        self.tiers
            .iter()
            .find(|c| c.tier == tier)
            .map_or(&[], |c| c.nodes.as_slice())
    }

    /// The first node of `class`, wherever it is.
    pub fn find(&self, class: &str) -> Option<&Node> {
        self.tiers
            .iter()
            .flat_map(|c| &c.nodes)
            .find(|n| n.class == class)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_in_any_order_make_the_same_picture() {
        let pieces = vec![
            Piece::Badge {
                class: "app".into(),
                text: "L1".into(),
            },
            Piece::Node(Tier::Data, Node::new("database", "PostgreSQL", "db:5432")),
            Piece::Node(Tier::Apps, Node::new("app", "App", "")),
            Piece::Replicas {
                class: "app".into(),
                count: 0,
            },
            Piece::Node(Tier::Data, Node::new("l2", "Redis L2", "").dashed()),
        ];
        let picture = Topology::of(pieces.clone());
        let mut reversed = pieces;
        reversed.reverse();
        let other = Topology::of(reversed);
        assert_eq!(picture.nodes(Tier::Apps), other.nodes(Tier::Apps));
        let app = picture
            .find("app")
            .cloned()
            .unwrap_or_else(|| Node::new("", "", ""));
        assert_eq!(app.badges, ["L1"]);
        assert_eq!(app.count, 1, "a count of 0 still draws the node");
        assert_eq!(picture.nodes(Tier::Data).len(), 2);
        assert_eq!(picture.nodes(Tier::Front), &[]);
        assert!(picture.find("gateway").is_none());
        let json = serde_json::to_string(&picture).unwrap_or_default();
        let back: Topology = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(back, picture);
    }
}
