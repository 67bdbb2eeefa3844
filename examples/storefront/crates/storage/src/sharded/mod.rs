//! Stage 7: orders sharded over several PostgreSQL databases ([`ShardedOrders`]).
//!
//! * Orders and their lines are binding tables, placed by a hash of the user id
//!   into [`SLOTS`] logical shards (slots), which scalekit-shard's router lays
//!   over the databases (hash strategy, 16 slots, the contiguous engine).
//! * An order id carries its slot in its low 4 bits (`id = counter * 16 + slot`),
//!   the counter taken in blocks of 1024 from a sequence in the control database
//!   (hi/lo): ids are unique across databases and stay so when rows move.
//! * Each shard database says which slots it serves (`shard_slots`): a write
//!   transaction takes `FOR SHARE` on its slot's row and writes only if the row
//!   says `writable`; a read checks `readable` in the same statement. The routing
//!   table (`shard_routing`, in the control database) is cached by each process
//!   and read again when a database refuses. So a process with an old routing
//!   table is refused, never wrong; see [`reshard`] for how slots move.
//! * Orders older than the current month move to monthly archive tables
//!   ([`archive`]); reads go through views over both.
//! * [`analytics`]: the admin's queries across every shard, by scatter-gather.
//!
//! Kept in one file (over 800 lines, much of it tests): the sharded order store
//! and the routing state every one of its methods reads (the epoch, the slot
//! map, the writes mirrored during a move) share private state with their
//! tests; the resharding steps are in [`reshard`], the layout's figures in
//! `view.rs`, the archive and analytics in modules of their own.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use scalekit_shard::{Engines, Key, Query, Router, RouterConfig, ScatterGather};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Postgres, Transaction};

use super::{Db, Order, OrderLine, OrderRepo, OrderSummary, StoreError, StoreResult};

pub mod analytics;
pub mod archive;
// the section is in crate::config
pub mod reshard;
mod view;

/// The schema of one shard database (`migrations/shard`), as every shard gets it.
pub static SHARD_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/shard");

pub use crate::config::ShardingConfig;

/// Logical shards (hash slots) of the orders.
pub const SLOTS: u32 = 16;
/// Bits of an order id that hold its slot.
pub const SLOT_BITS: u32 = 4;
/// Order id counters taken from the sequence at once.
const ID_BLOCK: i64 = 1024;
/// How often a refused statement is tried again (re-reading the routing each
/// time), and the pause between tries: about 2 s in all, enough for a slot move.
/// Attempts at mirroring a placed order to a migration's other database.
const MIRROR_TRIES: u32 = 3;

const RETRIES: u32 = 100;
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// The slot of a user's orders: the low 4 bits of the key's stable hash, as
/// scalekit-shard's hash strategy computes it with 16 slots.
pub fn slot_of_user(user_id: i64) -> u32 {
    (Key::Int(user_id).stable_hash() & u64::from(SLOTS - 1)) as u32
}

/// The slot an order id carries.
pub fn slot_of_order(order_id: i64) -> u32 {
    (order_id & i64::from(SLOTS - 1)) as u32
}

