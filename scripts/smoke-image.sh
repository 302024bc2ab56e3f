#!/usr/bin/env bash
# smoke-image.sh — build the production image on a local base (no registry) and prove it works:
#
#   1. scripts/build-base-image.sh (cached), then the real Dockerfile with --build-arg BASE_IMAGE
#   2. image: non-root user, HEALTHCHECK, OCI labels, static files collected at build time
#   3. one-off `migrate`; web answers /healthz 200 and its HEALTHCHECK turns healthy; an engine
#      container from the same image makes /readyz 200 through the database (SQLite on a shared
#      named volume); a pipeline with requirements.txt, triggered by webhook, runs through the
#      mounted Docker socket to SUCCESS — its folder a bind mount, the uv cache in the named
#      volume, the CA bundle a bind mount of a file: the engine maps all three to host paths
#   3b. git sync with the image's git: an origin repository in the volume, `gitsync` checks it
#      out, a signed push webhook makes the leader engine sync the next commit, and the run of
#      that commit succeeds from its checkout in the named volume (FASTFLOW_PIPELINES_DIR a
#      symlink inside the volume, as docs/git-sync.md says for compose)
#   4. compose.yaml with PostgreSQL (docker-compose, or `docker compose`): migrate → web +
#      engine, one pipeline run through it, the one-line login link command
#
# Prints the time of every phase. Leaves nothing behind (containers, volumes, networks).
# Env: FASTFLOW_SMOKE_IMAGE (default fastflow:smoke), FASTFLOW_CA_BUNDLE (default the host's),
#      FASTFLOW_SMOKE_SKIP_COMPOSE=1 to stop after step 3.
set -euo pipefail
cd "$(dirname "$0")/.."

START=$SECONDS
phase() { printf '[smoke] t+%3ss %s\n' "$((SECONDS - START))" "$*" >&2; }
die() { printf '[smoke] FAILED: %s\n' "$*" >&2; exit 1; }

IMAGE="${FASTFLOW_SMOKE_IMAGE:-fastflow:smoke}"
PG_IMAGE="fastflow-postgres:15-local"
CA="${FASTFLOW_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
NAME="fastflow-smoke-$$"
TOKEN="smoke-metrics-token-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
KEY="smoke-webhook-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
WORK="$(mktemp -d /tmp/fastflow-smoke.XXXXXX)"
COMPOSE=()

