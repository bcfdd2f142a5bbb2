"""Every service's /metrics, scraped from real processes after real traffic on both paths, passes
`promtool check metrics` and prometheus_client's parser; every metric the Grafana dashboard and
the alert rules use is exported; and promtool accepts the Prometheus configuration and rules."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from crucible_gateway.paths.routing import bucket
from crucible_runtime.pytest_plugin import free_port, wait_for

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy/grafana/dashboards/crucible.json"
ALERTS = ROOT / "deploy/prometheus/alerts.yml"
PROMETHEUS_CONFIG = ROOT / "deploy/prometheus.yml"
TOKEN = "ops-token-for-the-metrics-tests"
# Series Prometheus makes itself for every scrape, which no service exports.
PROMETHEUS_OWN = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})
# Grafana's variables, given a value PromQL accepts before promtool parses a panel's query.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h"}
SERVICES = [
    "gateway",
    "storage",
    "queue-service",
    "queue-worker",
    "executor-1",
    "executor-2",
    "executor-3",
    "flower",
]
PROGRAMS = [
    "print('same on both paths')",
    "import sys\nsys.exit(3)",
    "import random\nprint(random.random())",
    "print(sum(range(10)))",
]


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["promtool", *args], input=stdin, capture_output=True, text=True, timeout=60
    )


def _metrics_text(url: str) -> str:
    response = httpx.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200, response.text[:500]
    return response.text


def _gateway_counter(url: str, name: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(_metrics_text(url))
        for sample in family.samples
        if sample.name == name
    )


def _key(*, celery: bool) -> str:
    """A routing key whose evaluations go to Celery at a 50 % split (or to legacy)."""
    return next(
        key
        for key in (f"metrics-{uuid.uuid4().hex}" for _ in range(1000))
        if (bucket(key) < 0.5) is celery
    )


@pytest.fixture(scope="module")
def traffic(suite) -> dict:
    """A gateway in shadow mode, a queue-worker and Flower with their metrics on, and a few
    evaluations on both paths (each on one as primary, on the other as shadow), compared."""
    gateway = suite.gateway(
        CELERY_ENABLED="true",
        CELERY_PERCENTAGE="0.5",
        MIGRATION_MODE="shadow",
        SHADOW_PERCENTAGE="1.0",
        SUPERVISOR_INTERVAL="0.2",
        OPERATOR_TOKEN=f"ops:{TOKEN}",
    )
    worker_port, flower_port = free_port(), free_port()
    worker_url, flower_url = f"http://127.0.0.1:{worker_port}", f"http://127.0.0.1:{flower_port}"
    suite.extras.append(
        suite.starter.process(
            "queue-worker-metrics",
            [sys.executable, "-m", "crucible_queue.worker"],
            env={**suite.env, "QUEUE_WORKER_METRICS_PORT": str(worker_port)},
            ready=lambda _: httpx.get(f"{worker_url}/metrics", timeout=1).is_success,
        )
    )
    suite.extras.append(
        suite.starter.process(
            "flower",
            [
                sys.executable,
                "-m",
                "crucible_worker.flower",
                f"--port={flower_port}",
                "--address=127.0.0.1",
            ],
            env=suite.env,
            ready=lambda _: httpx.get(f"{flower_url}/healthcheck", timeout=1).is_success,
        )
    )
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        # Routing keys that send half the evaluations to each path as primary.
        keys = [_key(celery=n % 2 == 0) for n in range(len(PROGRAMS))]
        accepted = [
            client.post("/api/eval", json={"code": code, "routing_key": key}).json()
            for code, key in zip(PROGRAMS, keys, strict=True)
        ]
        assert {answer["backend"] for answer in accepted} == {"legacy", "celery"}
        for answer in accepted:
            wait_for(
                lambda answer=answer: (
                    client.get(f"/api/eval/{answer['eval_id']}").json()["status"]
                    in ("completed", "failed")
                ),
                timeout=90,
                what=f"evaluation {answer['eval_id']} to end",
            )
        wait_for(
            lambda: (
                _gateway_counter(gateway.url, "crucible_gateway_comparisons_total") >= len(PROGRAMS)
            ),
            timeout=90,
            what="the leader to compare every evaluation",
        )
        queue_status = client.get(
            "/api/queue-status", headers={"Authorization": f"Bearer {TOKEN}"}
        ).json()
    urls = {
        "gateway": gateway.url,
        "storage": suite.storage.url,
        "queue-service": suite.queue_service.url,
        "queue-worker": worker_url,
        "flower": flower_url,
        **{f"executor-{n}": executor.url for n, executor in enumerate(suite.executors, 1)},
    }
    return {
        "texts": {name: _metrics_text(url) for name, url in urls.items()},
        "queues": queue_status,
    }


# The series names a family of each type is exposed under (a family may have no series yet, e.g.
# a counter of rollbacks before the first one: it is still exported, and a query of it is right).
SERIES_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("_count", "_sum", "_created"),
    "gauge": ("",),
    "info": ("_info",),
}


@pytest.fixture(scope="module")
def exported(traffic) -> set[str]:
    """Every series name any service exports or declares."""
    return {
        family.name + suffix
        for text in traffic["texts"].values()
        for family in text_string_to_metric_families(text)
        for suffix in SERIES_SUFFIXES.get(family.type, ("",))
    }


@pytest.fixture(scope="module")
def samples(traffic) -> dict[str, list]:
    """Every sample of every service, parsed by prometheus_client."""
    return {
        name: [
            sample for family in text_string_to_metric_families(text) for sample in family.samples
        ]
        for name, text in traffic["texts"].items()
    }


@pytest.mark.parametrize("service", SERVICES)
def test_the_metrics_of_each_service_pass_promtool_lint(traffic, service):
    checked = promtool("check", "metrics", stdin=traffic["texts"][service])

    assert (checked.returncode, checked.stdout + checked.stderr) == (0, ""), service


@pytest.mark.parametrize("service", SERVICES)
def test_the_metrics_of_each_service_parse(samples, service):
    assert samples[service], f"{service} exported nothing"


def _values(samples: list, name: str) -> dict[frozenset, float]:
    return {
        frozenset(sample.labels.items()): sample.value for sample in samples if sample.name == name
    }


def test_storage_times_each_stage_per_path_and_role(samples):
    ended = _values(samples["storage"], "crucible_run_end_to_end_seconds_count")
    waited = _values(samples["storage"], "crucible_run_queue_wait_seconds_count")

    def seen(values: dict, **labels: str) -> float:
        return sum(v for key, v in values.items() if frozenset(labels.items()) <= key)

    for backend in ("legacy", "celery"):
        for role in ("primary", "shadow"):
            assert seen(waited, backend=backend, role=role) >= 1, (backend, role)
            assert seen(ended, backend=backend, role=role) >= 1, (backend, role)
    assert seen(ended, status="failed") >= 2  # sys.exit(3), on both paths
    assert _values(samples["storage"], "crucible_run_execution_seconds_count")


def test_the_gateway_reads_every_queue_and_every_source(samples, traffic):
    depth = _values(samples["gateway"], "crucible_queue_depth")
    age = _values(samples["gateway"], "crucible_queue_oldest_age_seconds")
    up = _values(samples["gateway"], "crucible_queue_source_up")
    queues = {"legacy", "high", "default", "low", "shadow", "dead_letter"}

    assert {dict(key)["queue"] for key in depth} == queues
    assert {dict(key)["queue"] for key in age} == queues
    assert set(up.values()) == {1.0}
    report = traffic["queues"]
    assert report["legacy"]["oldest_age_seconds"] >= 0
    assert set(report["celery"]["oldest_age_seconds"]) == queues - {"legacy", "dead_letter"}
    assert report["dead_letter"]["oldest_age_seconds"] >= 0


def test_the_gateway_exports_the_split_and_the_guard(samples):
    share = _values(samples["gateway"], "crucible_gateway_celery_share_ratio")
    mode = _values(samples["gateway"], "crucible_gateway_migration_mode")
    decisions = _values(samples["gateway"], "crucible_gateway_guard_decisions_total")

    assert share[frozenset({("role", "primary")})] == 0.5
    assert share[frozenset({("role", "shadow")})] == 1.0
    assert mode[frozenset({("mode", "shadow")})] == 1.0
    made = {
        (dict(key)["decision"], dict(key)["reason"]) for key, value in decisions.items() if value
    }

    # Too few runs for the guard to judge: every decision so far is inconclusive, and says why.
    assert made and {decision for decision, _ in made} == {"inconclusive"}
    assert {reason for _, reason in made} <= {"error_rate", "mismatch_rate", "p95_latency_ratio"}
    # Every bounded series exists from the start, at 0 until its first event.
    assert decisions[frozenset({("decision", "breach"), ("reason", "error_rate")})] == 0


def test_each_executor_reports_its_busy_and_total_slots(samples):
    for n in (1, 2, 3):
        executor = samples[f"executor-{n}"]
        busy = _values(executor, "crucible_executor_busy_slots")
        total = _values(executor, "crucible_executor_slots")
        assert set(busy) == set(total) == {frozenset({("executor_id", f"executor-{n}")})}
        assert 0 <= sum(busy.values()) <= sum(total.values())


# --- the dashboard and the alert rules --------------------------------------------------------

# A metric name in PromQL: an identifier followed by a selector, a range or an aggregation's end,
# and not a function, keyword or label name. Every Crucible metric starts with `crucible_`.
_NAME = re.compile(r"\b(crucible_[a-z0-9_]+|flower_[a-z0-9_]+|up)\b(?!\s*[=!~(])")


def dashboard_exprs() -> list[str]:
    def walk(panels: list[dict]) -> list[str]:
        found = []
        for panel in panels:
            found += [target["expr"] for target in panel.get("targets", []) if "expr" in target]
            found += walk(panel.get("panels", []))
        return found

    return walk(json.loads(DASHBOARD.read_text())["panels"])


def alert_exprs() -> list[str]:
    rules = yaml.safe_load(ALERTS.read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (label names and functions left out)."""
    without_labels = re.sub(r"\{[^}]*\}", "{}", expr)
    without_groupings = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", without_labels
    )
    return set(_NAME.findall(without_groupings))


