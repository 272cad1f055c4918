#!/usr/bin/env bash
# Installs (cached under ~/.cache/murima, keyed by version), starts, stops and
# reports the five servers Murima needs, all bound to 127.0.0.1:
#   PostgreSQL 5432: a server already listening there is used as it is; otherwise
#     Debian's package is installed if missing and a cluster of Murima's own is
#     initialised (trust for 127.0.0.1, nothing else) and started; the machine's own
#     clusters and their pg_hba.conf are left alone.
#   Redis 6379: one already listening is used; else Debian's package, started here.
#   tansu 9092 (Kafka protocol), SecantusDB 27017 (Mongo wire), osmem 9200 (Elasticsearch API).
# Data, logs and pid files live under .murima/ in the repo (git-ignored), except the
# PostgreSQL cluster's data when run as root (see pg_datadir).
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

# PostgreSQL refuses to run as root: as root the cluster belongs to the postgres user
# and lives in its home (a clone under /root would be out of its reach); otherwise it
# is the caller's, under .murima/.
pg_bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
pg_datadir() {
  if [ "$(id -u)" = 0 ]; then echo "/var/lib/postgresql/murima-$(basename "$(dirname "$(pg_bindir)")")"
  else echo "$STATE/postgres"; fi
}
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

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
  # psql alone (the client) is not a server: look for initdb.
  if ! port_open $PG_PORT && [ ! -x "$(pg_bindir)/initdb" ]; then
    apt_install postgresql
    # Debian's package may start its own cluster (scram-sha-256 for TCP, which the
    # scripts' password-less URLs cannot pass): stop it, Murima starts its own.
    if port_open $PG_PORT; then
      log "stopping the cluster the package started; Murima's own takes port $PG_PORT"
      pg_ctlcluster --skip-systemctl-redirect "$(basename "$(dirname "$(pg_bindir)")")" main stop || true
    fi
  fi
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

# Murima's own cluster: initialised once (idempotent), trust for local connections only
# (the scripts' URLs carry no password), bound to 127.0.0.1.
init_postgres() {
  local data bin
  data=$(pg_datadir) bin=$(pg_bindir)
  [ -f "$data/PG_VERSION" ] && return 0
  log "initialising a PostgreSQL cluster in $data (trust for 127.0.0.1 and local sockets)"
  mkdir -p "$data"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$data"
  as_pg "$bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
  cat >>"$data/postgresql.conf" <<CONF
# scripts/stack.sh
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '/tmp'
max_connections = 300
shared_buffers = 256MB
CONF
}

# Statement counts for murima-bench (PostgreSQL round trips per command): added once to
# clusters made before it was part of init_postgres, taken up at the next start.
preload_statement_counts() {
  local conf
  conf="$(pg_datadir)/postgresql.conf"
  # A server built without it would not start with it preloaded: then the bench says so.
  [ -f "$(pg_bindir)/../lib/pg_stat_statements.so" ] || return 0
  grep -q "^shared_preload_libraries = 'pg_stat_statements'" "$conf" 2>/dev/null && return 0
  printf "# scripts/stack.sh: murima-bench counts statements per command\nshared_preload_libraries = 'pg_stat_statements'\n" >>"$conf"
}

start_postgres() {
  if port_open $PG_PORT; then
    if ! psql -h 127.0.0.1 -p $PG_PORT -U postgres -d postgres -Atqc 'SELECT 1' >/dev/null 2>&1 &&
       psql -h 127.0.0.1 -p $PG_PORT -U postgres -d postgres -Atc 'SELECT 1' 2>&1 | grep -q 'password authentication'; then
      log "the PostgreSQL listening on $PG_PORT wants a password for postgres@127.0.0.1; stop it (Murima then starts its own) or allow trust for 127.0.0.1 in its pg_hba.conf"
      return 1
    fi
    if [ -f "$STATE/postgres.started" ]; then log "postgres already up on $PG_PORT ($(cat "$STATE/postgres.started"))"
    else log "PostgreSQL: using the server already listening on $PG_PORT (not started by these scripts)"; fi
  else
    init_postgres
    preload_statement_counts
    local data
    data=$(pg_datadir)
    mkdir -p "$STATE/logs"
    log "starting PostgreSQL ($data)"
    # The log goes into the data directory: the postgres user may not reach .murima/.
    as_pg "$(pg_bindir)/pg_ctl" -D "$data" -l "$data/server.log" -w -t 120 start >/dev/null
    echo "$data" >"$STATE/postgres.started"
    ln -sfn "$data/server.log" "$STATE/logs/postgres.log"
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
  if [ -f "$STATE/postgres.started" ]; then
    log "stopping PostgreSQL ($(cat "$STATE/postgres.started"))"
    as_pg "$(pg_bindir)/pg_ctl" -D "$(cat "$STATE/postgres.started")" -m fast -w stop >/dev/null || true
    rm -f "$STATE/postgres.started"
  fi
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

# Drops what earlier test runs on this machine left behind: their PostgreSQL databases
# (not one a run going on beside this one still uses) and their Mongo databases, which
# have the same names (SecantusDB held 1,294 of them, and 2.7 GB, on a reused machine).
prune() {
  local psql=(psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres)
  "${psql[@]}" -Atc \
    "SELECT datname FROM pg_database d WHERE (datname LIKE 'murima\_test\_%' OR datname LIKE 'murima\_fuzz\_%')
       AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)" |
    while read -r db; do "${psql[@]}" -qc "DROP DATABASE IF EXISTS \"$db\"" || true; done
  LIVE=$("${psql[@]}" -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'murima\_%'" | tr '\n' ' ') \
    MONGO_URL="mongodb://127.0.0.1:$MONGO_PORT" timeout 300 "$CACHE/secantusdb-$SECANTUS_VERSION/bin/python" - <<'PY' || true
import os
import pymongo
live = set(os.environ["LIVE"].split())
client = pymongo.MongoClient(os.environ["MONGO_URL"], serverSelectionTimeoutMS=5000)
gone = [d for d in client.list_database_names()
        if d.startswith(("murima_test_", "murima_fuzz_")) and d not in live]
for name in gone:
    client.drop_database(name)
print(f"[stack] dropped {len(gone)} Mongo databases of earlier test runs")
PY
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
  prune) prune ;;
  *) echo "usage: $0 install|start|stop|status|prune" >&2; exit 2 ;;
esac
