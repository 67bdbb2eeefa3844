//! `storefront seed`: a realistic catalog and customer accounts, made up from a fixed
//! seed (the same run gives the same shop), inserted in batches of multi-row
//! statements, one transaction per batch.

use std::fmt;
use storefront_web::Passwords;

use storefront_storage::{NewProduct, NewUser, Store, StoreError};

/// What seeding can fail with.
#[derive(Debug)]
#[non_exhaustive]
pub enum SeedError {
    /// The database refused or failed.
    Store(StoreError),
    /// The demo password could not be hashed.
    Hash(String),
    /// The categories were not there after inserting them.
    NoCategories,
}

impl fmt::Display for SeedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Store(e) => write!(f, "cannot seed the database: {e}"),
            Self::Hash(e) => write!(f, "cannot hash the demo password: {e}"),
            Self::NoCategories => {
                f.write_str("cannot seed: the categories are missing after inserting them")
            }
        }
    }
}

impl std::error::Error for SeedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Store(e) => Some(e),
            _ => None,
        }
    }
}

impl From<StoreError> for SeedError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// The password of every seeded account (`user1@example.com`, ...).
pub use storefront_contract::demo::PASSWORD as DEMO_PASSWORD;

/// What to create.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeedOptions {
    /// Products to add.
    pub products: u64,
    /// Accounts `user1@example.com` ... `userN@example.com` to create (existing ones are kept).
    pub users: u64,
    /// The random seed: the same seed makes the same catalog.
    pub seed: u64,
}

impl Default for SeedOptions {
    fn default() -> Self {
        Self {
            products: 100_000,
            users: 1_000,
            seed: 42,
        }
    }
}

/// What was created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeedReport {
    /// Products added.
    pub products: u64,
    /// Accounts asked for (existing ones were kept).
    pub users: u64,
    /// Products in the catalog now.
    pub catalog_size: i64,
}

/// Rows per transaction.
const BATCH: u64 = 5_000;

const CATEGORIES: &[(&str, &str, &[&str])] = &[
    (
        "books",
        "Books",
        &[
            "Novel",
            "Cookbook",
            "Atlas",
            "Anthology",
            "Field Guide",
            "Biography",
            "Poetry Collection",
        ],
    ),
    (
        "electronics",
        "Electronics",
        &[
            "Headphones",
            "Speaker",
            "Charger",
            "Keyboard",
            "Mouse",
            "Monitor",
            "Webcam",
        ],
    ),
    (
        "kitchen",
        "Kitchen",
        &[
            "Skillet",
            "Kettle",
            "Knife",
            "Cutting Board",
            "Mixing Bowl",
            "Teapot",
            "Colander",
        ],
    ),
    (
        "garden",
        "Garden",
        &[
            "Trowel",
            "Watering Can",
            "Planter",
            "Hose",
            "Pruner",
            "Seed Set",
            "Bird Feeder",
        ],
    ),
    (
        "toys",
        "Toys",
        &[
            "Puzzle",
            "Building Set",
            "Kite",
            "Board Game",
            "Plush Bear",
            "Yo-yo",
            "Train Set",
        ],
    ),
    (
        "sports",
        "Sports",
        &[
            "Yoga Mat",
            "Football",
            "Racket",
            "Water Bottle",
            "Jump Rope",
            "Helmet",
            "Dumbbell",
        ],
    ),
    (
        "clothing",
        "Clothing",
        &[
            "T-shirt", "Hoodie", "Scarf", "Jacket", "Socks", "Cap", "Sweater",
        ],
    ),
    (
        "home",
        "Home",
        &[
            "Lamp", "Cushion", "Blanket", "Vase", "Clock", "Mirror", "Candle",
        ],
    ),
    (
        "beauty",
        "Beauty",
        &[
            "Soap",
            "Shampoo",
            "Face Cream",
            "Lip Balm",
            "Hand Lotion",
            "Bath Salts",
            "Comb",
        ],
    ),
    (
        "office",
        "Office",
        &[
            "Notebook",
            "Pen Set",
            "Desk Organizer",
            "Stapler",
            "Planner",
            "Backpack",
            "Desk Mat",
        ],
    ),
    (
        "music",
        "Music",
        &[
            "Ukulele",
            "Harmonica",
            "Drum Pad",
            "Guitar Strings",
            "Metronome",
            "Capo",
            "Songbook",
        ],
    ),
    (
        "pets",
        "Pets",
        &[
            "Dog Bed",
            "Cat Toy",
            "Leash",
            "Food Bowl",
            "Scratching Post",
            "Chew Bone",
            "Pet Brush",
        ],
    ),
];

