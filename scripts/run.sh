#!/usr/bin/env bash
# The run command: starts the servers, builds and starts the three services (migrations
# and topics are applied by the services at start-up), provisions a demo tenant and
# prints a bearer token with curl examples. Stop everything with scripts/stack.sh stop.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
STATE="$ROOT/.murima"
. scripts/env.sh

scripts/stack.sh start
cargo build --workspace --locked --quiet

mkdir -p "$STATE/logs" "$STATE/pids"
[ -s "$STATE/jwt-secret" ] || head -c 32 /dev/urandom | base64 | tr -d '\n=/+' >"$STATE/jwt-secret"
export MURIMA_JWT_SECRET
MURIMA_JWT_SECRET=$(cat "$STATE/jwt-secret")
# The key-encryption key of the data subjects' keys (README "Personal data"), kept with
# the local stack like the token secret.
[ -s "$STATE/subject-kek" ] || head -c 32 /dev/urandom | base64 | tr -d '\n' >"$STATE/subject-kek"
export MURIMA_SUBJECT_KEK
MURIMA_SUBJECT_KEK=$(cat "$STATE/subject-kek")
# The owner migrates; each service then logs in as its own role (the local PostgreSQL
# trusts 127.0.0.1, so the roles need no password here).
owner_url="${MURIMA_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/murima}"
export MURIMA_MIGRATION_DATABASE_URL="$owner_url"
role_url() { local rest=${owner_url#*://}; echo "${owner_url%%://*}://$1@${rest##*@}"; }
# tansu answers a Fetch only when its wait runs out (Kafka answers when data arrives), so
# the default 500 ms wait would be the projection lag of a quiet local system.
export MURIMA_KAFKA_FETCH_WAIT_MS="${MURIMA_KAFKA_FETCH_WAIT_MS:-25}"
# The demo's webhook receiver listens on loopback (README "Try it"); a deployment refuses
# private and loopback addresses (the default, off).
export MURIMA_WEBHOOK_ALLOW_PRIVATE="${MURIMA_WEBHOOK_ALLOW_PRIVATE:-on}"
export MURIMA_ARCHIVE_DIR="${MURIMA_ARCHIVE_DIR:-$ROOT/.murima/archive}"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_service() { # name port
  local name=$1 port=$2 pidfile="$STATE/pids/$1.pid"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    kill "$(cat "$pidfile")" 2>/dev/null || true
    for _ in $(seq 1 50); do port_open "$port" || break; sleep 0.1; done
  fi
  local role
  case "$name" in command-api) role=murima_command ;; projector) role=murima_projector ;; *) role=murima_query ;; esac
  MURIMA_DATABASE_URL=$(role_url "$role") setsid nohup "$BIN/$name" >"$STATE/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  for _ in $(seq 1 300); do
    if curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then return 0; fi
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then break; fi
    sleep 0.1
  done
  echo "$name did not start; see $STATE/logs/$name.log:" >&2
  tail -n 20 "$STATE/logs/$name.log" >&2
  exit 1
}

start_service command-api 8080
start_service projector 8082
start_service query-api 8081

admin=$("$BIN/command-api" token --role platform_admin --hours 1)
# A fixed id and an Idempotency-Key: a second run finds the same demo tenant.
tenant=01a21200-0000-7000-8000-00000000de70
status=$(curl -sS -o "$STATE/logs/provision.json" -w '%{http_code}' -X POST http://127.0.0.1:8080/v1/tenants \
  -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' \
  -H 'Idempotency-Key: provision-demo-tenant' \
  -d "{\"id\": \"$tenant\", \"name\": \"Demo Contact Centre\", \"slug\": \"demo\"}")
case "$status" in
  200|201|409) ;;
  *) echo "provisioning the demo tenant failed ($status):" >&2; cat "$STATE/logs/provision.json" >&2; exit 1 ;;
