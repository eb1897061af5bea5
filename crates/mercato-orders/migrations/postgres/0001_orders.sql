-- Orders. `items` is the JSON list of lines (`productId`, `quantity`, and once priced `unitPrice`
-- in cents and `name`). `version` increases on every change and is the `orderVersion` of the
-- events. While an item change waits for the products service, `awaiting_version` is the version
-- whose answer is expected and `previous_items` / `previous_total_cents` are what a refused change
-- restores. `stock_released` turns 1 when the products service has released a cancelled order.
CREATE TABLE orders (
    id VARCHAR(36) NOT NULL PRIMARY KEY,
    user_id VARCHAR(36) NOT NULL,
    status VARCHAR(16) NOT NULL,
    items TEXT NOT NULL,
    total_cents BIGINT NULL,
    shipping_address TEXT NULL,
    payment_method VARCHAR(200) NULL,
    rejection_reason VARCHAR(32) NULL,
    last_update_rejection TEXT NULL,
    version BIGINT NOT NULL,
    awaiting_version BIGINT NULL,
    previous_items TEXT NULL,
    previous_total_cents BIGINT NULL,
    stock_released SMALLINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX orders_newest ON orders (created_at, id);
CREATE INDEX orders_user_newest ON orders (user_id, created_at, id);

-- The users this service has heard of (from user.* events): a deleted user's tokens are refused.
-- `newest_event` is the id of the newest event applied (UUIDv7 ids sort by creation), so older
-- events arriving late change nothing.
CREATE TABLE known_users (
    user_id VARCHAR(36) NOT NULL PRIMARY KEY,
    role VARCHAR(16) NOT NULL,
    deleted SMALLINT NOT NULL,
    newest_event VARCHAR(36) NOT NULL
);

-- The catalog replica (from product.* events): names shown while an order is pending.
CREATE TABLE catalog (
    product_id VARCHAR(36) NOT NULL PRIMARY KEY,
    name VARCHAR(200) NOT NULL,
    price_cents BIGINT NOT NULL,
    active SMALLINT NOT NULL,
    newest_event VARCHAR(36) NOT NULL
);

-- Idempotency keys, per user and route, with the first response (kept at least 24 h).
-- `fingerprint` is the SHA-256 of the request (its canonical JSON body, or the order id of a
-- cancel): the same key with another request is refused.
CREATE TABLE idempotency_keys (
    user_id VARCHAR(36) NOT NULL,
    route VARCHAR(16) NOT NULL,
    idempotency_key VARCHAR(255) NOT NULL,
    fingerprint VARCHAR(64) NOT NULL,
    status SMALLINT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, route, idempotency_key)
);
CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at);
