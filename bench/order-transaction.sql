-- pgbench's baseline for the order saga: one order's whole write path in a single transaction,
-- what a monolith would do with no events and no second service. Ten statements: the order and
-- its event, three conditional stock updates with their reservation lines, the confirmation.
--   pgbench -n -c 8 -j 2 -T 15 -f bench/order-transaction.sql <database prepared by bench/orders.sh>
\set p1 random(1, 100)
\set p2 random(101, 200)
\set p3 random(201, 300)
\set id random(1, 1000000000000) * 1000 + :client_id
BEGIN;
INSERT INTO bench_orders (id, user_id, status, items, version, created_at) VALUES (:id, 1, 'pending', '[{"p":1,"q":1},{"p":2,"q":1},{"p":3,"q":1}]', 1, 0);
INSERT INTO bench_outbox (subject, payload) VALUES ('order.placed', '{"specversion":"1.0","type":"mercato.order.placed.v1","data":{"items":[1,2,3]}}');
UPDATE bench_products SET stock = stock - 1, version = version + 1 WHERE id = :p1 AND stock >= 1;
UPDATE bench_products SET stock = stock - 1, version = version + 1 WHERE id = :p2 AND stock >= 1;
UPDATE bench_products SET stock = stock - 1, version = version + 1 WHERE id = :p3 AND stock >= 1;
INSERT INTO bench_lines (order_id, product_id, quantity) VALUES (:id, :p1, 1), (:id, :p2, 1), (:id, :p3, 1);
INSERT INTO bench_outbox (subject, payload) VALUES ('inventory.reserved', '{"specversion":"1.0","type":"mercato.inventory.reserved.v1","data":{"items":[1,2,3]}}');
UPDATE bench_orders SET status = 'confirmed', version = 2 WHERE id = :id;
INSERT INTO bench_outbox (subject, payload) VALUES ('order.confirmed', '{"specversion":"1.0","type":"mercato.order.confirmed.v1","data":{}}');
COMMIT;