def missing_metrics(exprs: list[str], exported: set[str]) -> dict[str, set[str]]:
    """Per expression, the names it uses that nobody exports (empty when all are)."""
    missing = {}
    for expr in exprs:
        names = metric_names(expr) - exported - PROMETHEUS_OWN
        if names:
            missing[expr] = names
    return missing


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'sum by (backend) (rate(crucible_run_end_to_end_seconds_count{status="error"}[5m]))',
            {"crucible_run_end_to_end_seconds_count"},
        ),
        ("max by (queue) (crucible_queue_depth)", {"crucible_queue_depth"}),
        ('up{job=~"gateway"} == 0', {"up"}),
        (
            "histogram_quantile(0.95, sum by (le) (rate(crucible_x_bucket[1m])))",
            {"crucible_x_bucket"},
        ),
    ],
)
def test_metric_names_are_read_from_promql(expr, names):
    assert metric_names(expr) == names


def test_a_panel_querying_a_metric_nobody_exports_is_caught():
    exprs = ["sum(rate(crucible_made_up_total[5m]))", "max(crucible_queue_depth)"]

    assert missing_metrics(exprs, {"crucible_queue_depth"}) == {
        "sum(rate(crucible_made_up_total[5m]))": {"crucible_made_up_total"}
    }


def test_every_metric_of_the_dashboard_and_the_alerts_is_exported(exported):
    exprs = dashboard_exprs() + alert_exprs()

    assert len(exprs) > 20
    assert missing_metrics(exprs, exported) == {}


