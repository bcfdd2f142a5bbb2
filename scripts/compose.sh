#!/usr/bin/env bash
# The compose suite with this machine's container engine: docker when a Docker engine answers,
# else podman with podman-compose (docs/deploy.md, "Compose").
#   scripts/compose.sh up        build the base image, the wheelhouse and every image; start the
#                                suite; wait until every container with a healthcheck is healthy
#   scripts/compose.sh smoke     tests/compose_smoke.py against the running suite, then the
#                                executor's sandbox tests inside its image (sandbox_tests below)
#   scripts/compose.sh down      stop and remove the suite's containers (volumes: COMPOSE_VOLUMES=1)
#   scripts/compose.sh ps|logs SERVICE|config
# Settings: GATEWAY_PORT / FLOWER_PORT / PROMETHEUS_PORT (host ports), COMPOSE_STANDINS=auto|1|0,
# COMPOSE_WAIT (seconds for the suite to become healthy, default 300), COMPOSE_EXECUTOR_MOUNTS=1
# (podman: the executors mount a tmpfs per run, with CAP_SYS_ADMIN of their user namespace).
set -euo pipefail
cd "$(dirname "$0")/.."

PROJECT=crucible
STATE=.compose
mkdir -p "$STATE"

# --- engine -------------------------------------------------------------------------------------
if docker info >/dev/null 2>&1; then
  ENGINE=docker
  COMPOSE=(docker compose -p "$PROJECT")
