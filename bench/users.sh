#!/usr/bin/env bash
# Benchmarks the users service with wrk: GET /api/users/me, login and registration at 32
# connections, on SQLite (`mercato up`) and PostgreSQL (`mercato serve users`).
#
#   bash bench/users.sh            # needs wrk (apt-get install wrk) and a release build
#   DURATION=30s bash bench/users.sh
#
# The per-address login limit (300/min by default) is raised for the run: every request comes
# from 127.0.0.1. Figures go to stdout; BENCHMARKS.md records them with this command.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-15s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
PG_URL=${MERCATO_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
BIN=target/release/mercato
[ -x "$BIN" ] || cargo build --release -p mercato
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }

export MERCATO_USERS__RATE_LIMIT__PER_ADDRESS_PER_MINUTE=100000000
export RUST_LOG=warn
port=18480
pid=

stop() { [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; pid=; }
trap stop EXIT

wait_ready() {
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null && return 0
    sleep 0.1
  done
  echo "the service did not become ready" >&2; exit 1
}

run_scenarios() {
  local label=$1 base="http://127.0.0.1:$port"
  curl -sf -X POST "$base/api/users" -H 'content-type: application/json' \
    -d '{"name":"Bench","email":"bench@example.com","password":"benchmark-password"}' >/dev/null
  # 100 accounts for the login scenario, 8 registrations at a time (only these curls are waited
  # for: a bare `wait` would wait for the server too).
  local pids=()
  for i in $(seq 0 99); do
    curl -sf -X POST "$base/api/users" -H 'content-type: application/json' \
      -d "{\"name\":\"Bench $i\",\"email\":\"bench-$i@example.com\",\"password\":\"benchmark-password\"}" >/dev/null &
    pids+=("$!")
    if (( ${#pids[@]} == 8 )); then wait "${pids[@]}"; pids=(); fi
  done
  if (( ${#pids[@]} > 0 )); then wait "${pids[@]}"; fi
  token=$(curl -sf -X POST "$base/api/auth/login" -H 'content-type: application/json' \
    -d '{"email":"bench@example.com","password":"benchmark-password"}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  echo "### $label: GET /api/users/me"
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -H "Authorization: Bearer $token" "$base/api/users/me"
  echo "### $label: POST /api/auth/login"
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s bench/users/login.lua "$base/api/auth/login"
  echo "### $label: POST /api/users (registration)"
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s bench/users/register.lua "$base/api/users"
  echo "### $label: peak RSS of the server (KiB)"
  grep VmHWM "/proc/$pid/status"
}

data=$(mktemp -d)
"$BIN" up --listen "127.0.0.1:$port" --data-dir "$data" >/dev/null &
pid=$!
wait_ready
run_scenarios "mercato up (SQLite)"
stop

db="mercato_bench_$$"
psql "$PG_URL" -qc "CREATE DATABASE $db" >/dev/null
"$BIN" serve users --listen "127.0.0.1:$port" --database-url "${PG_URL%/*}/$db" --data-dir "$data" >/dev/null &
pid=$!
wait_ready
run_scenarios "mercato serve users (PostgreSQL)"
stop
psql "$PG_URL" -qc "DROP DATABASE $db WITH (FORCE)" >/dev/null
rm -rf "$data"
