//! Online resharding ([`Resharder`]): slots move from their old databases to new
//! ones while orders keep being placed, driven by scalekit-shard's
//! [`Migration`] (copy, dual write, verify, switch reads, switch writes, clean
//! up, done; rollback before clean-up).
//!
//! The request path does not read the migration's phase from memory: several app
//! processes serve the shop, and they learn of a change when they next read the
//! routing table. What keeps them correct is the `shard_slots` row of each slot
//! in each database, which a write transaction locks `FOR SHARE`:
//!
//! * **Copy**: the new database gets a row for each moving slot (neither
//!   writable nor readable: it takes copies only), and every order of those slots
//!   is copied (current and archived, with their lines).
//! * **Dual write**: the old rows get `mirror = new`. The `UPDATE` waits for the
//!   writes in flight; every later write sees the mirror in its own transaction
//!   and copies its order to the new database after committing. A catch-up copies
//!   what was written in between.
//! * **Verify**: reads the new copies, the old rows, the new copies again; a row
//!   in the first read of new but not in old, or one that differs, is a mismatch;
//!   rows of old not yet in new are copied. Zero mismatches let it advance.
//! * **Switch reads**: the new rows become readable and the routing sends reads
//!   there. A process that still reads the old database reads a complete copy.
//! * **Switch writes**: in one transaction on the old database the mover locks the
//!   moving rows `FOR UPDATE` (waiting for writes in flight, holding back new
//!   ones), copies what is still missing, and makes them not writable; then the new
//!   rows become writable (mirroring back to old, for a rollback) and the routing
//!   sends writes there. A write that waited on the lock, or a process whose
//!   routing is old, is refused by the old database, reads the routing again and
//!   retries. No database accepts a slot's writes before it holds all its orders,
//!   and never two at once (if the mover dies in between, none does: writes of
//!   those slots fail until an operator acts, but nothing is lost).
//! * **Clean up**: mirrors stop, the old rows are deleted (reads still routed
//!   there are refused and re-routed), then the old copies of the orders.
//! * **Rollback** (before clean-up): the reverse switch if writes had moved,
//!   then routing back to old, the new rows deleted, the new copies deleted.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use scalekit_shard::{KeySet, Migration, Phase};
use serde::Serialize;

use super::archive::{ensure_months, month_of, ARCHIVE_LOCK};
use super::{config_error, order_digest, router, slot_owner, ShardedOrders, StoredOrder};
use crate::StoreResult;

/// Rows copied in one transaction.
const BATCH: usize = 500;
/// Verification rounds before giving up (each copies what was missing).
const VERIFY_ROUNDS: u32 = 5;

/// One slot's move.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SlotMove {
    /// The slot.
    pub slot: u32,
    /// The database it leaves.
    pub from: String,
    /// The database it goes to.
    pub to: String,
}

/// The shard layout and any resharding, as the control database records it
/// (for the ops page and `storefront reshard`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ShardStatus {
    /// The routing table's version.
    pub epoch: i64,
    /// The databases in use.
    pub databases: Vec<String>,
    /// `idle`, a migration phase (`copy`, `dual write`, ...), `done` or `rolled back`.
    pub phase: String,
    /// Where the running (or last) resharding moves to.
    pub target_databases: Vec<String>,
    /// The slots it moves.
    pub moving_slots: Vec<u32>,
    /// Orders copied so far.
    pub rows_copied: i64,
    /// Orders (current and archived) in each configured database.
    pub rows_per_database: Vec<(String, i64)>,
}