elif command -v podman >/dev/null && command -v podman-compose >/dev/null; then
  ENGINE=podman
  # What podman needs here beyond itself: runc (the runtime the suite runs on) and, on a CNI
  # network backend, the dnsname plugin (without it, service names do not resolve).
  need=()
  command -v runc >/dev/null || need+=(runc)
  if [ "$(podman info --format '{{.Host.NetworkBackend}}' 2>/dev/null)" = cni ] &&
    [ ! -e /usr/lib/cni/dnsname ] && [ ! -e /usr/libexec/cni/dnsname ]; then
    need+=(golang-github-containernetworking-plugin-dnsname)
  fi
  if ((${#need[@]})); then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "compose: installing ${need[*]} with apt-get"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "${need[@]}" >/dev/null
    else
      echo "compose: podman needs ${need[*]}: install them and run again" >&2
      exit 1
    fi
  fi
  # runc, cgroupfs and explicit ulimits (deploy/compose/containers.conf).
  export CONTAINERS_CONF="$PWD/deploy/compose/containers.conf"
  # Docker's image format: the OCI format has no HEALTHCHECK.
  export BUILDAH_FORMAT=docker
  # Every container in a user namespace: root inside is an unprivileged uid outside (the executor
  # needs this to run without the masks over /proc; the other services lose nothing). And in a
  # cgroup namespace of its own, where the executor finds its cgroup at / (podman's default on
  # cgroup v1 is the host's namespace, and containers.conf's cgroupns is not honoured there).
  USERNS_BASE="${COMPOSE_USERNS_BASE:-2000000}" USERNS_SIZE="${COMPOSE_USERNS_SIZE:-2000000}"
  RUN_ARGS=(--cgroupns=private --uidmap "0:$USERNS_BASE:$USERNS_SIZE" --gidmap "0:$USERNS_BASE:$USERNS_SIZE")
  COMPOSE=(podman-compose -p "$PROJECT" --podman-run-args="${RUN_ARGS[*]}")
else
  echo "compose: no container engine: no Docker engine answers and podman/podman-compose are" \
    "not installed" >&2
  exit 2
fi
export COMPOSE_ENGINE=$ENGINE

# --- secrets and ports, generated once and kept in .compose/env ------------------------------------
if [ ! -s "$STATE/env" ]; then
  secret() { python3 -c 'import secrets; print(secrets.token_urlsafe(24))'; }
  flower_password=$(secret)
  # Only the secrets are private: the wheelhouse made later is read inside the containers.
  (umask 077; cat >"$STATE/env") <<EOF
INTERNAL_API_KEY=$(secret)
OPERATOR_TOKEN=$(secret)
POSTGRES_PASSWORD=$(secret)
FLOWER_BASIC_AUTH=prometheus:$flower_password
FLOWER_SCRAPE_PASSWORD_FILE=$PWD/$STATE/flower-scrape-password
EOF
  printf '%s' "$flower_password" >"$STATE/flower-scrape-password"
  chmod 0644 "$STATE/flower-scrape-password"  # read by the prometheus user of its container
fi
set -a
API_KEYS="${API_KEYS:-}"
# shellcheck source=/dev/null
. "$STATE/env"
GATEWAY_PORT="${GATEWAY_PORT:-8000}" FLOWER_PORT="${FLOWER_PORT:-5555}"
PROMETHEUS_PORT="${PROMETHEUS_PORT:-9090}"
set +a

# --- the compose files ----------------------------------------------------------------------------
FILES=(-f docker-compose.yml)
standins() {
  case "${COMPOSE_STANDINS:-auto}" in
    1 | yes | true) return 0 ;;
    0 | no | false) return 1 ;;
  esac
  # auto: stand-ins unless every registry image is already on this machine (nothing is pulled).
  local image
  for image in redis:7-alpine postgres:16-alpine prom/prometheus:latest; do
    "$ENGINE" image inspect "$image" >/dev/null 2>&1 || return 0
  done
  return 1
}
if standins; then FILES+=(-f deploy/compose/standins.yml); fi

# cgroup v1: each executor gets a cgroup subtree of its own, owned by the container's root (the
# mapped uid), bind-mounted over the read-only hierarchies the engine gives it.
executor_cgroups() {
  [ "$ENGINE" = podman ] && [ ! -f /sys/fs/cgroup/cgroup.controllers ] || return 0
  local n controller dir out="$STATE/cgroups.yml"
  echo "# Generated by scripts/compose.sh: writable cgroup v1 subtrees for the executors." >"$out"
  echo "services:" >>"$out"
  for n in 1 2 3; do
    echo "  executor-$n:" >>"$out"
    # Opt-in: a tmpfs of its own per run (bounded in inodes too), mounted by the executor. The
    # capability is the container's user namespace's, not the host's (docs/deploy.md).
    [ "${COMPOSE_EXECUTOR_MOUNTS:-0}" = 1 ] && echo "    cap_add: [SYS_ADMIN]" >>"$out"
    echo "    volumes:" >>"$out"
    for controller in memory pids cpu cpuacct freezer; do
      [ -d "/sys/fs/cgroup/$controller" ] || continue
      dir="/sys/fs/cgroup/$controller/$PROJECT-compose/executor-$n"
      if [ "${1:-}" = create ]; then
        mkdir -p "$dir"
        chown "$USERNS_BASE:$USERNS_BASE" "$dir" "$dir"/*
      fi
      echo "      - $dir:/sys/fs/cgroup/$controller" >>"$out"
    done
  done
  FILES+=(-f "$out")
}

compose() { "${COMPOSE[@]}" "${FILES[@]}" "$@"; }

# Every service of the compose files with its image and whether it is built here, one a line:
# "name image built|pulled" (podman-compose 1.0 has no `config`; later files override earlier).
service_images() {
  local files=() arg
  for arg in "${FILES[@]}"; do [ "$arg" = -f ] || files+=("$arg"); done
  .venv/bin/python - "${files[@]}" <<'PY'
import sys
from pathlib import Path

import yaml

services: dict[str, dict] = {}
for file in sys.argv[1:]:
    for name, service in (yaml.safe_load(Path(file).read_text()).get("services") or {}).items():
        services.setdefault(name, {}).update(service or {})
for name, service in services.items():
    built = "built" if "build" in service else "pulled"
    print(name, service.get("image", f"crucible_{name}"), built)
PY
}

# The services to start: all but those whose image can be neither built nor found here (e.g.
# grafana where no registry answers); each left out is named.
services_to_start() {
  local name image how
  while read -r name image how; do
    if [ "$how" = built ] || "$ENGINE" image inspect "$image" >/dev/null 2>&1; then
      echo "$name"
    else
      echo "compose: leaving out $name: $image cannot be pulled here and has no stand-in" >&2
    fi
  done < <(service_images)
}

containers() { "$ENGINE" ps -a --filter "label=com.docker.compose.project=$PROJECT" --format '{{.Names}}'; }

health_of() {
  local status
  status=$("$ENGINE" inspect --format '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$1" 2>/dev/null || echo missing)
  # podman runs healthchecks from systemd timers; without systemd, run them here.
  if [ "$ENGINE" = podman ] && [ "$status" != none ] && [ "$status" != missing ]; then
    if "$ENGINE" healthcheck run "$1" >/dev/null 2>&1; then status=healthy; else status=unhealthy; fi
  fi
  echo "$status"
}

wait_healthy() {
  local deadline=$((SECONDS + ${COMPOSE_WAIT:-300})) pending name
  while :; do
    pending=()
    for name in $(containers); do
      case "$(health_of "$name")" in healthy | none) ;; *) pending+=("$name") ;; esac
    done
    ((${#pending[@]} == 0)) && return 0
    if ((SECONDS >= deadline)); then
      echo "compose: not healthy after ${COMPOSE_WAIT:-300} s: ${pending[*]}" >&2
      return 1
    fi
    sleep 2
  done
}

# The executor's own tests (its hostile programs, isolation, cgroup and API tests) inside its
# image, with the executor services' container settings: what the sandbox guarantees on the host,
# checked in the container. Their fixtures mount each run's tmpfs, so they run with CAP_SYS_ADMIN
# of the container's user namespace (COMPOSE_EXECUTOR_MOUNTS=1's setting; podman only, where
# every container has one). javascript is left out: the image offers python only (no node).
# The tests come from the work tree, read-only; pytest from the wheelhouse, into /tmp.
SANDBOX_TESTS=(services/executor/tests/test_containment.py services/executor/tests/test_isolation.py
  services/executor/tests/test_cgroups.py services/executor/tests/test_api.py)
sandbox_tests() {
  local args=(--rm --security-opt seccomp=./deploy/compose/executor-seccomp.json
    --security-opt systempaths=unconfined --security-opt apparmor=unconfined
    -v "$PWD:/src:ro" -v "$PWD/.compose/wheels:/wheels:ro" -w /src
    -e PYTHONDONTWRITEBYTECODE=1 -e PYTHONPATH=/tmp/test-libs --entrypoint sh)
  local controller dir
  if [ "$ENGINE" = podman ]; then
    args+=("${RUN_ARGS[@]}" --cap-add SYS_ADMIN)
    if [ ! -f /sys/fs/cgroup/cgroup.controllers ]; then
      for controller in memory pids cpu cpuacct freezer; do
        dir="/sys/fs/cgroup/$controller/$PROJECT-compose/sandbox-tests"
        mkdir -p "$dir" && chown "$USERNS_BASE:$USERNS_BASE" "$dir" "$dir"/*
        args+=(-v "$dir:/sys/fs/cgroup/$controller")
      done
    fi
  fi
  "$ENGINE" run "${args[@]}" localhost/crucible-executor:latest -c '
    /wheels/bin/uv pip install --quiet --no-index --find-links /wheels/test --target /tmp/test-libs \
      -r /wheels/requirements/test.txt &&
    exec python -m pytest -p no:cacheprovider -q -x -k "not javascript" "$@"' sandbox-tests \
    "${SANDBOX_TESTS[@]}" \
    ${PYTEST_ARGS:-}
}

case "${1:-}" in
  up)
    started=$SECONDS
    nice scripts/compose-base.sh "$ENGINE"
    nice scripts/compose-wheels.sh "$ENGINE"
    executor_cgroups create
    echo "compose: building images ($ENGINE)"
    nice "${COMPOSE[@]}" "${FILES[@]}" build >"$STATE/build.log" 2>&1 ||
      { tail -n 40 "$STATE/build.log" >&2; exit 1; }
    built=$SECONDS
    mapfile -t services < <(services_to_start)
    echo "compose: starting ${services[*]}"
    compose up -d "${services[@]}" >"$STATE/up.log" 2>&1 || { tail -n 40 "$STATE/up.log" >&2; exit 1; }
    wait_healthy
    echo "compose: build $((built - started)) s, start-up to healthy $((SECONDS - built)) s"
    echo "compose: gateway http://127.0.0.1:$GATEWAY_PORT  flower http://127.0.0.1:$FLOWER_PORT" \
      " prometheus http://127.0.0.1:$PROMETHEUS_PORT  (secrets: $STATE/env)"
    for image in $(service_images | awk '{print $2}' | sort -u); do
      size=$("$ENGINE" image inspect --format '{{.Size}}' "$image" 2>/dev/null) || continue
      echo "compose: image $image $((size / 1000000)) MB"
    done
    ;;
  smoke)
    executor_cgroups
    export COMPOSE_GATEWAY_URL="http://127.0.0.1:$GATEWAY_PORT"
    export COMPOSE_FLOWER_URL="http://127.0.0.1:$FLOWER_PORT"
    export COMPOSE_PROMETHEUS_URL="http://127.0.0.1:$PROMETHEUS_PORT"
    export COMPOSE_FLOWER_AUTH="$FLOWER_BASIC_AUTH"
    .venv/bin/python -m pytest tests/compose_smoke.py -p no:xdist -p no:cacheprovider -q \
      ${PYTEST_ARGS:-}
    sandbox_tests
    ;;
  down)
    executor_cgroups
    compose down ${COMPOSE_VOLUMES:+--volumes} >"$STATE/down.log" 2>&1 || { tail -n 20 "$STATE/down.log" >&2; exit 1; }
    # The executors' cgroup subtrees, now empty (a cgroup directory is removed by rmdir).
    for dir in /sys/fs/cgroup/*/"$PROJECT-compose"; do
      [ -d "$dir" ] && find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
    echo "compose: stopped"
    ;;
  ps) containers | while read -r name; do echo "$name $(health_of "$name")"; done ;;
  logs) shift; "$ENGINE" logs "${PROJECT}_$1_1" ;;
  config) executor_cgroups; service_images ;;
  sandbox-tests) sandbox_tests ;;
  *)
    echo "usage: scripts/compose.sh up|smoke|down|ps|logs SERVICE|config" >&2
    exit 2
    ;;
esac
