#!/usr/bin/env bash
# `make run`: the whole Crucible suite as local processes under honcho, each kept alive by
# scripts/supervise.sh (a process that dies is restarted with back-off); Ctrl-C stops them all.
# Every DESIGN.md variable set in the environment is passed through; the rest get local defaults.
set -euo pipefail
cd "$(dirname "$0")/.."

export VENV="$PWD/.venv" RUN_DIR="${RUN_DIR:-$PWD/.run}"
export BIND_HOST="${BIND_HOST:-127.0.0.1}"
export GATEWAY_PORT="${GATEWAY_PORT:-8000}" QUEUE_SERVICE_PORT="${QUEUE_SERVICE_PORT:-8002}"
export STORAGE_PORT="${STORAGE_PORT:-8082}" EXECUTOR_1_PORT="${EXECUTOR_1_PORT:-8083}"
export EXECUTOR_2_PORT="${EXECUTOR_2_PORT:-8084}" EXECUTOR_3_PORT="${EXECUTOR_3_PORT:-8085}"
export FLOWER_PORT="${FLOWER_PORT:-5555}"
# Crucible's own Redis instances, beside (never on) a Redis that may already use 6379.
export BROKER_REDIS_PORT="${BROKER_REDIS_PORT:-6380}" STATE_REDIS_PORT="${STATE_REDIS_PORT:-6381}"

export CELERY_BROKER_URL="${CELERY_BROKER_URL:-redis://127.0.0.1:$BROKER_REDIS_PORT/0}"
export CELERY_RESULT_BACKEND="${CELERY_RESULT_BACKEND:-redis://127.0.0.1:$BROKER_REDIS_PORT/1}"
export DEAD_LETTER_REDIS_URL="${DEAD_LETTER_REDIS_URL:-$CELERY_BROKER_URL}"  # where the queue-worker parks given-up runs
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:$STATE_REDIS_PORT/0}"
export STORAGE_SERVICE_URL="${STORAGE_SERVICE_URL:-http://127.0.0.1:$STORAGE_PORT}"
export QUEUE_SERVICE_URL="${QUEUE_SERVICE_URL:-http://127.0.0.1:$QUEUE_SERVICE_PORT}"
export LEGACY_EXECUTOR_URL="${LEGACY_EXECUTOR_URL:-http://127.0.0.1:$EXECUTOR_1_PORT}"
export EXECUTOR_SERVICE_URL="${EXECUTOR_SERVICE_URL:-http://127.0.0.1:$EXECUTOR_2_PORT,http://127.0.0.1:$EXECUTOR_3_PORT}"
export DATABASE_URL="${DATABASE_URL:-sqlite:///$RUN_DIR/crucible.db}"
export CELERY_ENABLED="${CELERY_ENABLED:-false}" CELERY_PERCENTAGE="${CELERY_PERCENTAGE:-0.0}"
export FORCE_LEGACY_QUEUE="${FORCE_LEGACY_QUEUE:-false}" MIGRATION_MODE="${MIGRATION_MODE:-split}"
# Consumers hold more runs than their executors have slots (the Celery path's two executors have
# one slot per core each, executor-1 alike), so that one run's storage calls overlap another's
# program; a run that finds every slot taken waits for one in place (EXECUTOR_BUSY_WAIT_SECONDS).
slots_per_executor="${EXECUTOR_SLOTS:-$(nproc)}"
export CELERY_CONCURRENCY="${CELERY_CONCURRENCY:-$(( 3 * slots_per_executor ))}"
export QUEUE_WORKER_CONCURRENCY="${QUEUE_WORKER_CONCURRENCY:-$(( slots_per_executor + slots_per_executor / 2 ))}"
export LOG_LEVEL="${LOG_LEVEL:-INFO}"
# Execution (executors, consumers) and Flower yield the CPU to intake (gateway, storage, Redis).
export EXECUTION_NICE="${EXECUTION_NICE:-5}"
# Flower's basic auth (user:password[,user2:password2]); unset, Flower is open (said below).
if [[ -n "${FLOWER_BASIC_AUTH:-}" ]]; then export FLOWER_BASIC_AUTH; else unset FLOWER_BASIC_AUTH; fi
export PYTHONUNBUFFERED=1

busy=()
for port in "$GATEWAY_PORT" "$QUEUE_SERVICE_PORT" "$STORAGE_PORT" "$EXECUTOR_1_PORT" "$EXECUTOR_2_PORT" \
            "$EXECUTOR_3_PORT" "$FLOWER_PORT" "$BROKER_REDIS_PORT" "$STATE_REDIS_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then busy+=("$port"); fi
done
if ((${#busy[@]})); then
  echo "make run: port(s) ${busy[*]} already in use; stop what holds them or set e.g. GATEWAY_PORT=9000" >&2
  exit 1
fi

mkdir -p "$RUN_DIR/redis-broker" "$RUN_DIR/redis-state"
if [[ -n "${FLOWER_BASIC_AUTH:-}" ]]; then
  flower_auth="basic auth from FLOWER_BASIC_AUTH"
else
  flower_auth="OPEN: no FLOWER_BASIC_AUTH"
  echo "make run: warning: FLOWER_BASIC_AUTH is not set, so Flower is open to anyone who can reach" \
       "$BIND_HOST:$FLOWER_PORT (set FLOWER_BASIC_AUTH=user:password to close it)" >&2
fi
cat <<TABLE
Crucible is starting (Ctrl-C stops everything):
  gateway         http://$BIND_HOST:$GATEWAY_PORT      (API, /docs, /metrics)
  queue-service   http://$BIND_HOST:$QUEUE_SERVICE_PORT      (legacy deque) + queue-worker -> $LEGACY_EXECUTOR_URL
  storage         http://$BIND_HOST:$STORAGE_PORT      ($DATABASE_URL)
  executor-1..3   http://$BIND_HOST:$EXECUTOR_1_PORT  :$EXECUTOR_2_PORT  :$EXECUTOR_3_PORT
  celery-worker   broker $CELERY_BROKER_URL, executors $EXECUTOR_SERVICE_URL
  consumers       Celery -c $CELERY_CONCURRENCY, queue-worker $QUEUE_WORKER_CONCURRENCY threads ($slots_per_executor slots per executor)
  flower          http://$BIND_HOST:$FLOWER_PORT      ($flower_auth)
  redis           broker :$BROKER_REDIS_PORT, state/events :$STATE_REDIS_PORT
  routing         CELERY_ENABLED=$CELERY_ENABLED CELERY_PERCENTAGE=$CELERY_PERCENTAGE FORCE_LEGACY_QUEUE=$FORCE_LEGACY_QUEUE MIGRATION_MODE=$MIGRATION_MODE
TABLE
exec "$VENV/bin/honcho" --procfile deploy/Procfile.local --app-root "$PWD" start