/// The routing table for orders over `databases` (epoch `epoch`): user id hashed
/// into 16 slots, laid out contiguously; order items bound to orders.
pub fn router(databases: &[String], epoch: u64) -> StoreResult<Router> {
    let list = databases
        .iter()
        .map(|d| format!("{d:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let text = format!(
        "epoch = {epoch}\ndatabases = [{list}]\n\
         [tables.orders.databases]\nkey = \"user_id\"\nhash = [{list}]\nslots = {SLOTS}\n\
         [tables.order_items]\nbind = \"orders\"\n"
    );
    RouterConfig::from_toml(&text)
        .and_then(|c| c.build(&Engines::new()))
        .map_err(|e| config_error(format!("orders routing table: {e}")))
}

/// The database the router gives `slot`: it routes a key of that slot.
pub fn slot_owner(router: &Router, slot: u32) -> StoreResult<String> {
    let key = (0..i64::from(u16::MAX))
        .find(|k| slot_of_user(*k) == slot)
        .ok_or_else(|| config_error(format!("no key found for slot {slot}")))?;
    let target = router
        .locate("orders", &Query::key("user_id", key))
        .map_err(|e| config_error(format!("orders routing: {e}")))?;
    Ok(target.database.to_string())
}

pub(crate) fn config_error(message: String) -> StoreError {
    StoreError::Database(sqlx::Error::Configuration(message.into()))
}

fn refused(what: &str) -> StoreError {
    StoreError::Database(sqlx::Error::Protocol(format!(
        "no shard database accepted the {what} (a slot is moving or the routing is broken); try again"
    )))
}

/// Where each slot is read and written, as the control database said when read.
#[derive(Clone, Debug)]
struct Routing {
    read: Vec<String>,
    write: Vec<String>,
    loaded: Instant,
}

#[derive(Debug, Default)]
struct IdBlock {
    next: i64,
    end: i64,
}

#[derive(Debug)]
struct Inner {
    dbs: BTreeMap<String, Db>,
    control: String,
    routing: RwLock<Routing>,
    ttl: Duration,
    ids: Mutex<IdBlock>,
    gather: ScatterGather,
    mirror_failures: std::sync::atomic::AtomicU64,
    refusals: std::sync::atomic::AtomicU64,
}

/// [`OrderRepo`] over several PostgreSQL databases (stage 7). Cheap to clone.
#[derive(Clone, Debug)]
pub struct ShardedOrders {
    inner: Arc<Inner>,
}

/// The result of one write attempt in one database.
enum Placed {
    Done(Option<String>),
    Refused,
}

/// One order as stored, for copies and checksums.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StoredOrder {
    pub id: i64,
    pub user_id: i64,
    pub total_cents: i64,
    pub created_at: i64,
    pub archived: bool,
    pub lines: Vec<OrderLine>,
}

impl ShardedOrders {
    /// Connects to every database of `config` (creating none: they must exist),
    /// migrates their schema, and on the very first start writes the routing
    /// table the router gives `config.databases`.
    pub async fn connect(config: &ShardingConfig) -> StoreResult<Self> {
        Self::connect_with_replicas(config, None).await
    }

    /// [`connect`](Self::connect), each shard database read through the
    /// replicas `replicas` gives its server, when given.
    pub async fn connect_with_replicas(
        config: &ShardingConfig,
        replicas: Option<&crate::config::ReplicasConfig>,
    ) -> StoreResult<Self> {
        config.validate().map_err(config_error)?;
        let mut dbs = BTreeMap::new();
        for name in config.all_databases() {
            let options = config.database_options(&name).map_err(config_error)?;
            let db = match replicas {
                None => Db::single(
                    crate::connect_pool(
                        &options,
                        PgPoolOptions::new()
                            .max_connections(config.max_connections)
                            .acquire_timeout(Duration::from_secs(10)),
                    )
                    .await?,
                ),
                Some(_) => Db::connect_with(options, replicas, config.max_connections).await?,
            };
            dbs.insert(name, db);
        }
        Self::with_databases(dbs, &config.databases, config.routing_ttl_ms).await
    }

    /// [`connect`](Self::connect) with the databases given (by name; each
    /// already reachable): `initial` is the layout of a first start, its first
    /// database the control database.
    pub async fn with_databases(
        dbs: BTreeMap<String, Db>,
        initial: &[String],
        routing_ttl_ms: u64,
    ) -> StoreResult<Self> {
        let control = initial
            .first()
            .cloned()
            .ok_or_else(|| config_error("sharding: no databases".into()))?;
        for name in initial {
            if !dbs.contains_key(name) {
                return Err(config_error(format!("sharding: no pool for {name}")));
            }
        }
        for db in dbs.values() {
            SHARD_MIGRATIONS.run(db.primary()).await?;
        }
        let this = Self {
            inner: Arc::new(Inner {
                dbs,
                control,
                routing: RwLock::new(Routing {
                    read: Vec::new(),
                    write: Vec::new(),
                    loaded: Instant::now(),
                }),
                ttl: Duration::from_millis(routing_ttl_ms),
                ids: Mutex::new(IdBlock::default()),
                gather: ScatterGather::new().timeout(Duration::from_secs(10)),
                mirror_failures: Default::default(),
                refusals: Default::default(),
            }),
        };
        this.initialize(initial).await?;
        this.reload_routing().await?;
        Ok(this)
    }

