-- The catalog. `stock` is what is available to order: units held by orders are already taken
-- off. `version` increases on every change (the `ETag`). Money is in cents. `search_text` is name,
-- description and sku lower-cased by the service (Unicode-aware on every backend), what `q=`
-- matches.
CREATE TABLE products (
    id VARCHAR(36) NOT NULL PRIMARY KEY,
    sku VARCHAR(64) NOT NULL,
    sku_lower VARCHAR(64) NOT NULL,
    name VARCHAR(200) NOT NULL,
    description TEXT NULL,
    category VARCHAR(100) NULL,
    category_lower VARCHAR(100) NULL,
    price_cents BIGINT NOT NULL,
    stock BIGINT NOT NULL,
    active SMALLINT NOT NULL,
    version BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    search_text TEXT NOT NULL,
    CONSTRAINT products_sku_lower_key UNIQUE (sku_lower)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE INDEX products_category ON products (category_lower, id);

-- One row per order this service has seen: the latest `orderVersion` applied and whether the
-- order holds stock (`held`), was refused (`rejected`) or is `cancelled` (terminal: a cancel
-- that overtakes its placement leaves this mark, so the late placement reserves nothing).
CREATE TABLE order_holds (
    order_id VARCHAR(36) NOT NULL PRIMARY KEY,
    order_version BIGINT NOT NULL,
    state VARCHAR(16) NOT NULL,
    updated_at BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- The units each `held` order holds, per product: exactly what a cancel gives back.
CREATE TABLE reservation_lines (
    order_id VARCHAR(36) NOT NULL,
    product_id VARCHAR(36) NOT NULL,
    quantity BIGINT NOT NULL,
    PRIMARY KEY (order_id, product_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE INDEX reservation_lines_product ON reservation_lines (product_id);
