# Crucible: every target bootstraps what it needs (system packages, uv, the locked venv).
SHELL := /bin/bash
UV := .tools/bin/uv
PY := .venv/bin/python
export UV_PYTHON_DOWNLOADS := never

.PHONY: deps run test test-fast lint format bench lock clean

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

lock:
	@scripts/bootstrap.sh || true
	@$(UV) lock

clean:
	rm -rf .venv .tools .run .bench .pytest_cache .ruff_cache