    /// On the first start (no routing yet): each database's slots and the routing.
    async fn initialize(&self, initial: &[String]) -> StoreResult<()> {
        let control = self.control();
        let mut tx = control.primary().begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(70007)")
            .execute(&mut *tx)
            .await?;
        let have: i64 = sqlx::query_scalar("SELECT count(*) FROM shard_routing")
            .fetch_one(&mut *tx)
            .await?;
        if have > 0 {
            return Ok(());
        }
        let router = router(initial, 0)?;
        let mut owners = Vec::with_capacity(SLOTS as usize);
        for slot in 0..SLOTS {
            owners.push(slot_owner(&router, slot)?);
        }
        for (slot, owner) in owners.iter().enumerate() {
            sqlx::query(
                "INSERT INTO shard_slots (slot, writable, readable, mirror) VALUES ($1, TRUE, TRUE, NULL) \
                 ON CONFLICT (slot) DO UPDATE SET writable = TRUE, readable = TRUE, mirror = NULL",
            )
            .bind(slot as i16)
            .execute(self.db(owner)?.primary())
            .await?;
            sqlx::query("INSERT INTO shard_routing (slot, read_db, write_db) VALUES ($1, $2, $2)")
                .bind(slot as i16)
                .bind(owner)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO shard_state (epoch, databases, phase) VALUES (0, $1, 'idle') \
             ON CONFLICT (one) DO NOTHING",
        )
        .bind(initial.join(","))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The control database (routing, resharding state, order id blocks).
    pub(crate) fn control(&self) -> &Db {
        &self.inner.dbs[&self.inner.control]
    }

    /// A database by name.
    pub(crate) fn db(&self, name: &str) -> StoreResult<&Db> {
        self.inner.dbs.get(name).ok_or_else(|| {
            config_error(format!(
                "the routing names {name:?}, which is not configured in [sharding]"
            ))
        })
    }

    /// The names of every configured database.
    pub fn database_names(&self) -> Vec<String> {
        self.inner.dbs.keys().cloned().collect()
    }

    /// Reads the routing table from the control database.
    pub(crate) async fn reload_routing(&self) -> StoreResult<()> {
        let rows: Vec<(i16, String, String)> =
            sqlx::query_as("SELECT slot, read_db, write_db FROM shard_routing ORDER BY slot")
                .fetch_all(self.control().primary())
                .await?;
        if rows.len() != SLOTS as usize {
            return Err(config_error(format!(
                "the routing table has {} slots, not {SLOTS}",
                rows.len()
            )));
        }
        let mut routing = Routing {
            read: Vec::with_capacity(rows.len()),
            write: Vec::with_capacity(rows.len()),
            loaded: Instant::now(),
        };
        for (_, r, w) in rows {
            routing.read.push(r);
            routing.write.push(w);
        }
        *self.inner.routing.write() = routing;
        Ok(())
    }

    async fn routing(&self) -> StoreResult<Routing> {
        let stale = self.inner.routing.read().loaded.elapsed() >= self.inner.ttl;
        if stale {
            self.reload_routing().await?;
        }
        Ok(self.inner.routing.read().clone())
    }

    /// Where each slot is read, as this process knows it now (slot -> database).
    pub async fn read_routing(&self) -> StoreResult<Vec<String>> {
        Ok(self.routing().await?.read)
    }

    /// Statements refused by a database that no longer served their slot, and
    /// mirror writes that failed (a migration's catch-up copies those rows).
    pub fn counters(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.inner.refusals.load(Relaxed),
            self.inner.mirror_failures.load(Relaxed),
        )
    }