esac
# A case type with a fixed id, so the examples below can open cases of it.
case_type=0199a5b2-0000-7000-8000-000000000001
tenant_admin=$("$BIN/command-api" token --tenant "$tenant" --role admin --hours 1)
status=$(curl -sS -o "$STATE/logs/case-type.json" -w '%{http_code}' -X POST http://127.0.0.1:8080/v1/case-types \
  -H "Authorization: Bearer $tenant_admin" -H 'Content-Type: application/json' \
  -H 'Idempotency-Key: demo-case-type' \
  -d "{\"id\": \"$case_type\", \"name\": \"General enquiry\", \"form_definition\": {\"fields\": [{\"name\": \"customer_id\", \"type\": \"text\"}]}}")
case "$status" in
  200|201|409) ;;
  *) echo "creating the demo case type failed ($status):" >&2; cat "$STATE/logs/case-type.json" >&2; exit 1 ;;
esac
# A demo agent with a fixed id: cases are assigned to real users only.
agent=0199a5b2-0000-7000-8000-0000000000aa
status=$(curl -sS -o "$STATE/logs/demo-agent.json" -w '%{http_code}' -X POST http://127.0.0.1:8080/v1/users \
  -H "Authorization: Bearer $tenant_admin" -H 'Content-Type: application/json' \
  -H 'Idempotency-Key: demo-agent' \
  -d "{\"id\": \"$agent\", \"username\": \"demo.agent\", \"email\": \"demo.agent@example.org\", \"password\": \"demo-agent-password\", \"first_name\": \"Demo\", \"last_name\": \"Agent\", \"role\": \"agent\"}")
case "$status" in
  200|201|409) ;;
  *) echo "creating the demo agent failed ($status):" >&2; cat "$STATE/logs/demo-agent.json" >&2; exit 1 ;;
esac
# A demo supervisor: audit trails need audit:read, which agents do not hold.
supervisor=0199a5b2-0000-7000-8000-0000000000bb
status=$(curl -sS -o "$STATE/logs/demo-supervisor.json" -w '%{http_code}' -X POST http://127.0.0.1:8080/v1/users \
  -H "Authorization: Bearer $tenant_admin" -H 'Content-Type: application/json' \
  -H 'Idempotency-Key: demo-supervisor' \
  -d "{\"id\": \"$supervisor\", \"username\": \"demo.supervisor\", \"email\": \"demo.supervisor@example.org\", \"password\": \"demo-supervisor-password\", \"first_name\": \"Demo\", \"last_name\": \"Supervisor\", \"role\": \"supervisor\"}")
case "$status" in
  200|201|409) ;;
  *) echo "creating the demo supervisor failed ($status):" >&2; cat "$STATE/logs/demo-supervisor.json" >&2; exit 1 ;;
esac
# The demo tokens come from real logins: each opens a session (24 hours unused, or logout).
login() {
  curl -sS -X POST http://127.0.0.1:8080/v1/auth/login -H 'Content-Type: application/json' \
    -d "{\"tenant\": \"demo\", \"username\": \"$1\", \"password\": \"$2\"}" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])'
}
token=$(login demo.agent demo-agent-password)
supervisor_token=$(login demo.supervisor demo-supervisor-password)
admin_token=$("$BIN/command-api" token --tenant "$tenant" --role admin --hours 8)

cat <<MSG

Murima is running.
  command API  http://127.0.0.1:8080     logs: .murima/logs/command-api.log
  query API    http://127.0.0.1:8081     logs: .murima/logs/query-api.log
  projector    http://127.0.0.1:8082     logs: .murima/logs/projector.log
  demo tenant  $tenant
  case type    $case_type (General enquiry)
  demo agent   $agent (log in: tenant demo, user demo.agent, password demo-agent-password)
  supervisor   $supervisor (log in: tenant demo, user demo.supervisor, password demo-supervisor-password)

Copy and paste:

export TOKEN=$token SUPERVISOR_TOKEN=$supervisor_token ADMIN_TOKEN=$admin_token

