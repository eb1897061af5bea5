#!/usr/bin/env bash
# Benchmarks the products service's reads with wrk at 32 connections: GET /api/products/:id and
# a 20-item list page, on SQLite (`mercato up`) and PostgreSQL (`mercato serve products` beside
# `mercato serve users`, whose JWKS it uses). Then reservations per second through the
# reservation consumer (examples/reservations.rs).
#
#   bash bench/products.sh          # needs wrk (apt-get install wrk); builds the release binary
#   DURATION=30s ORDERS=50000 bash bench/products.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-15s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
ORDERS=${ORDERS:-20000}
PG_URL=${MERCATO_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
BIN=target/release/mercato
cargo build --release -q -p mercato --bin mercato
cargo build --release -q -p mercato-products --example reservations
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }

export RUST_LOG=warn MERCATO_ADMIN_EMAIL=bench-admin@example.com MERCATO_ADMIN_PASSWORD=bench-admin-password
users_port=18481
port=18482
pids=()

stop() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; wait "$p" 2>/dev/null || true; done; pids=(); }
trap stop EXIT

wait_ready() {
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$1/health/ready" >/dev/null && return 0
    sleep 0.1
  done
  echo "the service on port $1 did not become ready" >&2; exit 1
}

run_scenarios() {
  local label=$1 base="http://127.0.0.1:$port" auth="http://127.0.0.1:$2"
  local token id
  token=$(curl -sf -X POST "$auth/api/auth/login" -H 'content-type: application/json' \
    -d "{\"email\":\"$MERCATO_ADMIN_EMAIL\",\"password\":\"$MERCATO_ADMIN_PASSWORD\"}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  for i in $(seq 1 100); do
    id=$(curl -sf -X POST "$base/api/products" -H "authorization: Bearer $token" \
      -H 'content-type: application/json' \
      -d "{\"name\":\"Bench product $i\",\"price\":\"$i.99\",\"stock\":1000,\"category\":\"bench\",\"description\":\"A product for the benchmark\"}" |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  done
  echo "### $label: GET /api/products/:id"
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$base/api/products/$id"
  echo "### $label: GET /api/products?limit=20"
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$base/api/products?limit=20"
  echo "### $label: peak RSS of the server (KiB)"
  grep VmHWM "/proc/${pids[-1]}/status"
}

data=$(mktemp -d)
"$BIN" up --listen "127.0.0.1:$port" --data-dir "$data" >/dev/null &
pids+=("$!")
wait_ready "$port"
run_scenarios "mercato up (SQLite)" "$port"
stop

users_db="mercato_bench_users_$$" products_db="mercato_bench_products_$$"
psql "$PG_URL" -qc "CREATE DATABASE $users_db" >/dev/null
psql "$PG_URL" -qc "CREATE DATABASE $products_db" >/dev/null
"$BIN" serve users --listen "127.0.0.1:$users_port" --database-url "${PG_URL%/*}/$users_db" \
  --data-dir "$data" --nats-prefix "bench$$" >/dev/null &
pids+=("$!")
wait_ready "$users_port"
"$BIN" serve products --listen "127.0.0.1:$port" --database-url "${PG_URL%/*}/$products_db" \
  --users-url "http://127.0.0.1:$users_port" --nats-prefix "bench$$" >/dev/null &
pids+=("$!")
wait_ready "$port"
run_scenarios "mercato serve products (PostgreSQL)" "$users_port"
stop
psql "$PG_URL" -qc "DROP DATABASE $users_db WITH (FORCE)" >/dev/null
psql "$PG_URL" -qc "DROP DATABASE $products_db WITH (FORCE)" >/dev/null
rm -rf "$data"

echo "### reservations through the consumer"
for setup in "sqlite embedded" "postgres jetstream"; do
  set -- $setup
  target/release/examples/reservations --backend "$1" --bus "$2" --orders "$ORDERS" --lines 3
done
