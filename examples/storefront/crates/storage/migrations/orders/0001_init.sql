-- Stage 6, the orders database: orders and their lines. user_id and product_id
-- name rows of the users and catalog databases: no foreign key crosses databases.
-- A line keeps the name and price at the time of the order.
CREATE TABLE orders (
    id BIGSERIAL PRIMARY KEY,
    user_id BIGINT NOT NULL,
    total_cents BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX orders_user ON orders (user_id, id);

CREATE TABLE order_items (
    order_id BIGINT NOT NULL REFERENCES orders (id),
    product_id BIGINT NOT NULL,
    name TEXT NOT NULL,
    unit_price_cents BIGINT NOT NULL,
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, product_id)
);
