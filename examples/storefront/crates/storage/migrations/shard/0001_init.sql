-- The schema of every orders shard database (stage 7). Orders and their lines are
-- binding tables: an order's lines live in the same database, and an order id
-- carries its logical shard (slot) in its low 4 bits, so `id & 15` is the slot.
-- No foreign keys to users or products: those live in other databases (stage 6).

CREATE TABLE orders (
    id BIGINT PRIMARY KEY,
    user_id BIGINT NOT NULL,
    total_cents BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX orders_user ON orders (user_id, created_at);
CREATE INDEX orders_latest ON orders (created_at DESC, id DESC);

CREATE TABLE order_items (
    order_id BIGINT NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    product_id BIGINT NOT NULL,
    name TEXT NOT NULL,
    unit_price_cents BIGINT NOT NULL,
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    -- The order's, so that lines are archived with their order, by month.
    created_at BIGINT NOT NULL,
    PRIMARY KEY (order_id, product_id)
);

-- Orders older than the current month, in monthly partitions named by
-- scalekit-shard's time split (orders_202610, order_items_202610), created by the
-- archive operation. Reads go through the all_* views, so a process never needs to
-- know which months exist.
CREATE TABLE orders_archive (
    id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    total_cents BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);
CREATE INDEX orders_archive_user ON orders_archive (user_id, created_at);
CREATE INDEX orders_archive_id ON orders_archive (id);

CREATE TABLE order_items_archive (
    order_id BIGINT NOT NULL,
    product_id BIGINT NOT NULL,
    name TEXT NOT NULL,
    unit_price_cents BIGINT NOT NULL,
    quantity BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (order_id, product_id, created_at)
) PARTITION BY RANGE (created_at);

CREATE VIEW all_orders AS
    SELECT id, user_id, total_cents, created_at FROM orders
    UNION ALL
    SELECT id, user_id, total_cents, created_at FROM orders_archive;

CREATE VIEW all_order_items AS
    SELECT order_id, product_id, name, unit_price_cents, quantity, created_at FROM order_items
    UNION ALL
    SELECT order_id, product_id, name, unit_price_cents, quantity, created_at FROM order_items_archive;

-- The logical shards this database serves. A write transaction takes FOR SHARE on
-- its slot's row and refuses to write unless `writable`; a read checks `readable`
-- in the same statement. `mirror` names the database a migration copies each
-- write to. The resharding mover changes these rows (FOR UPDATE) to move a slot.
CREATE TABLE shard_slots (
    slot SMALLINT PRIMARY KEY,
    writable BOOLEAN NOT NULL,
    readable BOOLEAN NOT NULL,
    mirror TEXT
);

-- Used in the control database only (the first shard database): where each slot
-- is read and written, the resharding state, and the order id blocks.
CREATE TABLE shard_routing (
    slot SMALLINT PRIMARY KEY,
    read_db TEXT NOT NULL,
    write_db TEXT NOT NULL
);

CREATE TABLE shard_state (
    one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
    epoch BIGINT NOT NULL,
    databases TEXT NOT NULL,
    phase TEXT NOT NULL,
    target_databases TEXT NOT NULL DEFAULT '',
    rows_copied BIGINT NOT NULL DEFAULT 0,
    moving_slots TEXT NOT NULL DEFAULT '',
    updated_at BIGINT NOT NULL DEFAULT 0
);

-- hi/lo order ids: each nextval is a block of 1024 counters; id = counter * 16 + slot.
CREATE SEQUENCE order_id_blocks;
