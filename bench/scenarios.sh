#!/usr/bin/env bash
# Runs `mercato bench` scenarios, each against a fresh `mercato up` (so that no scenario inherits
# the saga backlog of the one before), and keeps each scenario's JSON and Markdown/SVG report.
#
#   bash bench/scenarios.sh                            # every scenario, 10 s, 32 workers
#   SCENARIOS="read settle" DURATION=30s bash bench/scenarios.sh
#   BIN=/work/target-release/release/mercato OUT=/tmp/bench bash bench/scenarios.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
CONCURRENCY=${CONCURRENCY:-32}
SCENARIOS=${SCENARIOS:-read list login place settle graphql-product graphql-orders mixed}
OUT=${OUT:-bench-results}
PORT=${PORT:-18561}
if [ -z "${BIN:-}" ]; then
  BIN=${CARGO_TARGET_DIR:-target}/release/mercato
  cargo build --release -q -p mercato --bin mercato
fi

export RUST_LOG=error
export MERCATO_ADMIN_EMAIL=bench-admin@example.com MERCATO_ADMIN_PASSWORD=bench-admin-password
# One load generator is one client address: lift the per-client limits for the run.
export MERCATO_USERS__RATE_LIMIT__PER_ADDRESS_PER_MINUTE=1000000
export MERCATO_GATEWAY__RATE_LIMIT_PER_MINUTE=0
mkdir -p "$OUT"
server=""
data=""
cleanup() {
  [ -n "$server" ] && { kill -TERM "$server" 2>/dev/null; wait "$server" 2>/dev/null || true; }
  [ -n "$data" ] && rm -rf "$data"
  return 0
}
trap cleanup EXIT

for scenario in $SCENARIOS; do
  data=$(mktemp -d)
  "$BIN" up --listen "127.0.0.1:$PORT" --data-dir "$data" >/dev/null &
  server=$!
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$PORT/health/ready" >/dev/null && break
    sleep 0.1
  done
  echo "### $scenario"
  "$BIN" bench "$scenario" --url "http://127.0.0.1:$PORT" --duration "$DURATION" \
    --concurrency "$CONCURRENCY" --json "$OUT/$scenario.json" --report "$OUT/$scenario.md"
  echo "peak RSS of mercato up: $(grep VmHWM "/proc/$server/status" | awk '{print $2, $3}')"
  cleanup
  server="" data=""
done
echo "reports in $OUT/"
