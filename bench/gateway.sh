#!/usr/bin/env bash
# Benchmarks the GraphQL gateway under `mercato up` at 32 connections with wrk, each beside the
# REST route it stands on, measured in the same run:
#   - GraphQL `product(id)` (bench/graphql.lua) against `GET /api/products/:id`;
#   - a nested page `orders(first: 20) { items { product } user }` as an admin against
#     `GET /api/orders?limit=20` (the REST page alone, without its users and products).
# The gateway's rate limit is turned off for the run (MERCATO_GATEWAY__RATE_LIMIT_PER_MINUTE=0).
#
#   bash bench/gateway.sh           # needs wrk; builds the release binary
#   DURATION=30s bash bench/gateway.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-15s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
BIN=${BIN:-target/release/mercato}
[ "$BIN" = target/release/mercato ] && cargo build --release -q -p mercato --bin mercato
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }

export RUST_LOG=error MERCATO_ADMIN_EMAIL=bench-admin@example.com MERCATO_ADMIN_PASSWORD=bench-admin-password
export MERCATO_GATEWAY__RATE_LIMIT_PER_MINUTE=0
port=18501 base=http://127.0.0.1:18501
data=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$data"; }
trap cleanup EXIT

"$BIN" up --listen "127.0.0.1:$port" --data-dir "$data" >/dev/null &
pid=$!
for _ in $(seq 1 100); do curl -sf "$base/health/ready" >/dev/null && break; sleep 0.1; done

json() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }
login() {
  curl -sf -X POST "$base/api/auth/login" -H 'content-type: application/json' \
    -d "{\"email\":\"$1\",\"password\":\"$2\"}" | json 'd["token"]'
}
admin=$(login "$MERCATO_ADMIN_EMAIL" "$MERCATO_ADMIN_PASSWORD")
ids=()
for i in 1 2 3 4 5 6; do
  ids+=("$(curl -sf -X POST "$base/api/products" -H "authorization: Bearer $admin" \
    -H 'content-type: application/json' \
    -d "{\"name\":\"Bench product $i\",\"price\":\"$i.25\",\"stock\":1000000}" | json 'd["id"]')")
done
# 20 orders of 3 lines from 4 customers, settled, for the nested page.
for c in 1 2 3 4; do
  curl -sf -X POST "$base/api/users" -H 'content-type: application/json' \
    -d "{\"name\":\"Customer $c\",\"email\":\"c$c@example.com\",\"password\":\"customer password\"}" >/dev/null
  token=$(login "c$c@example.com" "customer password")
  for n in 1 2 3 4 5; do
    a=${ids[$(( (c + n) % 6 ))]} b=${ids[$(( (c + n + 1) % 6 ))]} d=${ids[$(( (c + n + 2) % 6 ))]}
    curl -sf -X POST "$base/api/orders" -H "authorization: Bearer $token" -H 'prefer: wait=10' \
      -H 'content-type: application/json' \
      -d "{\"items\":[{\"productId\":\"$a\",\"quantity\":1},{\"productId\":\"$b\",\"quantity\":2},{\"productId\":\"$d\",\"quantity\":1}]}" >/dev/null
  done
done
product=${ids[0]}

run() { echo "### $1"; shift; wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$@"; echo; }

run "REST GET /api/products/:id" "$base/api/products/$product"
QUERY="{ product(id: \"$product\") { id sku name price stock active } }" \
  run "GraphQL product(id)" -s bench/graphql.lua "$base/graphql"
run "REST GET /api/orders?limit=20 (admin)" -H "Authorization: Bearer $admin" "$base/api/orders?limit=20"
TOKEN=$admin QUERY='{ orders(first: 20) { edges { node { id status total user { email } items { quantity unitPrice product { name price } } } } } }' \
  run "GraphQL orders(first: 20) with user and items.product (admin)" -s bench/graphql.lua "$base/graphql"
echo "### peak RSS of mercato up: $(awk '/VmHWM/ {print $2 " " $3}' "/proc/$pid/status")"
