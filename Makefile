# Crucible: every target bootstraps what it needs (system packages, uv, the locked venv).
SHELL := /bin/bash
UV := .tools/bin/uv
PY := .venv/bin/python
export UV_PYTHON_DOWNLOADS := never
# Python caches the bytecode of Crucible's own modules as usual, even where the environment says
# otherwise: every test starts a few hundred service processes, and compiling the sources again in
# each costs about a second of CPU.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: deps run test test-fast lint format bench chaos fuzz lock clean compose-up compose-smoke compose-down

deps: .venv/.bootstrapped

.venv/.bootstrapped: uv.lock pyproject.toml scripts/bootstrap.sh
	@scripts/bootstrap.sh
	@touch $@

run: deps
	@scripts/run.sh

# Two xdist workers, one test file each at a time, the end-to-end files first (pyproject's
# testpaths): one per core. Three starved the end-to-end suites into timeouts; PYTEST_WORKERS=0
# runs everything in this process.
test: deps
	@$(PY) -m pytest -n $(or $(PYTEST_WORKERS),2) --dist loadfile $(PYTEST_ARGS)

lint: deps
	@.venv/bin/ruff check . && .venv/bin/ruff format --check .

format: deps
	@.venv/bin/ruff format . && .venv/bin/ruff check --fix .

# The whole suite under real HTTP load, against the sandbox's own capacity (docs/benchmarks.md).
# BENCH_SECONDS per phase (default 10); BENCH_ARGS e.g. --update-doc, --profile, --rate 50.
bench: deps
	@BENCH_SECONDS=$(or $(BENCH_SECONDS),10) $(PY) -m crucible_bench $(BENCH_ARGS)

# Faults injected into the whole suite under a stream of evaluations; prints the table of
# docs/reliability.md and fails on any loss, double execution or stuck evaluation.
# CHAOS_FAULTS=all or names (e.g. storage,celery-child); CHAOS_DEADLINE (recovery deadline, s),
# CHAOS_BEFORE / CHAOS_PAUSE / CHAOS_AFTER / CHAOS_RATE / CHAOS_TIMEOUT, CHAOS_LINGER (follow
# stuck evaluations this long at the end); the table goes to CHAOS_TABLE.
chaos: deps
	@CHAOS_FAULTS=$(or $(CHAOS_FAULTS),all) CHAOS_TABLE=$(or $(CHAOS_TABLE),.chaos/latest.md) \
		$(PY) -m pytest tests/test_chaos_e2e.py -p no:xdist -p no:cacheprovider -s -q --timeout 0 $(PYTEST_ARGS)

# Schemathesis over every service's OpenAPI, against real processes (tests/test_edge_e2e.py):
# FUZZ_EXAMPLES generated requests per operation and generation mode (make test runs 3); fails
# on any 5xx, undocumented status or schema mismatch. FUZZ_RANDOM=1 draws new examples each run.
fuzz: deps
	@FUZZ_EXAMPLES=$(or $(FUZZ_EXAMPLES),50) $(PY) -m pytest tests/test_edge_e2e.py -k answers_every_generated_request \
		-p no:xdist -p no:cacheprovider -s -q --timeout 1800 $(PYTEST_ARGS)

# The suite in containers (docker-compose.yml; docs/deploy.md, "Compose"), with docker if a Docker
# engine answers, else podman + podman-compose: compose-up builds the base image, the wheelhouse and
# every image and waits until the suite is healthy; compose-smoke starts it, runs
# tests/compose_smoke.py and the executor's sandbox tests in its image, and stops it again
# (COMPOSE_KEEP=1 leaves it running); compose-down stops it (COMPOSE_VOLUMES=1 drops its data).
# Host ports: GATEWAY_PORT, FLOWER_PORT, PROMETHEUS_PORT.
compose-up: deps
	@scripts/compose.sh up

compose-smoke: compose-up
	@status=0; scripts/compose.sh smoke || status=$$?; \
		if [ -z "$(COMPOSE_KEEP)" ]; then scripts/compose.sh down; fi; exit $$status

compose-down:
	@scripts/compose.sh down

lock:
	@scripts/bootstrap.sh || true
	@$(UV) lock

clean:
	rm -rf .venv .tools .run .bench .chaos .compose .pytest_cache .ruff_cache
