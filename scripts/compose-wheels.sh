#!/usr/bin/env bash
# Builds the wheelhouse the images install from with --no-index (nothing is downloaded inside a
# build): every third-party wheel the lock pins for the five services, Crucible's own packages as
# wheels, one requirements file per service exported from uv.lock, and the uv binary that installs
# them. Output: .compose/wheels/{third-party,project,requirements,bin,test}.
#   scripts/compose-wheels.sh [ENGINE]     the base image (scripts/compose-base.sh) must exist
set -euo pipefail
cd "$(dirname "$0")/.."

ENGINE="${1:-${COMPOSE_ENGINE:-podman}}"
BASE_IMAGE="${CRUCIBLE_BASE_IMAGE:-localhost/crucible-base:bookworm}"
UV=.tools/bin/uv
OUT=.compose/wheels
SERVICES=(crucible-gateway crucible-queue crucible-worker crucible-executor crucible-storage)
PROJECT=(crucible-contracts crucible-runtime "${SERVICES[@]}")

mkdir -p "$OUT"/{third-party,project,requirements,bin}
for package in "${SERVICES[@]}"; do
  # Third-party only: the workspace's packages come from the project wheels, in a later layer.
  "$UV" export --quiet --frozen --no-dev --no-hashes --no-emit-workspace --no-header \
    --no-annotate --package "$package" --output-file "$OUT/requirements/$package.txt"
done

# The lock's markers are judged by the images' interpreter (Debian's 3.11.2 needs async-timeout,
# which a newer 3.11 on the host does not): its marker environment, read from the base image.
"$ENGINE" run --rm "$BASE_IMAGE" python3 -c '
import json, os, platform, sys
version = platform.python_version()
print(json.dumps({
    "implementation_name": sys.implementation.name, "implementation_version": version,
    "os_name": os.name, "platform_machine": platform.machine(),
    "platform_python_implementation": platform.python_implementation(),
    "platform_release": platform.release(), "platform_system": platform.system(),
    "platform_version": platform.version(), "python_full_version": version,
    "python_version": ".".join(platform.python_version_tuple()[:2]), "sys_platform": sys.platform,
}))' >"$OUT/requirements/environment.json"

# One wheel per pinned version whatever service needs it; wheels already there are kept, and pins
# the lock no longer has are dropped, so the layer that installs them stays exact.
.venv/bin/python - "$OUT" <<'PY'
import json, re, sys
from pathlib import Path

from packaging.requirements import Requirement

out = Path(sys.argv[1])
environment = json.loads((out / "requirements/environment.json").read_text())
pins = set()
for file in (out / "requirements").glob("crucible-*.txt"):
    for line in filter(str.strip, file.read_text().splitlines()):
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate(environment):
            pins.add(f"{requirement.name}{requirement.specifier}")
(out / "requirements/all.txt").write_text("".join(f"{pin}\n" for pin in sorted(pins)))


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


wanted = {(norm(pin.split("==")[0]), pin.split("==")[1]) for pin in pins}
for wheel in (out / "third-party").glob("*.whl"):
    name, version = wheel.name.split("-")[:2]
    if (norm(name), version) not in wanted:
        wheel.unlink()
PY
.tools/bin/pip wheel --quiet --no-deps --wheel-dir "$OUT/third-party" -r "$OUT/requirements/all.txt" \
  2> >(grep -v "^WARNING: Location" >&2)

# The executor's own tests run inside its image (scripts/compose-sandbox-tests.sh): pytest and its
# plugins at the lock's versions, in a directory apart (never installed in an image).
mkdir -p "$OUT/test"
"$UV" export --quiet --frozen --only-group dev --no-hashes --no-emit-workspace --no-header \
  --no-annotate | grep -E '^(pytest|pytest-timeout|iniconfig|pluggy|packaging|pygments)==' \
  | sed 's/ *;.*//' >"$OUT/requirements/test.txt"
.tools/bin/pip wheel --quiet --no-deps --wheel-dir "$OUT/test" -r "$OUT/requirements/test.txt" \
  2> >(grep -v "^WARNING: Location" >&2)

rm -f "$OUT"/project/*.whl
for package in "${PROJECT[@]}"; do
  "$UV" build --quiet --wheel --package "$package" --out-dir "$OUT/project" 2>/dev/null
done
cmp -s "$UV" "$OUT/bin/uv" || install -m 0755 "$UV" "$OUT/bin/uv"
echo "compose-wheels: $(ls "$OUT/third-party" | wc -l) third-party wheels," \
  "$(ls "$OUT/project" | wc -l) project wheels in $OUT"