cleanup() {
    status=$?
    if [ "$status" -ne 0 ]; then
        for c in "$NAME-web" "$NAME-engine"; do
            docker logs --tail 40 "$c" 2>&1 | sed "s/^/[$c] /" >&2 || true
        done
        [ "${#COMPOSE[@]}" -gt 0 ] && "${COMPOSE[@]}" logs --tail 40 >&2 2>&1 || true
    fi
    docker rm -f "$NAME-web" "$NAME-engine" >/dev/null 2>&1 || true
    # Warm pool members of a killed engine exit on their own; the next engine of the same data
    # would sweep them, but this one is gone for good.
    docker ps -aq --filter label=fastflow.pool --filter status=exited | xargs -r docker rm -f >/dev/null 2>&1 || true
    docker volume rm -f "$NAME-data" >/dev/null 2>&1 || true
    [ "${#COMPOSE[@]}" -gt 0 ] && "${COMPOSE[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
    rm -f deploy/build-ca.pem
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

wait_http() {  # url expected-status timeout-seconds [curl args...]
    local url="$1" want="$2" limit="$3" got=""; shift 3
    for _ in $(seq 1 "$((limit * 4))"); do
        got="$(curl -s -o /dev/null -w '%{http_code}' "$@" "$url" || true)"
        [ "$got" = "$want" ] && return 0
        sleep 0.25
    done
    die "$url answered $got, not $want, within ${limit}s"
}

metric() {  # base-url metric-line-prefix → its value ("" if absent)
    curl -s -H "Authorization: Bearer $TOKEN" "$1/metrics" | awk -v p="$2" 'index($0, p) == 1 {print $2}'
}

run_pipeline() {  # base-url [pipeline key successes] → waits for one webhook-triggered run
    # of the pipeline (default hello) to succeed: its `successes`-th (default 1) success
    local base="$1" name="${2:-hello}" key="${3:-$KEY}" want="${4:-1}" run_id=""
    for _ in $(seq 1 240); do  # the engine discovers pipelines when it starts
        run_id="$(curl -s -X POST "$base/webhooks/$name/$key" \
            | python3 -c 'import json, sys; print(json.load(sys.stdin).get("run_id", ""))' 2>/dev/null || true)"
        [ -n "$run_id" ] && break
        sleep 0.25
    done
    [ -n "$run_id" ] || die "the webhook of pipeline $name never accepted a run"
    for _ in $(seq 1 480); do
        [ "$(metric "$base" "fastflow_runs_total{pipeline=\"$name\",status=\"SUCCESS\"}")" = "$want.0" ] && { echo "$run_id"; return 0; }
        [ -n "$(metric "$base" "fastflow_runs_total{pipeline=\"$name\",status=\"FAILED\"}")" ] && die "run $run_id FAILED"
        sleep 0.25
    done
    die "run $run_id did not succeed within 120s"
}

run_log() {  # container pipeline run-id → the run's log (files are sharded: logs/<pipeline>/<shard>/)
    docker exec "$1" sh -c "cat /data/logs/$2/*/$3.log"
}

wait_healthy() {  # container
    for _ in $(seq 1 120); do
        [ "$(docker inspect --format '{{.State.Health.Status}}' "$1")" = "healthy" ] && return 0
        sleep 0.5
    done
    die "$1 never became healthy: $(docker inspect --format '{{json .State.Health}}' "$1")"
}

# --- 1. build ---------------------------------------------------------------------------------
phase "base image"
BASE="$(bash scripts/build-base-image.sh)"
phase "application image $IMAGE on $BASE"
[ -f "$CA" ] && cp "$CA" deploy/build-ca.pem  # trusted by pip in the build stage only
docker build -q --build-arg BASE_IMAGE="$BASE" \
    --build-arg VERSION="$(git describe --always --dirty 2>/dev/null || echo dev)" \
    --build-arg REVISION="$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
    -t "$IMAGE" . 2> >(grep -v -i -e deprecated -e buildx -e 'docs.docker.com' >&2) >/dev/null
rm -f deploy/build-ca.pem
# Earlier builds of the tag (older code) are dangling now: do not let them pile up.
docker image prune -f --filter "label=org.opencontainers.image.title=Fast-Flow" >/dev/null

# --- 2. the image itself -----------------------------------------------------------------------
phase "image checks"
inspect() { docker image inspect --format "$1" "$IMAGE"; }
[ "$(inspect '{{.Config.User}}')" = "10001:10001" ] || die "image does not run as the non-root user"
inspect '{{json .Config.Healthcheck.Test}}' | grep -q healthcheck || die "no HEALTHCHECK"
inspect '{{index .Config.Labels "org.opencontainers.image.revision"}}' | grep -q . || die "no OCI labels"
docker run --rm "$IMAGE" sh -c 'test -s /app/staticfiles/staticfiles.json && test ! -e /app/deploy/build-ca.pem' \
    || die "static files missing or the build CA leaked into the image"
docker run --rm "$IMAGE" sh -c 'git --version && command -v ssh ssh-keyscan' >/dev/null \
    || die "git or openssh-client missing (git sync needs them)"
phase "image size $(inspect '{{.Size}}' | awk '{printf "%.0f MB", $1/1e6}')"

# --- 3. web + engine from the same image, SQLite on a named volume ------------------------------
mkdir -p "$WORK/pipelines/hello"
cat >"$WORK/pipelines/hello/main.py" <<'EOF'
import six

print("hello from six", six.__version__)
EOF
echo "six" >"$WORK/pipelines/hello/requirements.txt"
printf '{"webhook_key": "%s"}\n' "$KEY" >"$WORK/pipelines/hello/pipeline.json"
chmod -R a+rX "$WORK"
PORT="$(free_port)"
cat >"$WORK/app.env" <<EOF
SECRET_KEY=smoke-secret-key-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
FASTFLOW_ENCRYPTION_KEY=$(python3 -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())')
DATABASE_URL=sqlite:////data/fastflow.db
ALLOWED_HOSTS=localhost,127.0.0.1
FASTFLOW_METRICS_TOKEN=$TOKEN
FASTFLOW_RUNNER_IMAGE=fastflow-runner:python{python_version}
FASTFLOW_LOG_FORMAT=json
EOF
docker volume create "$NAME-data" >/dev/null
common=(--env-file "$WORK/app.env" -v "$NAME-data:/data" -v "$WORK/pipelines:/pipelines:ro")

phase "migrate (one-off container)"
docker run --rm "${common[@]}" "$IMAGE" migrate --no-input >/dev/null
phase "web"
docker run -d --name "$NAME-web" "${common[@]}" -p "127.0.0.1:$PORT:8000" \
    --health-interval 1s --health-start-period 1s "$IMAGE" >/dev/null
WEB="http://127.0.0.1:$PORT"
wait_http "$WEB/healthz" 200 60
[ "$(curl -s -o /dev/null -w '%{http_code}' "$WEB/readyz")" = 503 ] || die "/readyz is 200 without an engine"
phase "engine (Docker socket; CA bundle, pipelines and data mounted at other paths than on the host)"
ca_args=()
[ -f "$CA" ] && ca_args=(-v "$CA:/etc/fastflow/ca.pem:ro" -e FASTFLOW_RUNNER_CA_BUNDLE=/etc/fastflow/ca.pem)
docker run -d --name "$NAME-engine" "${common[@]}" --init "${ca_args[@]}" \
    -v /var/run/docker.sock:/var/run/docker.sock --group-add "$(stat -c %g /var/run/docker.sock)" \
    -e FASTFLOW_RUNNER_NETWORK=bridge --health-interval 1s --health-start-period 1s \
    "$IMAGE" runscheduler >/dev/null
wait_http "$WEB/readyz" 200 90
phase "a pipeline run through the engine's Docker socket"
RUN_ID="$(run_pipeline "$WEB")"
LOG="$(run_log "$NAME-web" hello "$RUN_ID")"
echo "$LOG" | grep -q "hello from six" || die "the run's log lacks its output: $LOG"
phase "later runs are handed warm pool containers (started by the engine in a container)"
# Members are made per environment, and the warm-up may publish hello's after the first run:
# wait for it, run once with it (the pool then keeps members of it), then check the next run.
for _ in $(seq 1 240); do
    WARM="$(docker exec "$NAME-web" fastflow shell -c "from pipelines_app.models import Pipeline; print(Pipeline.objects.get(pk='hello').last_cache_warmup is not None)" | tail -n 1)"
    [ "$WARM" = "True" ] && break
    sleep 0.5
done
[ "$WARM" = "True" ] || die "the engine never warmed up hello's environment"
run_pipeline "$WEB" hello "$KEY" 2 >/dev/null
POOLED=""
for _ in $(seq 1 120); do
    POOLED="$(docker ps -q --no-trunc --filter label=fastflow.pool --filter label=fastflow.pipeline=hello --filter label=fastflow.env=prepared)"
    [ -n "$POOLED" ] && break
    sleep 0.25
done
[ -n "$POOLED" ] || die "the engine's warm pool never started a container for hello"
RUN3="$(run_pipeline "$WEB" hello "$KEY" 3)"
HANDLE="$(docker exec "$NAME-web" fastflow shell -c "from runs_app.models import PipelineRun; print(PipelineRun.objects.get(id='$RUN3').container_id)" | tail -n 1)"
echo "$POOLED" | grep -qx "$HANDLE" || die "run $RUN3 ran in $HANDLE, not in a pool container: $POOLED"
run_log "$NAME-web" hello "$RUN3" | grep -q "hello from six" || die "the pooled run's log lacks its output"
phase "health checks of both roles"
wait_healthy "$NAME-web"
wait_healthy "$NAME-engine"
docker logs "$NAME-engine" 2>&1 | python3 -c '
import json, sys
lines = [line for line in sys.stdin if line.strip()]
assert lines and all(json.loads(line)["engine_id"] for line in lines), "engine logs are not JSON lines"
' || die "FASTFLOW_LOG_FORMAT=json: the engine printed non-JSON lines"
[ "$(metric "$WEB" 'fastflow_webhook_responses_total{code="202"}')" = "3.0" ] || die "webhook counter"
docker rm -f "$NAME-web" "$NAME-engine" >/dev/null

# --- 3b. git sync with the image's git and ssh --------------------------------------------------
phase "git sync: an origin repository made by the image's git (in the volume, as its user)"
GIT_SECRET="smoke-git-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
origin_commit() {  # version → commits pipeline `synced` at that version to the origin, prints the id
    docker run --rm -v "$NAME-data:/data" -e V="$1" -e KEY="$KEY" "$IMAGE" sh -ec '
        export GIT_CONFIG_NOSYSTEM=1 GIT_AUTHOR_NAME=smoke GIT_AUTHOR_EMAIL=smoke@example.org
        export GIT_COMMITTER_NAME=smoke GIT_COMMITTER_EMAIL=smoke@example.org
        w=/data/smoke-origin-work
        if [ ! -d /data/smoke-origin.git ]; then
            git init -q --bare -b main /data/smoke-origin.git
            git init -q -b main "$w"
            mkdir "$w/synced"
            printf "import os\nprint(\"synced\", open(\"version.txt\").read().strip(), os.environ[\"FASTFLOW_GIT_COMMIT\"])\n" >"$w/synced/main.py"
            printf "{\"webhook_key\": \"%s\"}\n" "$KEY" >"$w/synced/pipeline.json"
        fi
        echo "$V" >"$w/synced/version.txt"
        git -C "$w" add -A && git -C "$w" commit -q -m "version $V"
        git -C "$w" push -q /data/smoke-origin.git main
        git -C "$w" rev-parse HEAD'
}
FIRST="$(origin_commit v1)"
git_env=(-e FASTFLOW_PIPELINES_DIR=/data/pipelines)
docker run -d --name "$NAME-web" "${common[@]}" "${git_env[@]}" -p "127.0.0.1:$PORT:8000" "$IMAGE" >/dev/null
wait_http "$WEB/healthz" 200 60
docker exec -e SECRET="$GIT_SECRET" "$NAME-web" fastflow shell -c '
import os
from gitsync_app.services import RepositoryConfig, repository_configure
repository_configure(config=RepositoryConfig(url="file:///data/smoke-origin.git", webhook_secret=os.environ["SECRET"]))
' >/dev/null || die "configuring git sync failed"
phase "git sync: manage.py gitsync (fetch, check out, switch the symlink, discover)"
docker run --rm "${common[@]}" "${git_env[@]}" "$IMAGE" gitsync | grep -q "${FIRST:0:12}" \
    || die "manage.py gitsync did not switch to $FIRST"
docker run -d --name "$NAME-engine" "${common[@]}" "${git_env[@]}" --init "${ca_args[@]}" \
    -v /var/run/docker.sock:/var/run/docker.sock --group-add "$(stat -c %g /var/run/docker.sock)" \
    -e FASTFLOW_RUNNER_NETWORK=bridge "$IMAGE" runscheduler >/dev/null
wait_http "$WEB/readyz" 200 90
phase "git sync: a run of the synced commit (its checkout mounted from the named volume)"
RUN_ID="$(run_pipeline "$WEB" synced "$KEY" 1)"
run_log "$NAME-web" synced "$RUN_ID" | grep -q "synced v1 $FIRST" \
    || die "the run did not run commit $FIRST: $(run_log "$NAME-web" synced "$RUN_ID")"
phase "git sync: a signed push webhook → the leader engine syncs the next commit"
SECOND="$(origin_commit v2)"
BODY="{\"ref\": \"refs/heads/main\", \"after\": \"$SECOND\"}"
SIG="sha256=$(BODY="$BODY" GIT_SECRET="$GIT_SECRET" python3 -c 'import hashlib, hmac, os
print(hmac.new(os.environ["GIT_SECRET"].encode(), os.environ["BODY"].encode(), hashlib.sha256).hexdigest())')"
[ "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$WEB/webhooks/git" -H 'Content-Type: application/json' \
    -H 'X-GitHub-Event: push' -H "X-Hub-Signature-256: $SIG" --data-binary "$BODY")" = 202 ] \
    || die "the push webhook was not accepted"
discovered() {  # the commit pipeline `synced` was discovered from
    docker exec "$NAME-web" fastflow shell -c '
from pipelines_app.models import Pipeline
print(Pipeline.objects.get(pipeline_name="synced").git_commit)' | tail -n 1
}
for _ in $(seq 1 60); do [ "$(discovered)" = "$SECOND" ] && break; sleep 1; done
[ "$(discovered)" = "$SECOND" ] || die "the push webhook did not lead to a sync of $SECOND"
RUN_ID="$(run_pipeline "$WEB" synced "$KEY" 2)"
run_log "$NAME-web" synced "$RUN_ID" | grep -q "synced v2 $SECOND" \
    || die "the run did not run commit $SECOND: $(run_log "$NAME-web" synced "$RUN_ID")"
docker rm -f "$NAME-web" "$NAME-engine" >/dev/null
docker volume rm "$NAME-data" >/dev/null

[ "${FASTFLOW_SMOKE_SKIP_COMPOSE:-0}" = "1" ] && { phase "done (compose skipped)"; exit 0; }

# --- 4. compose.yaml with PostgreSQL ------------------------------------------------------------
if command -v docker-compose >/dev/null 2>&1; then
    COMPOSE=(docker-compose)
elif docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
else
    die "neither docker-compose nor docker compose is installed"
fi
phase "PostgreSQL stand-in image (no registry for the official one)"
docker build -q --build-arg BASE_IMAGE="$BASE" -t "$PG_IMAGE" deploy/postgres \
    2> >(grep -v -i -e deprecated -e buildx -e 'docs.docker.com' >&2) >/dev/null
PORT="$(free_port)"
FASTFLOW_PORT="$PORT" FASTFLOW_IMAGE="$IMAGE" FASTFLOW_POSTGRES_IMAGE="$PG_IMAGE" \
    FASTFLOW_PIPELINES_PATH="$WORK/pipelines" \
    FASTFLOW_RUNNER_IMAGE='fastflow-runner:python{python_version}' \
    bash scripts/compose-env.sh "$WORK/compose.env"
TOKEN="$(sed -n 's/^FASTFLOW_METRICS_TOKEN=//p' "$WORK/compose.env")"
COMPOSE+=(-p "$NAME" --env-file "$WORK/compose.env" -f compose.yaml)
if [ -f "$CA" ]; then  # what a TLS-intercepting proxy needs: the host's CA bundle for the runs
    cat >"$WORK/compose.ca.yaml" <<EOF
services:
  engine:
    environment:
      FASTFLOW_RUNNER_CA_BUNDLE: /etc/fastflow/ca.pem
    volumes:
      - $CA:/etc/fastflow/ca.pem:ro
EOF
    COMPOSE+=(-f "$WORK/compose.ca.yaml")
fi
phase "compose up (${COMPOSE[0]} $("${COMPOSE[@]}" version --short 2>/dev/null || true))"
"${COMPOSE[@]}" up -d >/dev/null 2>&1 || { "${COMPOSE[@]}" up -d; die "compose up failed"; }
WEB="http://127.0.0.1:$PORT"
wait_http "$WEB/readyz" 200 180
phase "a pipeline run through the compose stack"
run_pipeline "$WEB" >/dev/null
phase "the first login link"
LINK="$("${COMPOSE[@]}" exec -T web fastflow createadmin admin | grep -o "http://localhost:$PORT/login-link/[^ ]*")" \
    || die "createadmin printed no login link"
wait_http "${LINK/localhost/127.0.0.1}" 200 10 -L
"${COMPOSE[@]}" down -v --remove-orphans >/dev/null 2>&1
COMPOSE=()
phase "done"