fn split(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

impl ShardedOrders {
    /// The layout and resharding progress, from the control database, with the
    /// orders in each database.
    pub async fn status(&self) -> StoreResult<ShardStatus> {
        Ok(ShardStatus {
            rows_per_database: self.rows_per_database().await?,
            ..self.state().await?
        })
    }

    /// The layout and resharding progress alone (one query on the control
    /// database; `rows_per_database` left empty).
    pub async fn state(&self) -> StoreResult<ShardStatus> {
        let (epoch, databases, phase, target, copied, moving): (
            i64,
            String,
            String,
            String,
            i64,
            String,
        ) = sqlx::query_as(
            "SELECT epoch, databases, phase, target_databases, rows_copied, moving_slots FROM shard_state",
        )
        .fetch_one(self.control().primary())
        .await?;
        Ok(ShardStatus {
            epoch,
            databases: split(&databases),
            phase,
            target_databases: split(&target),
            moving_slots: moving.split(',').filter_map(|s| s.parse().ok()).collect(),
            rows_copied: copied,
            rows_per_database: Vec::new(),
        })
    }
}

/// Drives one resharding (see the module docs). Only one runs at a time (the
/// control database's state says so); start it with [`Resharder::start`], then
/// call [`step`](Self::step) until [`Phase::Done`], or
/// [`rollback`](Self::rollback) before [`Phase::CleanUp`].
#[derive(Debug)]
pub struct Resharder {
    orders: ShardedOrders,
    migration: Arc<Migration>,
    moves: Vec<SlotMove>,
    pairs: BTreeMap<(String, String), Vec<u32>>,
    to: Vec<String>,
    epoch: i64,
    copied: AtomicU64,
    mismatches: parking_lot::Mutex<Option<u64>>,
}

impl Resharder {
    /// Plans the move from the databases in use to `to` and enters
    /// [`Phase::Copy`]. Refused while another resharding or an archive run is
    /// going on.
    pub async fn start(orders: &ShardedOrders, to: &[String]) -> StoreResult<Self> {
        for d in to {
            orders.db(d)?;
        }
        let control = orders.control().primary();
        let mut tx = control.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(ARCHIVE_LOCK)
            .execute(&mut *tx)
            .await?;
        let (epoch, databases, phase): (i64, String, String) =
            sqlx::query_as("SELECT epoch, databases, phase FROM shard_state FOR UPDATE")
                .fetch_one(&mut *tx)
                .await?;
        if !matches!(phase.as_str(), "idle" | "done" | "rolled back") {
            return Err(config_error(format!(
                "a resharding is already in phase {phase}"
            )));
        }
        let from = split(&databases);
        let old = router(&from, epoch.max(0) as u64)?;
        let new = router(to, epoch.max(0) as u64 + 1)?;
        let migration = Migration::new(old, new)
            .map_err(|e| config_error(format!("cannot plan the resharding: {e}")))?
            .on_transition(|from, to| tracing::info!(%from, %to, "resharding phase"));
        let mut moves = Vec::new();
        if let Some(table) = migration.plan().table("orders") {
            for m in &table.moves {
                let KeySet::Slots { first, last, .. } = m.keys else {
                    return Err(config_error(format!("unexpected move in the plan: {m}")));
                };
                for slot in first..=last {
                    moves.push(SlotMove {
                        slot,
                        from: m.from.to_string(),
                        to: m.to.to_string(),
                    });
                }
            }
        }
        // The routing in force must be the old table's, or the state has drifted.
        let routing: Vec<(i16, String, String)> =
            sqlx::query_as("SELECT slot, read_db, write_db FROM shard_routing ORDER BY slot")
                .fetch_all(&mut *tx)
                .await?;
        for (slot, read, write) in &routing {
            let owner = slot_owner(migration.old(), *slot as u32)?;
            if *read != owner || *write != owner {
                return Err(config_error(format!(
                    "slot {slot} is routed to {read}/{write}, not {owner} as epoch {epoch} says; repair the routing first"
                )));
            }
        }
        let mut pairs: BTreeMap<(String, String), Vec<u32>> = BTreeMap::new();
        for m in &moves {
            pairs
                .entry((m.from.clone(), m.to.clone()))
                .or_default()
                .push(m.slot);
        }
        let slots: Vec<String> = moves.iter().map(|m| m.slot.to_string()).collect();
        sqlx::query(
            "UPDATE shard_state SET phase = 'copy', target_databases = $1, moving_slots = $2, \
             rows_copied = 0, updated_at = extract(epoch FROM now())::int8",
        )
        .bind(to.join(","))
        .bind(slots.join(","))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let this = Self {
            orders: orders.clone(),
            migration: Arc::new(migration),
            moves,
            pairs,
            to: to.to_vec(),
            epoch,
            copied: AtomicU64::new(0),
            mismatches: parking_lot::Mutex::new(None),
        };
        // The new databases take copies of the moving slots (and nothing else
        // left over from an abandoned run).
        for ((_, to), slots) in &this.pairs {
            let db = orders.db(to)?.primary();
            let s = slots_i64(slots);
            delete_slot_rows(db, &s).await?;
            sqlx::query(
                "INSERT INTO shard_slots (slot, writable, readable, mirror) \
                 SELECT s, FALSE, FALSE, NULL FROM UNNEST($1::int2[]) s \
                 ON CONFLICT (slot) DO UPDATE SET writable = FALSE, readable = FALSE, mirror = NULL",
            )
            .bind(slots_i16(slots))
            .execute(db)
            .await?;
        }
        Ok(this)
    }

    /// The moves planned.
    pub fn moves(&self) -> &[SlotMove] {
        &self.moves
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.migration.phase()
    }

    /// Orders copied so far.
    pub fn rows_copied(&self) -> u64 {
        self.copied.load(Ordering::Relaxed)
    }

    /// The mismatches the last verification found.
    pub fn mismatches(&self) -> Option<u64> {
        *self.mismatches.lock()
    }

    async fn persist(&self, phase: &str) -> StoreResult<()> {
        sqlx::query(
            "UPDATE shard_state SET phase = $1, rows_copied = $2, \
             updated_at = extract(epoch FROM now())::int8",
        )
        .bind(phase)
        .bind(i64::try_from(self.rows_copied()).unwrap_or(i64::MAX))
        .execute(self.orders.control().primary())
        .await?;
        Ok(())
    }

    fn advance(&self) -> StoreResult<Phase> {
        self.migration
            .advance()
            .map_err(|e| config_error(format!("resharding: {e}")))
    }

    /// Does the work of the current phase and goes to the next; returns it.
    pub async fn step(&self) -> StoreResult<Phase> {
        let phase = self.phase();
        match phase {
            Phase::Copy => {
                for ((from, to), slots) in &self.pairs {
                    self.copy_missing(from, to, slots).await?;
                }
                self.advance()?;
                for ((from, to), slots) in &self.pairs {
                    set_mirror(&self.orders, from, slots, Some(to)).await?;
                    self.copy_missing(from, to, slots).await?;
                }
            }
            Phase::DualWrite => {
                self.advance()?;
                self.verify().await?;
            }
            Phase::Verify => {
                if self.mismatches() != Some(0) {
                    self.verify().await?;
                }
                self.advance()?;
                for ((_, to), slots) in &self.pairs {
                    sqlx::query("UPDATE shard_slots SET readable = TRUE WHERE slot = ANY($1)")
                        .bind(slots_i16(slots))
                        .execute(self.orders.db(to)?.primary())
                        .await?;
                    self.route(slots, Some(to), None).await?;
                }
            }
            Phase::SwitchReads => {
                self.advance()?;
                for ((from, to), slots) in &self.pairs {
                    self.switch_writes(from, to, slots).await?;
                }
            }
            Phase::SwitchWrites => {
                self.advance()?;
                self.persist(&Phase::CleanUp.to_string()).await?;
                for ((from, to), slots) in &self.pairs {
                    // The old rows go first: from then on a read routed there
                    // is refused and no mirror lands there, so no process reads
                    // an old copy that stopped receiving its writes.
                    let old = self.orders.db(from)?.primary();
                    sqlx::query("DELETE FROM shard_slots WHERE slot = ANY($1)")
                        .bind(slots_i16(slots))
                        .execute(old)
                        .await?;
                    set_mirror(&self.orders, to, slots, None).await?;
                    delete_slot_rows(old, &slots_i64(slots)).await?;
                }
            }
            Phase::CleanUp => {
                self.advance()?;
                sqlx::query(
                    "UPDATE shard_state SET epoch = $1, databases = $2, phase = 'done', \
                     updated_at = extract(epoch FROM now())::int8",
                )
                .bind(self.epoch + 1)
                .bind(self.to.join(","))
                .execute(self.orders.control().primary())
                .await?;
                self.orders.reload_routing().await?;
                return Ok(Phase::Done);
            }
            Phase::Done | Phase::RolledBack => {
                return Err(config_error(format!("the resharding is {phase}")));
            }
        }
        let now = self.phase();
        self.persist(&now.to_string()).await?;
        self.orders.reload_routing().await?;
        Ok(now)
    }

    /// Goes back to the old layout (before [`Phase::CleanUp`]): afterwards the
    /// new databases hold nothing of the moved slots.
    pub async fn rollback(&self) -> StoreResult<()> {
        let phase = self.phase();
        self.migration
            .rollback()
            .map_err(|e| config_error(format!("resharding: {e}")))?;
        for ((from, to), slots) in &self.pairs {
            if phase == Phase::SwitchWrites {
                self.switch_writes(to, from, slots).await?;
            }
            // Routing back, then the new rows deleted (reads routed there are
            // refused, mirrors skip it) before the old rows stop mirroring: no
            // process reads a new copy that no longer receives the writes.
            self.route(slots, Some(from), Some(from)).await?;
            let new = self.orders.db(to)?.primary();
            sqlx::query("DELETE FROM shard_slots WHERE slot = ANY($1)")
                .bind(slots_i16(slots))
                .execute(new)
                .await?;
            let old = self.orders.db(from)?.primary();
            sqlx::query(
                "UPDATE shard_slots SET writable = TRUE, readable = TRUE, mirror = NULL \
                 WHERE slot = ANY($1)",
            )
            .bind(slots_i16(slots))
            .execute(old)
            .await?;
            delete_slot_rows(new, &slots_i64(slots)).await?;
        }
        self.persist(&Phase::RolledBack.to_string()).await?;
        self.orders.reload_routing().await?;
        Ok(())
    }

    /// Sets where `slots` are read and written in the control database.
    async fn route(
        &self,
        slots: &[u32],
        read: Option<&str>,
        write: Option<&str>,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE shard_routing SET read_db = COALESCE($2, read_db), write_db = COALESCE($3, write_db) \
             WHERE slot = ANY($1)",
        )
        .bind(slots_i16(slots))
        .bind(read)
        .bind(write)
        .execute(self.orders.control().primary())
        .await?;
        Ok(())
    }

    /// Moves the writes of `slots` from `from` to `to` (see the module docs).
    async fn switch_writes(&self, from: &str, to: &str, slots: &[u32]) -> StoreResult<()> {
        let old = self.orders.db(from)?.primary();
        let mut tx = old.begin().await?;
        sqlx::query("SELECT slot FROM shard_slots WHERE slot = ANY($1) FOR UPDATE")
            .bind(slots_i16(slots))
            .fetch_all(&mut *tx)
            .await?;
        // Every write to `from` has committed or waits: copy what is missing.
        self.copy_missing(from, to, slots).await?;
        sqlx::query(
            "UPDATE shard_slots SET writable = FALSE, readable = TRUE, mirror = NULL WHERE slot = ANY($1)",
        )
        .bind(slots_i16(slots))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        sqlx::query(
            "UPDATE shard_slots SET writable = TRUE, readable = TRUE, mirror = $2 WHERE slot = ANY($1)",
        )
        .bind(slots_i16(slots))
        .bind(from)
        .execute(self.orders.db(to)?.primary())
        .await?;
        self.route(slots, None, Some(to)).await
    }

    /// Copies the orders of `slots` that `to` lacks from `from`.
    async fn copy_missing(&self, from: &str, to: &str, slots: &[u32]) -> StoreResult<u64> {
        let target = self.orders.db(to)?;
        let have: BTreeSet<i64> =
            sqlx::query_scalar::<_, i64>("SELECT id FROM all_orders WHERE (id & 15) = ANY($1)")
                .bind(slots_i64(slots))
                .fetch_all(target.primary())
                .await?
                .into_iter()
                .collect();
        let missing: Vec<StoredOrder> = self
            .orders
            .stored_orders(from, Some(slots))
            .await?
            .into_iter()
            .filter(|o| !have.contains(&o.id))
            .collect();
        let mut months = BTreeSet::new();
        for o in missing.iter().filter(|o| o.archived) {
            months.insert(month_of(o.created_at)?);
        }
        ensure_months(target, &months).await?;
        for batch in missing.chunks(BATCH) {
            let mut tx = target.primary().begin().await?;
            super::insert_orders(&mut tx, batch).await?;
            tx.commit().await?;
        }
        let n = missing.len() as u64;
        self.copied.fetch_add(n, Ordering::Relaxed);
        Ok(n)
    }

    /// Compares the copies (see the module docs), copies what is missing and
    /// reports the mismatches to the migration; retries a few rounds.
    async fn verify(&self) -> StoreResult<u64> {
        let mut mismatches = 0;
        for _ in 0..VERIFY_ROUNDS {
            mismatches = 0;
            for ((from, to), slots) in &self.pairs {
                let digests = |orders: Vec<StoredOrder>| -> BTreeMap<i64, u64> {
                    orders
                        .into_iter()
                        .map(|o| (o.id, order_digest(o.id, o.user_id, o.total_cents, &o.lines)))
                        .collect()
                };
                let first_new = digests(self.orders.stored_orders(to, Some(slots)).await?);
                let old = digests(self.orders.stored_orders(from, Some(slots)).await?);
                for (id, d) in &first_new {
                    if old.get(id) != Some(d) {
                        mismatches += 1;
                    }
                }
                self.copy_missing(from, to, slots).await?;
            }
            if mismatches == 0 {
                break;
            }
        }
        *self.mismatches.lock() = Some(mismatches);
        self.migration
            .verified(mismatches)
            .map_err(|e| config_error(format!("resharding: {e}")))?;
        Ok(mismatches)
    }
}

