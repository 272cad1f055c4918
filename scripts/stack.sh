#!/usr/bin/env bash
# Installs (cached under ~/.cache/murima, keyed by version), starts, stops and
# reports the five servers Murima needs, all bound to 127.0.0.1:
#   PostgreSQL 5432 and Redis 6379 (the machine's own when running, else apt),
#   tansu 9092 (Kafka protocol), SecantusDB 27017 (Mongo wire), osmem 9200 (Elasticsearch API).
# Data, logs and pid files live under .murima/ in the repo (git-ignored).
# Usage: scripts/stack.sh install|start|stop|status
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE="$ROOT/.murima"
CACHE="${MURIMA_CACHE:-$HOME/.cache/murima}"

TANSU_VERSION=0.6.0
SECANTUS_VERSION=0.7.0b3
OSMEM_VERSION=0.1.6

TANSU_BIN="$CACHE/tansu-$TANSU_VERSION/bin/tansu"
SECANTUS_BIN="$CACHE/secantusdb-$SECANTUS_VERSION/bin/secantusd-py"
OSMEM_BIN="$CACHE/osmem-server-$OSMEM_VERSION/lib/python3.11/site-packages/osmem_server/bin/osmem-server"

KAFKA_PORT=9092 MONGO_PORT=27017 ELASTIC_PORT=9200 PG_PORT=5432 REDIS_PORT=6379

log() { printf '[stack] %s\n' "$*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local name=$1 port=$2 deadline=$((SECONDS + ${3:-60}))
  until port_open "$port"; do
    if ((SECONDS > deadline)); then
      log "$name did not open port $port; last log lines:"
      tail -n 20 "$STATE/logs/$name.log" >&2 2>/dev/null || true
      return 1
    fi
    sleep 0.3
  done
}

apt_install() {
  log "installing $* with apt"
  if [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v lock)" ]; then apt-get update -qq; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

install_python_server() { # venv-dir package==version
  local dir=$1 spec=$2
  [ -f "$dir/.installed" ] && return 0
  log "installing $spec into $dir"
  rm -rf "$dir"
  python3 -m venv "$dir"
  "$dir/bin/pip" install --quiet --disable-pip-version-check "$spec"
  touch "$dir/.installed"
}

install() {
  mkdir -p "$CACHE"
  command -v psql >/dev/null || port_open $PG_PORT || apt_install postgresql
  command -v redis-server >/dev/null || port_open $REDIS_PORT || apt_install redis-server
  if [ ! -x "$TANSU_BIN" ]; then
    log "building tansu $TANSU_VERSION (about 8 minutes, once per machine)"
    local partial="$CACHE/tansu-$TANSU_VERSION.partial"
    CARGO_TARGET_DIR="$CACHE/tansu-build" cargo install tansu --version "$TANSU_VERSION" \
      --locked --features dynostore --root "$partial" --quiet
    rm -rf "$CACHE/tansu-$TANSU_VERSION" "$CACHE/tansu-build"
    mv "$partial" "$CACHE/tansu-$TANSU_VERSION"
  fi
  # The table of DEVELOPERS names noida-db for the Elasticsearch API, but its wheel
  # needs glibc 2.39 and this Debian has 2.36; osmem-server is the named fallback.
  install_python_server "$CACHE/secantusdb-$SECANTUS_VERSION" "SecantusDB==$SECANTUS_VERSION"
  install_python_server "$CACHE/osmem-server-$OSMEM_VERSION" "osmem-server==$OSMEM_VERSION"
}

# start_daemon NAME PORT CMD...: starts CMD detached unless PORT already answers.
start_daemon() {
  local name=$1 port=$2; shift 2
  if port_open "$port"; then log "$name already up on $port"; return 0; fi
  mkdir -p "$STATE/logs" "$STATE/pids"
  setsid nohup "$@" >"$STATE/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$STATE/pids/$name.pid"
  wait_port "$name" "$port" 90
  log "$name up on $port (pid $(cat "$STATE/pids/$name.pid"))"
}

# An open port is not a ready server: after a machine restart PostgreSQL listens while
# it still replays its WAL ("the database system is not yet accepting connections").
wait_postgres_ready() {
  local deadline=$((SECONDS + ${1:-120}))
  until pg_isready -q -h 127.0.0.1 -p $PG_PORT && psql -h 127.0.0.1 -p $PG_PORT -U postgres -d postgres -Atqc 'SELECT 1' >/dev/null 2>&1; do
    if ((SECONDS > deadline)); then
      log "PostgreSQL on $PG_PORT does not accept connections:"
      psql -h 127.0.0.1 -p $PG_PORT -U postgres -d postgres -Atc 'SELECT 1' >&2 || true
      return 1
    fi
    sleep 0.5
  done
}

start_postgres() {
  if ! port_open $PG_PORT; then
    log "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main start
    wait_port postgres $PG_PORT 60
  fi
  wait_postgres_ready 180
}

start_redis() {
  port_open $REDIS_PORT && return 0
  log "starting Redis"
  mkdir -p "$STATE/redis" "$STATE/logs"
  redis-server --daemonize yes --bind 127.0.0.1 --port $REDIS_PORT --save "" --appendonly no \
    --dir "$STATE/redis" --logfile "$STATE/logs/redis.log" --pidfile "$STATE/pids/redis.pid"
  wait_port redis $REDIS_PORT 30
}

# Redis answers LOADING while it reads a dump; wait for a PONG.
wait_redis_ready() {
  local deadline=$((SECONDS + 60))
  until [ "$(redis-cli -h 127.0.0.1 -p $REDIS_PORT ping 2>/dev/null)" = PONG ]; do
    if ((SECONDS > deadline)); then log "Redis on $REDIS_PORT does not answer PING"; return 1; fi
    sleep 0.3
  done
}

start() {
  install
  mkdir -p "$STATE/logs" "$STATE/pids" "$STATE/secantus"
  start_postgres
  start_redis
  wait_redis_ready
  # tansu keeps the log in memory here: after a restart the command API's relay
  # notices the lost log and re-publishes the journal (see README).
  start_daemon tansu $KAFKA_PORT "$TANSU_BIN" broker \
    --storage-engine memory://tansu/ \
    --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT"
  start_daemon secantus $MONGO_PORT "$SECANTUS_BIN" --host 127.0.0.1 --port $MONGO_PORT \
    --storage-path "$STATE/secantus" --log-level WARNING
  start_daemon osmem $ELASTIC_PORT "$OSMEM_BIN" -addr "127.0.0.1:$ELASTIC_PORT" -no-stdin-watch
}

stop() {
  shopt -s nullglob
  for pidfile in "$STATE"/pids/*.pid; do
    local name pid
    name=$(basename "$pidfile" .pid)
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      log "stopping $name (pid $pid)"
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
  done
}

status() {
  local name port
  for pair in postgres:$PG_PORT redis:$REDIS_PORT tansu:$KAFKA_PORT secantus:$MONGO_PORT osmem:$ELASTIC_PORT \
              command-api:8080 query-api:8081 projector:8082; do
    name=${pair%%:*} port=${pair##*:}
    if port_open "$port"; then printf '%-12s up    127.0.0.1:%s\n' "$name" "$port"
    else printf '%-12s down  127.0.0.1:%s\n' "$name" "$port"; fi
  done
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