# open a case; the answer carries its id, version and a position token
curl -s -w '\\n' -X POST http://127.0.0.1:8080/v1/cases -H "Authorization: Bearer \$TOKEN" \\
  -H 'Content-Type: application/json' \\
  -d '{"title": "Printer on fire", "description": "Third floor printers smoke", "priority": "high", "case_type_id": "0199a5b2-0000-7000-8000-000000000001", "tags": ["hardware"]}' | tee /tmp/murima-case.json
export CASE=\$(python3 -c 'import json; print(json.load(open("/tmp/murima-case.json"))["id"])')
export POS=\$(python3 -c 'import json; print(json.load(open("/tmp/murima-case.json"))["position"])')

# read it back, waiting for the projection to reach the command's position
curl -s -w '\\n' "http://127.0.0.1:8081/v1/cases/\$CASE?position=\$POS" -H "Authorization: Bearer \$TOKEN"

# assign it to the demo agent and start work (If-Match: the version you last saw)
curl -s -w '\\n' -X POST http://127.0.0.1:8080/v1/cases/\$CASE/assignment -H "Authorization: Bearer \$TOKEN" \\
  -H 'Content-Type: application/json' -H 'If-Match: "1"' -d '{"assigned_to": "0199a5b2-0000-7000-8000-0000000000aa"}'
curl -s -w '\\n' -X POST http://127.0.0.1:8080/v1/cases/\$CASE/status -H "Authorization: Bearer \$TOKEN" \\
  -H 'Content-Type: application/json' -d '{"status": "in_progress"}' | tee /tmp/murima-status.json
export POS=\$(python3 -c 'import json; print(json.load(open("/tmp/murima-status.json"))["position"])')

# list, audit trail (a supervisor's: it needs audit:read), full-text search and live counters
curl -s -w '\\n' "http://127.0.0.1:8081/v1/cases?status=in_progress&limit=10&position=\$POS" -H "Authorization: Bearer \$TOKEN"
curl -s -w '\\n' "http://127.0.0.1:8081/v1/cases/\$CASE/audit?position=\$POS" -H "Authorization: Bearer \$SUPERVISOR_TOKEN"
curl -s -w '\\n' "http://127.0.0.1:8081/v1/search/cases?q=printers&position=\$POS" -H "Authorization: Bearer \$TOKEN"
curl -s -w '\\n' "http://127.0.0.1:8081/v1/counters?position=\$POS" -H "Authorization: Bearer \$TOKEN"

# the agent's queue, a typeahead, today's dashboard figures
curl -s -w '\\n' "http://127.0.0.1:8081/v1/my/queue?position=\$POS" -H "Authorization: Bearer \$TOKEN"
curl -s -w '\\n' "http://127.0.0.1:8081/v1/search/suggest?prefix=print" -H "Authorization: Bearer \$TOKEN"
curl -s -w '\\n' "http://127.0.0.1:8081/v1/dashboard/daily?position=\$POS" -H "Authorization: Bearer \$TOKEN"

# a workflow that acts (an administrator's): a case moved to Triage becomes urgent, goes to
# the demo agent and is tagged, as events of the move itself (run again, the workflow
# and the case type answer 409: they exist already)
curl -s -w '\\n' -X POST http://127.0.0.1:8080/v1/workflows -H "Authorization: Bearer \$ADMIN_TOKEN" \\
  -H 'Content-Type: application/json' \\
  -d '{"id": "0199a5b2-0000-7000-8000-0000000000f0", "name": "Triage desk", "definition": {"stages": [{"id": "0199a5b2-0000-7000-8000-0000000000f1", "name": "New"}, {"id": "0199a5b2-0000-7000-8000-0000000000f2", "name": "Triage"}], "initial_stage": "0199a5b2-0000-7000-8000-0000000000f1", "transitions": [{"from": "0199a5b2-0000-7000-8000-0000000000f1", "to": "0199a5b2-0000-7000-8000-0000000000f2"}], "sla": [{"priority": "urgent", "first_response_minutes": 15, "resolution_minutes": 120}], "actions": [{"when": {"enters": "0199a5b2-0000-7000-8000-0000000000f2"}, "do": {"type": "set_priority", "priority": "urgent"}}, {"when": {"enters": "0199a5b2-0000-7000-8000-0000000000f2"}, "do": {"type": "assign_user", "user_id": "0199a5b2-0000-7000-8000-0000000000aa"}}, {"when": {"enters": "0199a5b2-0000-7000-8000-0000000000f2"}, "do": {"type": "add_tags", "tags": ["triaged"]}}]}}'
