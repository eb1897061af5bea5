#!/usr/bin/env bash
# Benchmarks the order saga at 32 connections with wrk (bench/place-order.lua, three lines per
# order): placement (`POST /api/orders`, answered at once) and settled orders (`Prefer: wait=30`,
# each answer held until the order is confirmed: wrk's rate is then placed → confirmed per second),
# under `mercato up` (SQLite, embedded log) and with one process per service on PostgreSQL and
# JetStream, with `serve gateway` in front (orders placed through the gateway's forwarding). Then pgbench's rate for the same order as one local transaction
# (bench/order-transaction.sql, 8 clients), measured in the same run as the baseline.
#
#   bash bench/orders.sh          # needs wrk and pgbench; builds the release binary
#   DURATION=30s bash bench/orders.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-15s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
# Orders take one product from each third of the catalog, like pgbench's order transaction
# (300 rows); PRODUCT_COUNT=3 makes every order name the same three (all on three hot rows).
PRODUCT_COUNT=${PRODUCT_COUNT:-300}
PG_URL=${MERCATO_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
NATS_URL=${MERCATO_TEST_NATS_URL:-nats://127.0.0.1:4222}
# BIN=path/to/mercato uses that build as it is; by default the release build is made first.
if [ -z "${BIN:-}" ]; then
  BIN=${CARGO_TARGET_DIR:-target}/release/mercato
  cargo build --release -q -p mercato --bin mercato
fi
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
command -v pgbench >/dev/null || { echo "pgbench is missing: apt-get install postgresql-contrib" >&2; exit 1; }

export RUST_LOG=error MERCATO_ADMIN_EMAIL=bench-admin@example.com MERCATO_ADMIN_PASSWORD=bench-admin-password
# One load generator is one client: the gateway's per-client limit would refuse most of the run.
export MERCATO_GATEWAY__RATE_LIMIT_PER_MINUTE=0
users_port=18491 products_port=18492 orders_port=18493 gateway_port=18494
pids=()
databases=()

stop() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; wait "$p" 2>/dev/null || true; done; pids=(); }
cleanup() {
  stop
  for db in "${databases[@]}"; do psql "$PG_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null; done
}
trap cleanup EXIT

wait_ready() {
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$1/health/ready" >/dev/null && return 0
    sleep 0.1
  done
  echo "the service on port $1 did not become ready" >&2; exit 1
}

json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)[\"$1\"])"; }

