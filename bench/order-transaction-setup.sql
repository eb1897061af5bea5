-- Tables for bench/order-transaction.sql, shaped like the services' own (text JSON, BIGINT keys).
CREATE TABLE bench_products (id BIGINT PRIMARY KEY, stock BIGINT NOT NULL, version BIGINT NOT NULL);
INSERT INTO bench_products SELECT g, 1000000000, 1 FROM generate_series(1, 300) g;
CREATE TABLE bench_orders (id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL, status VARCHAR(16) NOT NULL,
    items TEXT NOT NULL, version BIGINT NOT NULL, created_at BIGINT NOT NULL);
CREATE TABLE bench_lines (order_id BIGINT NOT NULL, product_id BIGINT NOT NULL, quantity BIGINT NOT NULL,
    PRIMARY KEY (order_id, product_id));
CREATE TABLE bench_outbox (sequence BIGSERIAL PRIMARY KEY, subject TEXT NOT NULL, payload TEXT NOT NULL);