const ADJECTIVES: &[&str] = &[
    "Classic",
    "Compact",
    "Deluxe",
    "Everyday",
    "Handmade",
    "Lightweight",
    "Modern",
    "Organic",
    "Portable",
    "Premium",
    "Rustic",
    "Sturdy",
    "Vintage",
    "Wireless",
    "Cozy",
    "Bright",
    "Quiet",
    "Smart",
    "Tiny",
    "Giant",
];

const COLORS: &[&str] = &[
    "Red", "Blue", "Green", "Black", "White", "Amber", "Teal", "Coral", "Olive", "Navy", "Plum",
    "Sand",
];

const FIRST_NAMES: &[&str] = &[
    "Ada", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemi",
    "Luca", "Mina", "Noah",
];

/// SplitMix64: small, fast, and good enough to make up a catalog.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items
            .get(self.below(items.len() as u64) as usize)
            .copied()
            .unwrap_or("")
    }
}

/// Creates the categories (if missing), then products and accounts. `progress` is
/// told how many rows were written after each batch.
pub async fn seed(
    store: &dyn Store,
    options: SeedOptions,
    passwords: &Passwords,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<SeedReport, SeedError> {
    let now = storefront_contract::time::now();
    let wanted: Vec<(String, String)> = CATEGORIES
        .iter()
        .map(|(s, n, _)| ((*s).to_owned(), (*n).to_owned()))
        .collect();
    let categories = store.insert_categories(&wanted).await?;
    let category_ids: Vec<(i64, &[&str])> = CATEGORIES
        .iter()
        .filter_map(|(slug, _, nouns)| {
            categories
                .iter()
                .find(|c| c.slug == *slug)
                .map(|c| (c.id, *nouns))
        })
        .collect();
    if category_ids.is_empty() {
        return Err(SeedError::NoCategories);
    }
    let mut rng = Rng(options.seed);
    let mut done = 0;
    while done < options.products {
        let n = BATCH.min(options.products - done);
        let batch: Vec<NewProduct> = (0..n)
            .map(|_| {
                let (category_id, nouns) =
                    category_ids.get(rng.below(category_ids.len() as u64) as usize).copied().unwrap_or((0, &[]));
                let adjective = rng.pick(ADJECTIVES);
                let color = rng.pick(COLORS);
                let noun = rng.pick(nouns);
                let model = rng.below(900) + 100;
                // Prices cluster like a real shop's: mostly small, some expensive.
                let dollars = match rng.below(10) {
                    0..=5 => rng.below(30) + 2,
                    6..=8 => rng.below(150) + 30,
                    _ => rng.below(900) + 150,
                };
                NewProduct {
                    category_id,
                    name: format!("{adjective} {color} {noun} {model}"),
                    description: format!(
                        "A {} {} {} that is built to last. Model {model}, in {}. Ships in two days.",
                        adjective.to_lowercase(),
                        color.to_lowercase(),
                        noun.to_lowercase(),
                        color.to_lowercase(),
                    ),
                    price_cents: (dollars * 100 + [0, 49, 95, 99][rng.below(4) as usize]) as i64,
                    stock: rng.below(200) as i64,
                }
            })
            .collect();
        store.insert_products(&batch, now).await?;
        done += n;
        progress(n);
    }
    if options.users > 0 {
        // One hash for every demo account: argon2 is slow on purpose, and these
        // accounts only exist to log in with during demos and load tests.
        let hash = passwords
            .hash(DEMO_PASSWORD)
            .map_err(|e| SeedError::Hash(e.to_string()))?;
        let mut made = 0;
        while made < options.users {
            let n = BATCH.min(options.users - made);
            let batch: Vec<NewUser> = (made + 1..=made + n)
                .map(|i| NewUser {
                    email: format!("user{i}@example.com"),
                    name: format!("{} {}", rng.pick(FIRST_NAMES), i),
                    password_hash: hash.clone(),
                })
                .collect();
            store.insert_users(&batch, now).await?;
            made += n;
            progress(n);
        }
    }
    store.analyze().await?;
    Ok(SeedReport {
        products: options.products,
        users: options.users,
        catalog_size: store.count_products().await?,
    })
}
