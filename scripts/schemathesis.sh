#!/usr/bin/env bash
# schemathesis.sh — fuzz the REST API against its own OpenAPI schema (/api/schema/).
#
# Starts the README's production web server (gunicorn, 2 threaded workers) on a free loopback
# port with a throw-away SQLite database and data dir (migrated, one example pipeline with one
# finished run and its log, a READONLY, a WRITE and an ADMIN user with tokens from
# `issuetoken`), then runs schemathesis once per token, and a focused pass with more examples on
# the log and run-creation endpoints. Exits non-zero when any run finds a failure; the server is
# always stopped.
#
# Usage:   bash scripts/schemathesis.sh
# Tuning (environment):
#   SCHEMATHESIS_ROLES          roles to test with        (default: "READONLY WRITE ADMIN";
#                               ADMIN is available too)
#   SCHEMATHESIS_MAX_EXAMPLES   examples per operation    (default: 10)
#   SCHEMATHESIS_FOCUS_EXAMPLES examples per operation in the focused pass (default: 100): log
#                               tailing and streaming of a real finished run (offsets, including
#                               huge ones) and creating runs of the example pipeline (bodies,
#                               parameter names, reserved variables), as WRITE
#   SCHEMATHESIS_CHECKS         checks that fail the run  (default: see CHECKS below)
#   SCHEMATHESIS_SEED           fixed seed to replay a failure
#   SCHEMATHESIS_REPORT_DIR     where JUnit reports go    (default: none)
set -euo pipefail
cd "$(dirname "$0")/.."

PY=.venv/bin/python
ST=.venv/bin/schemathesis
ROLES=${SCHEMATHESIS_ROLES:-"READONLY WRITE ADMIN"}
MAX_EXAMPLES=${SCHEMATHESIS_MAX_EXAMPLES:-10}
FOCUS_EXAMPLES=${SCHEMATHESIS_FOCUS_EXAMPLES:-100}
# Server errors, and responses that contradict the schema (status codes, content types, bodies).
CHECKS=${SCHEMATHESIS_CHECKS:-"not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"}

[ -x "$ST" ] || { echo "schemathesis is not installed: run 'make setup' (dev extras)" >&2; exit 2; }

work=$(mktemp -d -t fastflow-schemathesis.XXXXXX)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

export DEBUG=true
export FASTFLOW_DATA_DIR="$work/data"
export FASTFLOW_PIPELINES_DIR="$work/pipelines"
export DATABASE_URL="sqlite:///$work/fastflow.db"
export FASTFLOW_ENV_FILE="$work/none.env"   # ignore a developer's .env
unset FASTFLOW_ENCRYPTION_KEY SECRET_KEY
mkdir -p "$FASTFLOW_PIPELINES_DIR/demo"
printf 'print("hello")\n' > "$FASTFLOW_PIPELINES_DIR/demo/main.py"
printf '{"description": "schemathesis target", "tags": ["demo"], "webhook_key": "demo-webhook-key-0123456789"}\n' \
  > "$FASTFLOW_PIPELINES_DIR/demo/pipeline.json"

echo "== preparing a throw-away instance in $work"
$PY manage.py migrate --noinput -v 0
$PY manage.py shell -v 0 -c "
from accounts_app.models import User
from pipelines_app.services import pipelines_sync
for role in ('READONLY', 'WRITE', 'ADMIN'):
    User.objects.create_user(username=f'st-{role.lower()}', role=role)
