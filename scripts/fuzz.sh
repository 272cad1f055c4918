#!/usr/bin/env bash
# Schema-driven fuzzing of both APIs (issue 16): Schemathesis (PyPI, cached venv) reads
# each service's own /openapi.json and sends generated requests with a tenant admin's
# token. A run fails on any 5xx, any answer whose status or body contradicts the
# document, or a service that died. Bounded: a few examples per operation and a time
# budget per API (MURIMA_FUZZ_EXAMPLES, MURIMA_FUZZ_SECONDS).
#
# The services run from the binaries scripts/test.sh builds, on ports of their own,
# against a fresh database, topic and Mongo database, so a running scripts/run.sh is
# left alone. Expects the servers of scripts/stack.sh to be up.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
. scripts/env.sh
ST_VERSION=4.32.5
# CPython 3.11's ast.parse can raise "SystemError: AST constructor recursion depth
# mismatch" (gh-106905, fixed in 3.12 and later) when Hypothesis describes a filter
# deep in a stack; it aborted a CI run's coverage phase. The newest CPython the machine
# has (pyenv's, if there) runs the fuzzer; the venv is keyed by its version.
PYTHON=python3
for candidate in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[3-9]*/bin/python3 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3; do
  if [ -x "$candidate" ] && "$candidate" -c 'import venv' 2>/dev/null; then PYTHON=$candidate; break; fi
done
PY_VERSION=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
ST_DIR="$CACHE/schemathesis-$ST_VERSION-py$PY_VERSION"
EXAMPLES="${MURIMA_FUZZ_EXAMPLES:-20}"
SECONDS_PER_API="${MURIMA_FUZZ_SECONDS:-150}"

if [ ! -f "$ST_DIR/.installed" ]; then
  echo "[fuzz] installing schemathesis $ST_VERSION into $ST_DIR" >&2
  rm -rf "$ST_DIR"
  "$PYTHON" -m venv "$ST_DIR"
  "$ST_DIR/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$ST_VERSION"
  touch "$ST_DIR/.installed"
fi