    pub(crate) fn gather(&self) -> &ScatterGather {
        &self.inner.gather
    }

    /// A new order id in `slot`.
    async fn next_id(&self, slot: u32) -> StoreResult<i64> {
        loop {
            {
                let mut ids = self.inner.ids.lock();
                if ids.next < ids.end {
                    let counter = ids.next;
                    ids.next += 1;
                    return Ok((counter << SLOT_BITS) | i64::from(slot));
                }
            }
            let hi: i64 = sqlx::query_scalar("SELECT nextval('order_id_blocks')")
                .fetch_one(self.control().primary())
                .await?;
            let mut ids = self.inner.ids.lock();
            if ids.next >= ids.end {
                ids.next = hi * ID_BLOCK;
                ids.end = hi * ID_BLOCK + ID_BLOCK;
            }
        }
    }

    /// Writes an order where it belongs (its slot must be writable there).
    async fn try_place(&self, db: &Db, slot: u32, order: &StoredOrder) -> StoreResult<Placed> {
        let mut tx = db.primary().begin().await?;
        let row: Option<(bool, Option<String>)> =
            sqlx::query_as("SELECT writable, mirror FROM shard_slots WHERE slot = $1 FOR SHARE")
                .bind(slot as i16)
                .fetch_optional(&mut *tx)
                .await?;
        let mirror = match row {
            Some((true, mirror)) => mirror,
            _ => {
                tx.rollback().await?;
                return Ok(Placed::Refused);
            }
        };
        // A fresh id is never in use: a conflict means the id sequence went back
        // (a control database replaced), and the order would vanish silently.
        if insert_orders(&mut tx, std::slice::from_ref(order)).await? != 1 {
            return Err(config_error(format!(
                "order id {} is in use already: the order id sequence in the control database went back",
                order.id
            )));
        }
        tx.commit().await?;
        db.wrote().await;
        Ok(Placed::Done(mirror))
    }

    /// Copies a just-placed order to the database a migration mirrors its slot
    /// to, if that database still takes copies of the slot.
    async fn mirror(&self, to: &str, slot: u32, order: &StoredOrder) -> StoreResult<()> {
        let db = self.db(to)?;
        let mut tx = db.primary().begin().await?;
        let takes: Option<i16> =
            sqlx::query_scalar("SELECT slot FROM shard_slots WHERE slot = $1 FOR SHARE")
                .bind(slot as i16)
                .fetch_optional(&mut *tx)
                .await?;
        if takes.is_some() {
            insert_orders(&mut tx, std::slice::from_ref(order)).await?;
        }
        tx.commit().await?;
        // Once reads have moved, the session's next read goes to this copy.
        db.wrote().await;
        Ok(())
    }

