-- One database per service: a service never reads another's tables (DESIGN.md, "Storage").
-- The official postgres image runs this once, when its data volume is first initialised
-- (/docker-entrypoint-initdb.d). Each service creates its own tables on start (migrations).
CREATE DATABASE mercato_users;
CREATE DATABASE mercato_products;
CREATE DATABASE mercato_orders;