/// Sets (or clears) the database `db` mirrors the writes of `slots` to.
async fn set_mirror(
    orders: &ShardedOrders,
    db: &str,
    slots: &[u32],
    mirror: Option<&str>,
) -> StoreResult<()> {
    sqlx::query("UPDATE shard_slots SET mirror = $2 WHERE slot = ANY($1)")
        .bind(slots_i16(slots))
        .bind(mirror)
        .execute(orders.db(db)?.primary())
        .await?;
    Ok(())
}

/// Deletes every order (current and archived, with lines) of `slots` in `db`.
async fn delete_slot_rows(db: &sqlx::PgPool, slots: &[i64]) -> StoreResult<()> {
    let mut tx = db.begin().await?;
    for sql in [
        "DELETE FROM order_items WHERE (order_id & 15) = ANY($1)",
        "DELETE FROM orders WHERE (id & 15) = ANY($1)",
        "DELETE FROM order_items_archive WHERE (order_id & 15) = ANY($1)",
        "DELETE FROM orders_archive WHERE (id & 15) = ANY($1)",
    ] {
        sqlx::query(sql).bind(slots).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

fn slots_i16(slots: &[u32]) -> Vec<i16> {
    slots.iter().map(|s| *s as i16).collect()
}

fn slots_i64(slots: &[u32]) -> Vec<i64> {
    slots.iter().map(|s| i64::from(*s)).collect()
}