    /// Runs `read` on the database that serves `slot` for reads; `None` from it
    /// means that database refused (it no longer serves the slot): the routing
    /// is read again and the read tried again.
    async fn read_slot<T, F, Fut>(&self, slot: u32, read: F) -> StoreResult<T>
    where
        F: Fn(PgPool) -> Fut,
        Fut: std::future::Future<Output = StoreResult<Option<T>>>,
    {
        for attempt in 0..RETRIES {
            let routing = self.routing().await?;
            let name = &routing.read[slot as usize];
            let pool: PgPool = (*self.db(name)?.reader().await?).clone();
            if let Some(v) = read(pool).await? {
                return Ok(v);
            }
            self.inner
                .refusals
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.reload_routing().await?;
            if attempt > 0 {
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
        Err(refused("read"))
    }

    /// Every order in every database (rows of all slots, copies included), with
    /// the database it is in. For checksums and tests; reads whole tables.
    pub(crate) async fn stored_orders(
        &self,
        db: &str,
        slots: Option<&[u32]>,
    ) -> StoreResult<Vec<StoredOrder>> {
        let all: Vec<i64> = (0..i64::from(SLOTS)).collect();
        let slots: Vec<i64> = match slots {
            Some(s) => s.iter().map(|s| i64::from(*s)).collect(),
            None => all,
        };
        let pool = self.db(db)?.primary().clone();
        let heads: Vec<(i64, i64, i64, i64, bool)> = sqlx::query_as(
            "SELECT id, user_id, total_cents, created_at, FALSE FROM orders WHERE (id & 15) = ANY($1) \
             UNION ALL \
             SELECT id, user_id, total_cents, created_at, TRUE FROM orders_archive WHERE (id & 15) = ANY($1)",
        )
        .bind(&slots)
        .fetch_all(&pool)
        .await?;
        let lines: Vec<(i64, i64, String, i64, i64)> = sqlx::query_as(
            "SELECT order_id, product_id, name, unit_price_cents, quantity FROM all_order_items \
             WHERE (order_id & 15) = ANY($1) ORDER BY order_id, product_id",
        )
        .bind(&slots)
        .fetch_all(&pool)
        .await?;
        let mut by_order: ahash::AHashMap<i64, Vec<OrderLine>> = ahash::AHashMap::new();
        for (order_id, product_id, name, unit_price_cents, quantity) in lines {
            by_order.entry(order_id).or_default().push(OrderLine {
                product_id,
                name,
                unit_price_cents,
                quantity,
            });
        }
        Ok(heads
            .into_iter()
            .map(
                |(id, user_id, total_cents, created_at, archived)| StoredOrder {
                    id,
                    user_id,
                    total_cents,
                    created_at,
                    archived,
                    lines: by_order.remove(&id).unwrap_or_default(),
                },
            )
            .collect())
    }

    /// A checksum over every order in every configured database: how many, and
    /// an order-independent hash of (id, user id, total, lines). A lost order
    /// changes it, and so does one left in two databases.
    pub async fn checksum(&self) -> StoreResult<Checksum> {
        let mut sum = Checksum::default();
        for name in self.database_names() {
            for o in self.stored_orders(&name, None).await? {
                sum.add(&o);
            }
        }
        Ok(sum)
    }

    /// Rows of `orders` (current and archived) in each configured database.
    pub async fn rows_per_database(&self) -> StoreResult<Vec<(String, i64)>> {
        let mut out = Vec::new();
        for (name, db) in &self.inner.dbs {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM all_orders")
                .fetch_one(&*db.reader().await?)
                .await?;
            out.push((name.clone(), n));
        }
        Ok(out)
    }
}

/// A checksum over orders: see [`ShardedOrders::checksum`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Checksum {
    /// How many orders.
    pub orders: u64,
    /// The wrapping sum of each order's stable hash.
    pub hash: u64,
}

impl Checksum {
    /// Adds one order.
    pub fn add_order(&mut self, user_id: i64, order: &Order) {
        self.hash = self.hash.wrapping_add(order_digest(
            order.id,
            user_id,
            order.total_cents,
            &order.lines,
        ));
        self.orders += 1;
    }

