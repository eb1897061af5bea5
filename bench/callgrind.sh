#!/usr/bin/env bash
# Instructions per request of REST `GET /api/products/:id` and GraphQL `product(id)` under
# `mercato up`, counted by callgrind: repeatable whatever else the machine is doing, so two
# builds can be compared without alternating runs. Needs valgrind.
#
#   bash bench/callgrind.sh BIN [VAR=VALUE ...]
#   callgrind_annotate --inclusive=yes <the .graphql dump it names>   # where they go
set -euo pipefail
[ $# -ge 1 ] || { sed -n 2,8p "$0" >&2; exit 2; }
bin=$1
shift
command -v valgrind >/dev/null || { echo "valgrind is missing: apt-get install valgrind" >&2; exit 1; }
port=$((18700 + RANDOM % 200))
data=$(mktemp -d)
out=$(mktemp -d)/callgrind
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$data"; }
trap cleanup EXIT

export RUST_LOG=error MERCATO_ADMIN_EMAIL=bench-admin@example.com
export MERCATO_ADMIN_PASSWORD=bench-admin-password MERCATO_GATEWAY__RATE_LIMIT_PER_MINUTE=0
env "$@" valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out.%p" \
  "$bin" up --listen "127.0.0.1:$port" --data-dir "$data" >/dev/null 2>&1 &
pid=$!
base=http://127.0.0.1:$port
for _ in $(seq 1 120); do curl -sf "$base/health/ready" >/dev/null && break; sleep 1; done
json() { python3 -c "import json,sys; print(json.load(sys.stdin)[sys.argv[1]])" "$1"; }
admin=$(curl -sf -X POST "$base/api/auth/login" -H 'content-type: application/json' \
  -d "{\"email\":\"$MERCATO_ADMIN_EMAIL\",\"password\":\"$MERCATO_ADMIN_PASSWORD\"}" | json token)
product=$(curl -sf -X POST "$base/api/products" -H "authorization: Bearer $admin" \
  -H 'content-type: application/json' \
  -d '{"name":"Bench product","price":"1.25","stock":1000000}' | json id)

# n sequential keep-alive requests of one kind.
load() {
  python3 - "$port" "$1" "$product" "$2" <<'PY'
import http.client, json, sys
port, kind, product, n = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
conn = http.client.HTTPConnection("127.0.0.1", port)
query = json.dumps({"query": '{ product(id: "%s") { id sku name price stock active } }' % product})
for _ in range(n):
    if kind == "rest":
        conn.request("GET", "/api/products/" + product)
    else:
        conn.request("POST", "/graphql", body=query, headers={"content-type": "application/json"})
    answer = conn.getresponse()
    body = answer.read()
    assert answer.status == 200 and b'"errors"' not in body, (answer.status, body)
PY
}
callgrind_control -i on "$pid" >/dev/null 2>&1
load graphql 300
load rest 300
for kind in rest graphql; do
  callgrind_control -z "$pid" >/dev/null 2>&1
  load "$kind" 1000
  callgrind_control -d "$kind" "$pid" >/dev/null 2>&1
done
rest=$(grep -h '^summary' "$out.$pid.1" | awk '{print $2}')
graphql=$(grep -h '^summary' "$out.$pid.2" | awk '{print $2}')
echo "REST GET /api/products/:id: $((rest / 1000)) instructions per request ($out.$pid.1)"
echo "GraphQL product(id): $((graphql / 1000)) instructions per request ($out.$pid.2)"