run_id="fuzz_$(date +%s)_$$"
WORK="$ROOT/.murima/fuzz/$run_id"
mkdir -p "$WORK"
owner_url="postgres://postgres@127.0.0.1:5432/murima_$run_id"
role_url() { local rest=${owner_url#*://}; echo "${owner_url%%://*}://$1@${rest##*@}"; }
psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE murima_$run_id"

export MURIMA_JWT_SECRET
MURIMA_JWT_SECRET=$(head -c 48 /dev/urandom | base64 | tr -d '\n=/+')
export MURIMA_MIGRATION_DATABASE_URL="$owner_url"
export MURIMA_KAFKA_TOPIC="murima.$run_id" MURIMA_KAFKA_GROUP_PREFIX="murima.$run_id"
export MURIMA_MONGO_DATABASE="murima_$run_id" MURIMA_KAFKA_FETCH_WAIT_MS=25
# The fuzzer sends as fast as it can from one address; the limits have tests of their own.
export MURIMA_RATE_LIMITS=off
export MURIMA_COMMAND_PORT=18180 MURIMA_QUERY_PORT=18181 MURIMA_PROJECTOR_PORT=18182

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS murima_$run_id WITH (FORCE)" || true
}
trap cleanup EXIT

start() { # name port role
  MURIMA_DATABASE_URL=$(role_url "$3") "$BIN/$1" >"$WORK/$1.log" 2>&1 </dev/null &
  pids+=($!)
  for _ in $(seq 1 300); do
    curl -fsS "http://127.0.0.1:$2/healthz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "[fuzz] $1 did not start:" >&2
  tail -n 30 "$WORK/$1.log" >&2
  return 1
}
alive() { # name port
  if ! curl -fsS "http://127.0.0.1:$2/healthz" >/dev/null 2>&1; then
    echo "[fuzz] $1 died under the fuzzer; its last log lines:" >&2
    tail -n 40 "$WORK/$1.log" >&2
    return 1
  fi
}

start command-api $MURIMA_COMMAND_PORT murima_command
start projector $MURIMA_PROJECTOR_PORT murima_projector
start query-api $MURIMA_QUERY_PORT murima_query

platform=$("$BIN/command-api" token --role platform_admin --hours 1)
tenant=$(curl -fsS -X POST "http://127.0.0.1:$MURIMA_COMMAND_PORT/v1/tenants" \
  -H "Authorization: Bearer $platform" -H 'Content-Type: application/json' \
  -d "{\"name\": \"Fuzzed tenant\", \"slug\": \"fuzz-$$\"}" | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
admin=$("$BIN/command-api" token --tenant "$tenant" --role admin --hours 1)

status=0
schemathesis() { # name port seed
  # From the run's own folder: Schemathesis keeps a cache where it runs.
  (cd "$WORK" && "$ST_DIR/bin/st" --no-color run "http://127.0.0.1:$2/openapi.json" \
      --header "Authorization: Bearer $admin" \
      --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
      --max-examples "$EXAMPLES" --max-time "$SECONDS_PER_API" --request-timeout 20 \
      --seed "$3" --workers 2 --warnings off \
      --report ndjson --report-ndjson-path "$WORK/$1.ndjson" >"$WORK/$1.out" 2>&1)
}
fuzz() { # name port
  local started=$SECONDS seed=${MURIMA_FUZZ_SEED:-20261201} failed=0
  echo "[fuzz] $1: schemathesis, $EXAMPLES examples per operation, at most $SECONDS_PER_API s" >&2
  if ! schemathesis "$1" "$2" "$seed"; then
    # A crash inside the fuzzer itself (its summary lists a "Runtime Error" and no
    # failed check) says nothing about the API: one more run, with the next seed.
    if ! grep -q '^Failures:' "$WORK/$1.out" && grep -q 'Runtime Error' "$WORK/$1.out" && alive "$1" "$2"; then
      echo "[fuzz] $1: the fuzzer itself crashed (no check failed); running it once more with seed $((seed + 1)):" >&2
      grep -E '^ *[A-Za-z]*Error: ' "$WORK/$1.out" | tail -n 3 >&2 || true
      mv "$WORK/$1.out" "$WORK/$1.first.out"
      schemathesis "$1" "$2" "$((seed + 1))" || failed=1
    else
      failed=1
    fi
    if [ "$failed" != 0 ]; then
      status=1
      echo "[fuzz] $1: schemathesis found failures:" >&2
      tail -n 80 "$WORK/$1.out" >&2
    fi
  fi
  local requests
  requests=$(grep -c '"ScenarioFinished"' "$WORK/$1.ndjson" 2>/dev/null || true)
  grep -E "^(Test cases|API Operations|Test Phases|Failures|Summary)" -A3 "$WORK/$1.out" | head -n 20 >&2 || true
  echo "[fuzz] $1: done in $((SECONDS - started)) s (scenarios: ${requests:-?}; log $WORK/$1.out)" >&2
  alive "$1" "$2" || status=1
}

# A 2xx means projected: everything the fuzzer got accepted leaves the outbox (a relay
# stuck on one event it cannot read answers no request wrongly) and parks nowhere.
projected() {
  local sql="psql -h 127.0.0.1 -U postgres -d murima_$run_id -Atqc" pending parked
  for _ in $(seq 1 120); do
    pending=$($sql "SELECT count(*) FROM eventstore.outbox")
    [ "$pending" = 0 ] && break
    sleep 0.5
  done
  if [ "$pending" != 0 ]; then
    echo "[fuzz] $pending accepted events were never relayed; the command API's relay said:" >&2
    grep '"murima_command_api::relay"' "$WORK/command-api.log" | tail -n 5 >&2 || true
    return 1
  fi
  parked=$($sql "SELECT count(*) FROM projector.parked_events")
  if [ "$parked" != 0 ]; then
    echo "[fuzz] $parked accepted events were parked by a projection:" >&2
    $sql "SELECT projection, event_type, left(error, 300) FROM projector.parked_events LIMIT 10" >&2
    return 1
  fi
  echo "[fuzz] every accepted event was relayed, none parked" >&2
}

fuzz command-api $MURIMA_COMMAND_PORT
fuzz query-api $MURIMA_QUERY_PORT
alive projector $MURIMA_PROJECTOR_PORT || status=1
projected || status=1

if [ "$status" = 0 ]; then
  echo "fuzz: 2 passed, 0 failed"
else
  echo "fuzz: 0 passed, 1 failed (see the output above and $WORK)"
fi
exit "$status"