# run_scenarios LABEL USERS_BASE PRODUCTS_BASE ORDERS_BASE
run_scenarios() {
  local label=$1 users=$2 products=$3 orders=$4 admin customer ids=() stock_before
  admin=$(curl -sf -X POST "$users/api/auth/login" -H 'content-type: application/json' \
    -d "{\"email\":\"$MERCATO_ADMIN_EMAIL\",\"password\":\"$MERCATO_ADMIN_PASSWORD\"}" | json_field token)
  curl -sf -X POST "$users/api/users" -H 'content-type: application/json' \
    -d '{"name":"Bench Customer","email":"bench-customer@example.com","password":"bench-customer-password"}' >/dev/null
  customer=$(curl -sf -X POST "$users/api/auth/login" -H 'content-type: application/json' \
    -d '{"email":"bench-customer@example.com","password":"bench-customer-password"}' | json_field token)
  # As many products as pgbench's baseline has rows (bench/order-transaction-setup.sql).
  for i in $(seq 1 "$PRODUCT_COUNT"); do
    ids+=("$(curl -sf -X POST "$products/api/products" -H "authorization: Bearer $admin" \
      -H 'content-type: application/json' \
      -d "{\"name\":\"Bench product $i\",\"price\":\"$(( i % 50 + 1 )).25\",\"stock\":1000000000}" | json_field id)")
  done
  export TOKEN=$customer PRODUCTS
  PRODUCTS=$(IFS=,; echo "${ids[*]}")
  echo "### $label: POST /api/orders (3 lines), answered at once"
  local started output placed drained
  started=$(date +%s.%N)
  output=$(PREFER="" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s bench/place-order.lua "$orders/api/orders")
  echo "$output"
  placed=$(echo "$output" | awk '/requests in/ {print $1}')
  # The saga's throughput: every order placed in the run, from the first placement until the
  # last one has left pending (polled every 100 ms).
  for _ in $(seq 1 6000); do
    pending=$(curl -sf "$orders/api/orders?status=pending&limit=1" -H "authorization: Bearer $admin" |
      python3 -c 'import json,sys; print(len(json.load(sys.stdin)["items"]))')
    [ "$pending" = 0 ] && break
    sleep 0.1
  done
  drained=$(date +%s.%N)
  python3 -c "import sys; n, t = int(sys.argv[1]), float(sys.argv[3]) - float(sys.argv[2]); print(f'### $label: saga throughput: {n} orders placed and settled in {t:.1f} s = {n / t:.0f} settled orders/s')" \
    "$placed" "$started" "$drained"
  echo "### $label: settled orders (POST with Prefer: wait=30, placed → confirmed)"
  PREFER="wait=30" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s bench/place-order.lua "$orders/api/orders"
  echo "### $label: orders left pending after the runs"
  sleep 2
  curl -sf "$orders/api/orders?status=pending&limit=100" -H "authorization: Bearer $admin" |
    python3 -c 'import json,sys; print(len(json.load(sys.stdin)["items"]))'
  echo "### $label: peak RSS of each process (KiB)"
  for pid in "${pids[@]}"; do grep VmHWM "/proc/$pid/status"; done
}

pgbench_baseline() {
  local db="mercato_bench_pgbench_$$_$RANDOM"
  databases+=("$db")
  psql "$PG_URL" -qc "CREATE DATABASE $db" >/dev/null
  psql "${PG_URL%/*}/$db" -qf bench/order-transaction-setup.sql >/dev/null
  echo "### pgbench: the order as one local transaction (10 statements, 8 clients)"
  pgbench -n -c 8 -j 2 -T "${DURATION%s}" -f bench/order-transaction.sql "${PG_URL%/*}/$db" | grep -E "tps|latency|failed"
  psql "$PG_URL" -qc "DROP DATABASE $db WITH (FORCE)" >/dev/null
}

pgbench_baseline

data=$(mktemp -d)
"$BIN" up --listen "127.0.0.1:$orders_port" --data-dir "$data" >/dev/null &
pids+=("$!")
wait_ready "$orders_port"
base="http://127.0.0.1:$orders_port"
run_scenarios "mercato up (SQLite, embedded log)" "$base" "$base" "$base"
stop
rm -rf "$data"

prefix="bench$$"
for service in users products orders; do
  databases+=("mercato_bench_${service}_$$")
  psql "$PG_URL" -qc "CREATE DATABASE mercato_bench_${service}_$$" >/dev/null
done
data=$(mktemp -d)
common=(--nats-url "$NATS_URL" --nats-prefix "$prefix")
"$BIN" serve users --listen "127.0.0.1:$users_port" --database-url "${PG_URL%/*}/mercato_bench_users_$$" \
  --data-dir "$data" "${common[@]}" >/dev/null &
pids+=("$!")
wait_ready "$users_port"
for service in products orders; do
  port_var="${service}_port"
  "$BIN" serve "$service" --listen "127.0.0.1:${!port_var}" \
    --database-url "${PG_URL%/*}/mercato_bench_${service}_$$" \
    --users-url "http://127.0.0.1:$users_port" "${common[@]}" >/dev/null &
  pids+=("$!")
  wait_ready "${!port_var}"
done
"$BIN" serve gateway --listen "127.0.0.1:$gateway_port" --users-url "http://127.0.0.1:$users_port" \
  --products-url "http://127.0.0.1:$products_port" --orders-url "http://127.0.0.1:$orders_port" \
  "${common[@]}" >/dev/null &
pids+=("$!")
wait_ready "$gateway_port"
gateway="http://127.0.0.1:$gateway_port"
run_scenarios "serve gateway → users + products + orders (PostgreSQL, JetStream)" \
  "$gateway" "$gateway" "$gateway"
stop
rm -rf "$data"
pgbench_baseline