def test_every_panel_query_is_promql_that_promtool_accepts(tmp_path):
    rules = []
    for n, expr in enumerate(dashboard_exprs()):
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        rules.append({"record": f"crucible:dashboard_panel_{n}", "expr": expr})
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))

    checked = promtool("check", "rules", str(path))

    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_promtool_accepts_the_alert_rules_and_the_configuration():
    rules = promtool("check", "rules", str(ALERTS))
    config = promtool("check", "config", str(PROMETHEUS_CONFIG))

    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert config.returncode == 0, config.stdout + config.stderr
    assert "1 rule files found" in config.stdout


def test_the_grafana_provisioning_names_the_dashboards_datasource():
    datasources = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    providers = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/dashboards/crucible.yml").read_text()
    )
    uids = {source["uid"] for source in datasources["datasources"]}
    dashboard = json.loads(DASHBOARD.read_text())

    used = {
        target["datasource"]["uid"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    }
    assert used == uids
    assert providers["providers"][0]["options"]["path"] == "/etc/grafana/dashboards"


def test_the_dashboard_panels_have_unique_ids_and_do_not_overlap():
    panels = json.loads(DASHBOARD.read_text())["panels"]
    cells = {}
    for panel in panels:
        grid = panel["gridPos"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]

    assert len({panel["id"] for panel in panels}) == len(panels)
