#!/usr/bin/env bash
# One `mercato bench` scenario against a fresh `mercato up`, with the server's peak RSS and its
# context switches: for comparing builds run after run (alternate them; the machine drifts).
#
#   bash bench/ab.sh SCENARIO SECONDS BIN [VAR=VALUE ...]   # VAR=VALUE: the server's environment
#   bash bench/ab.sh settle 15 /tmp/mercato-old
#   bash bench/ab.sh settle 15 target/release/mercato MERCATO_DATABASE__SQLITE_CACHE_MIB=8
set -euo pipefail
[ $# -ge 3 ] || { sed -n 2,8p "$0" >&2; exit 2; }
scenario=$1 seconds=$2 bin=$3
shift 3
export RUST_LOG=error MERCATO_ADMIN_EMAIL=bench-admin@example.com
export MERCATO_ADMIN_PASSWORD=bench-admin-password
export MERCATO_GATEWAY__RATE_LIMIT_PER_MINUTE=0 MERCATO_USERS__RATE_LIMIT__PER_ADDRESS_PER_MINUTE=1000000
port=$((19000 + RANDOM % 900))
data=$(mktemp -d)
report=$(mktemp)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$data" "$report"; }
trap cleanup EXIT

env "$@" "$bin" up --listen "127.0.0.1:$port" --data-dir "$data" >/dev/null 2>&1 &
pid=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null && break; sleep 0.1; done
switches() { cat /proc/"$pid"/task/*/status | awk '/ctxt_switches/ {s += $2} END {print s}'; }
before=$(switches)
"$bin" bench "$scenario" --url "http://127.0.0.1:$port" --duration "${seconds}s" --concurrency 32 \
  --json "$report" >/dev/null 2>&1
after=$(switches)
peak=$(awk '/VmHWM/ {print int($2 / 1024)}' /proc/"$pid"/status)
python3 - "$report" "$peak" "$((after - before))" "$*" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
ok = d["ok"] or 1
print(f"{d['scenario']}: {d['throughput']:.0f}/s ok={d['ok']} failed={d['failed']} "
      f"p50={d['latencyMs']['p50']} ms p99={d['latencyMs']['p99']} ms; "
      f"peak RSS {sys.argv[2]} MiB; {int(sys.argv[3]) / ok:.1f} context switches per request {sys.argv[4]}")
PY