    fn add(&mut self, o: &StoredOrder) {
        self.hash = self
            .hash
            .wrapping_add(order_digest(o.id, o.user_id, o.total_cents, &o.lines));
        self.orders += 1;
    }
}

/// The stable hash of an order (lines in product order).
pub(crate) fn order_digest(id: i64, user_id: i64, total: i64, lines: &[OrderLine]) -> u64 {
    let mut bytes = Vec::with_capacity(24 + lines.len() * 40);
    for v in [id, user_id, total] {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    let mut sorted: Vec<&OrderLine> = lines.iter().collect();
    sorted.sort_by_key(|l| l.product_id);
    for l in sorted {
        for v in [l.product_id, l.unit_price_cents, l.quantity] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        bytes.extend_from_slice(&(l.name.len() as u64).to_le_bytes());
        bytes.extend_from_slice(l.name.as_bytes());
    }
    scalekit_core::stable_hash(&bytes)
}

/// Inserts orders and their lines (into the current or the archive tables;
/// archive partitions must exist), skipping orders already there.
pub(crate) async fn insert_orders(
    tx: &mut Transaction<'static, Postgres>,
    orders: &[StoredOrder],
) -> StoreResult<u64> {
    let mut inserted = 0;
    for archived in [false, true] {
        let part: Vec<&StoredOrder> = orders.iter().filter(|o| o.archived == archived).collect();
        if part.is_empty() {
            continue;
        }
        let (orders_table, items_table) = if archived {
            ("orders_archive", "order_items_archive")
        } else {
            ("orders", "order_items")
        };
        let ids: Vec<i64> = part.iter().map(|o| o.id).collect();
        let users: Vec<i64> = part.iter().map(|o| o.user_id).collect();
        let totals: Vec<i64> = part.iter().map(|o| o.total_cents).collect();
        let times: Vec<i64> = part.iter().map(|o| o.created_at).collect();
        let done = sqlx::query(&format!(
            "INSERT INTO {orders_table} (id, user_id, total_cents, created_at) \
             SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::int8[], $4::int8[]) \
             ON CONFLICT DO NOTHING"
        ))
        .bind(&ids)
        .bind(&users)
        .bind(&totals)
        .bind(&times)
        .execute(&mut **tx)
        .await?;
        inserted += done.rows_affected();
        if done.rows_affected() == 0 {
            continue;
        }
        let (mut oid, mut pid, mut name, mut price, mut qty, mut at) = (
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
        );
        for o in &part {
            for l in &o.lines {
                oid.push(o.id);
                pid.push(l.product_id);
                name.push(l.name.clone());
                price.push(l.unit_price_cents);
                qty.push(l.quantity);
                at.push(o.created_at);
            }
        }
        sqlx::query(&format!(
            "INSERT INTO {items_table} (order_id, product_id, name, unit_price_cents, quantity, created_at) \
             SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::text[], $4::int8[], $5::int8[], $6::int8[]) \
             ON CONFLICT DO NOTHING"
        ))
        .bind(&oid)
        .bind(&pid)
        .bind(&name)
        .bind(&price)
        .bind(&qty)
        .bind(&at)
        .execute(&mut **tx)
        .await?;
    }
    Ok(inserted)
}

#[async_trait]
impl OrderRepo for ShardedOrders {
    async fn place(&self, user_id: i64, lines: &[OrderLine], now: i64) -> StoreResult<Order> {
        if lines.is_empty() {
            return Err(StoreError::EmptyCart);
        }
        let slot = slot_of_user(user_id);
        let id = self.next_id(slot).await?;
        let total_cents = OrderLine::total(lines);
        let order = StoredOrder {
            id,
            user_id,
            total_cents,
            created_at: now,
            archived: false,
            lines: lines.to_vec(),
        };
        for attempt in 0..RETRIES {
            let routing = self.routing().await?;
            let db = self.db(&routing.write[slot as usize])?;
            match self.try_place(db, slot, &order).await? {
                Placed::Done(mirror) => {
                    if let Some(to) = mirror {
                        // The order is committed: a mirror that keeps failing is
                        // logged, not returned (a retry would place it twice);
                        // switching writes copies what mirrors missed.
                        let mut tries = 0;
                        while let Err(e) = self.mirror(&to, slot, &order).await {
                            tries += 1;
                            if tries == MIRROR_TRIES {
                                self.inner
                                    .mirror_failures
                                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                tracing::warn!(order = id, to, error = %e, "mirror write failed; switching writes copies it");
                                break;
                            }
                        }
                    }
                    return Ok(Order {
                        id,
                        total_cents,
                        created_at: now,
                        lines: lines.to_vec(),
                    });
                }
                Placed::Refused => {
                    self.inner
                        .refusals
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    self.reload_routing().await?;
                    if attempt > 0 {
                        tokio::time::sleep(RETRY_PAUSE).await;
                    }
                }
            }
        }
        Err(refused("order"))
    }

    async fn orders(&self, user_id: i64) -> StoreResult<Vec<OrderSummary>> {
        let slot = slot_of_user(user_id);
        self.read_slot(slot, |pool| async move {
            let rows: Vec<(bool, Option<i64>, Option<i64>, Option<i64>)> = sqlx::query_as(
                "SELECT g.ok, o.id, o.total_cents, o.created_at \
                 FROM (SELECT EXISTS (SELECT 1 FROM shard_slots WHERE slot = $2 AND readable) AS ok) g \
                 LEFT JOIN all_orders o ON g.ok AND o.user_id = $1 \
                 ORDER BY o.created_at DESC, o.id DESC",
            )
            .bind(user_id)
            .bind(slot as i16)
            .fetch_all(&pool)
            .await?;
            if !rows.first().is_some_and(|r| r.0) {
                return Ok(None);
            }
            Ok(Some(
                rows.into_iter()
                    .filter_map(|(_, id, total, at)| {
                        Some(OrderSummary {
                            id: id?,
                            total_cents: total?,
                            created_at: at?,
                        })
                    })
                    .collect(),
            ))
        })
        .await
    }

    async fn order(&self, user_id: i64, order_id: i64) -> StoreResult<Option<Order>> {
        let slot = slot_of_user(user_id);
        if slot_of_order(order_id) != slot {
            return Ok(None);
        }
        type Row = (
            bool,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<String>,
            Option<i64>,
            Option<i64>,
        );
        self.read_slot(slot, |pool| async move {
            let rows: Vec<Row> = sqlx::query_as(
                "SELECT g.ok, o.id, o.total_cents, o.created_at, \
                        i.product_id, i.name, i.unit_price_cents, i.quantity \
                 FROM (SELECT EXISTS (SELECT 1 FROM shard_slots WHERE slot = $3 AND readable) AS ok) g \
                 LEFT JOIN all_orders o ON g.ok AND o.id = $1 AND o.user_id = $2 \
                 LEFT JOIN all_order_items i ON i.order_id = o.id \
                 ORDER BY i.product_id",
            )
            .bind(order_id)
            .bind(user_id)
            .bind(slot as i16)
            .fetch_all(&pool)
            .await?;
            if !rows.first().is_some_and(|r| r.0) {
                return Ok(None);
            }
            let mut order: Option<Order> = None;
            for (_, id, total, at, pid, name, price, qty) in rows {
                let (Some(id), Some(total_cents), Some(created_at)) = (id, total, at) else {
                    continue;
                };
                let o = order.get_or_insert_with(|| Order {
                    id,
                    total_cents,
                    created_at,
                    lines: Vec::new(),
                });
                if let (Some(product_id), Some(name), Some(unit_price_cents), Some(quantity)) =
                    (pid, name, price, qty)
                {
                    o.lines.push(OrderLine {
                        product_id,
                        name,
                        unit_price_cents,
                        quantity,
                    });
                }
            }
            Ok(Some(order))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_slot_is_the_routers() {
        let dbs: Vec<String> = vec!["a".into(), "b".into()];
        let r = router(&dbs, 0).unwrap();
        for user in 0..500i64 {
            let db = r
                .locate("orders", &Query::key("user_id", user))
                .unwrap()
                .database;
            assert_eq!(&*db, slot_owner(&r, slot_of_user(user)).unwrap());
        }
    }

    #[test]
    fn ids_carry_their_slot() {
        for slot in 0..SLOTS {
            let id = (12345i64 << SLOT_BITS) | i64::from(slot);
            assert_eq!(slot_of_order(id), slot);
        }
    }

    #[test]
    fn two_to_four_in_this_order_moves_half_the_slots_to_new_databases() {
        let old = router(&["o0".into(), "o1".into()], 0).unwrap();
        let new = router(&["o0".into(), "o2".into(), "o1".into(), "o3".into()], 1).unwrap();
        let mut moved = 0;
        for slot in 0..SLOTS {
            let (a, b) = (
                slot_owner(&old, slot).unwrap(),
                slot_owner(&new, slot).unwrap(),
            );
            if a != b {
                moved += 1;
                assert!(b == "o2" || b == "o3", "slot {slot} moves {a} -> {b}");
            }
        }
        assert_eq!(moved, 8);
    }
}