curl -s -w '\\n' -X POST http://127.0.0.1:8080/v1/case-types -H "Authorization: Bearer \$ADMIN_TOKEN" \\
  -H 'Content-Type: application/json' \\
  -d '{"id": "0199a5b2-0000-7000-8000-000000000002", "name": "Triage", "workflow_id": "0199a5b2-0000-7000-8000-0000000000f0"}'
curl -s -w '\\n' -X POST http://127.0.0.1:8080/v1/cases -H "Authorization: Bearer \$TOKEN" \\
  -H 'Content-Type: application/json' \\
  -d '{"title": "Water in the server room", "priority": "high", "case_type_id": "0199a5b2-0000-7000-8000-000000000002"}' | tee /tmp/murima-triage.json
export TRIAGE=\$(python3 -c 'import json; print(json.load(open("/tmp/murima-triage.json"))["id"])')
curl -s -w '\\n' -X POST http://127.0.0.1:8080/v1/cases/\$TRIAGE/stage -H "Authorization: Bearer \$TOKEN" \\
  -H 'Content-Type: application/json' -d '{"stage_id": "0199a5b2-0000-7000-8000-0000000000f2"}' | tee /tmp/murima-moved.json
export POS=\$(python3 -c 'import json; print(json.load(open("/tmp/murima-moved.json"))["position"])')
curl -s -w '\\n' "http://127.0.0.1:8081/v1/cases/\$TRIAGE?position=\$POS" -H "Authorization: Bearer \$TOKEN"

# the audit log of the whole tenant, searched: every priority change (a supervisor's)
curl -s -w '\\n' "http://127.0.0.1:8081/v1/search/audit?field=priority&position=\$POS" -H "Authorization: Bearer \$SUPERVISOR_TOKEN"

# a webhook (an administrator's): every case opened or changing status is POSTed, signed
# with the webhook's secret, to a receiver; this local one prints each delivery and checks
# its signature. The local stack lets webhooks reach loopback (run.sh sets
# MURIMA_WEBHOOK_ALLOW_PRIVATE=on); a production one refuses private addresses. Run again,
# the webhook answers 409: it exists already, and the receiver keeps printing what it gets.
python3 scripts/webhook-receiver.py 9009 demo-webhook-secret-0123456789 >>/tmp/murima-hook.log 2>&1 &
curl -s -w '\\n' -X POST http://127.0.0.1:8080/v1/webhooks -H "Authorization: Bearer \$ADMIN_TOKEN" \\
  -H 'Content-Type: application/json' \\
  -d '{"id": "0199a5b2-0000-7000-8000-0000000000e0", "url": "http://127.0.0.1:9009/hooks", "event_types": ["CaseOpened", "CaseStatusChanged"], "secret": "demo-webhook-secret-0123456789"}'
curl -s -w '\\n' -X POST http://127.0.0.1:8080/v1/cases -H "Authorization: Bearer \$TOKEN" \\
  -H 'Content-Type: application/json' \\
  -d '{"title": "Badge reader down", "priority": "medium", "case_type_id": "0199a5b2-0000-7000-8000-000000000001"}'
sleep 2; cat /tmp/murima-hook.log
curl -s -w '\\n' "http://127.0.0.1:8081/v1/webhooks/0199a5b2-0000-7000-8000-0000000000e0/deliveries" -H "Authorization: Bearer \$ADMIN_TOKEN"
MSG