pipelines_sync()
"
# A finished run with a log file, so the focused pass reads a real log at every offset.
RUN_ID=$($PY manage.py shell -v 0 -c "
from pathlib import Path
from django.conf import settings
from runs_app.models import PipelineRun, RunStatus
run = PipelineRun.objects.create(pipeline_id='demo', status=RunStatus.SUCCESS)
log = Path(settings.LOGS_DIR) / 'demo' / f'{run.id}.log'
log.parent.mkdir(parents=True, exist_ok=True)
log.write_text(''.join(f'2026-12-01T00:00:00.000Z line {i}\\n' for i in range(50)))
PipelineRun.objects.filter(id=run.id).update(log_file=str(log))
print(run.id)
")
cat > "$work/schemathesis.toml" <<TOML
[[operations]]
include-operation-id = "runs_logs"
parameters = { run_id = "$RUN_ID" }

[[operations]]
include-operation-id = "runs_logs_stream"
parameters = { run_id = "$RUN_ID" }

[[operations]]
include-operation-id = "pipelines_runs_create"
parameters = { name = "demo" }
TOML
declare -A TOKENS
for role in READONLY WRITE ADMIN; do
  TOKENS[$role]=$($PY manage.py issuetoken "st-${role,,}" --days 1 --name schemathesis 2>/dev/null)
done

port=$($PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
base="http://127.0.0.1:$port"
echo "== starting the server on $base"
# gunicorn, not runserver: what production answers (runserver cannot read chunked bodies and
# answers them 411, which schemathesis's stateful phase sends).
$PY -m gunicorn fastflow_site.wsgi --bind "127.0.0.1:$port" --worker-class gthread --threads 8 \
  --workers 2 > "$work/server.log" 2>&1 &
server_pid=$!
up() { $PY -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" "$base/healthz" 2>/dev/null; }
for _ in $(seq 1 60); do
  up && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
  sleep 0.5
done
up || { echo "server did not start" >&2; cat "$work/server.log" >&2; exit 1; }

failed=0
for role in $ROLES; do
  token=${TOKENS[$role]:-}
  [ -n "$token" ] || { echo "unknown role $role" >&2; exit 2; }
  echo "== schemathesis as $role"
  args=(run "$base/api/schema/" --header "Authorization: Bearer $token"
        --checks "$CHECKS" --max-examples "$MAX_EXAMPLES" --workers 2
        --request-timeout 30 --suppress-health-check too_slow,filter_too_much
        --no-shrink
        # Revoking the very token the run uses would turn the rest of it into 401s.
        --exclude-operation-id tokens_destroy)
  [ -n "${SCHEMATHESIS_SEED:-}" ] && args+=(--seed "$SCHEMATHESIS_SEED")
  if [ -n "${SCHEMATHESIS_REPORT_DIR:-}" ]; then
    args+=(--report junit --report-junit-path "$SCHEMATHESIS_REPORT_DIR/schemathesis-$role.xml")
  fi
  if ! "$ST" "${args[@]}"; then
    failed=1
    echo "!! schemathesis found failures as $role (server log: last lines below)" >&2
    tail -n 40 "$work/server.log" >&2
  fi
done

echo "== focused pass as WRITE: log offsets and run creation, $FOCUS_EXAMPLES examples each"
args=(--config-file "$work/schemathesis.toml" run "$base/api/schema/"
      --header "Authorization: Bearer ${TOKENS[WRITE]}"
      --checks "$CHECKS" --max-examples "$FOCUS_EXAMPLES" --workers 2
      --request-timeout 30 --suppress-health-check too_slow,filter_too_much --no-shrink
      --include-operation-id runs_logs --include-operation-id runs_logs_stream
      --include-operation-id pipelines_runs_create)
[ -n "${SCHEMATHESIS_SEED:-}" ] && args+=(--seed "$SCHEMATHESIS_SEED")
if [ -n "${SCHEMATHESIS_REPORT_DIR:-}" ]; then
  args=("${args[@]:0:3}" "${args[@]:3}" --report junit
        --report-junit-path "$SCHEMATHESIS_REPORT_DIR/schemathesis-focused.xml")
fi
if ! "$ST" "${args[@]}"; then
  failed=1
  echo "!! schemathesis found failures in the focused pass (server log: last lines below)" >&2
  tail -n 40 "$work/server.log" >&2
fi

exit $failed
