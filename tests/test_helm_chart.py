"""The Helm chart (deploy/helm/crucible): rendered by Helm's own engine, every manifest valid
against the Kubernetes schemas, and saying what the values ask and what the services read."""

from __future__ import annotations

import base64
import functools
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml
from helm_python import Chart, HelmRenderError
from helm_python import lint as helm_lint
from pydantic_settings import BaseSettings

from crucible_contracts.names import QUEUE_ORDER
from crucible_contracts.settings import ServerSettings
from crucible_executor.config import Settings as ExecutorSettings
from crucible_gateway.config import Settings as GatewaySettings
from crucible_queue.config import Settings as QueueSettings
from crucible_storage.config import Settings as StorageSettings
from crucible_worker.config import Settings as WorkerSettings

CHART = Path(__file__).resolve().parents[1] / "deploy" / "helm" / "crucible"
RELEASE = "prod"
NAMESPACE = "crucible"
PREFIX = f"{RELEASE}-crucible-"
# The oldest Kubernetes the chart declares (Chart.yaml kubeVersion): appArmorProfile is 1.30's.
KUBE_VERSION = "1.30.0"

SCENARIOS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "scale": yaml.safe_load((CHART / "ci" / "scale-values.yaml").read_text()),
    "keda": {
        "keda": {
            "enabled": True,
            "executors": {"maxReplicas": 9},
            "celery": {"redisAuthenticationRef": "broker-auth"},
        }
    },
    "external": {
        "postgresql": {"enabled": False},
        "externalDatabase": {"url": "postgresql+psycopg://crucible:pw@db.example:5432/crucible"},
        "redis": {
            "enabled": False,
            "external": {
                "stateUrl": "redis://state.example:6379/0",
                "brokerUrl": "redis://broker.example:6379/0",
            },
        },
        "flower": {"enabled": False},
    },
}

# Which Settings class reads each container's environment (services/*/src/*/config.py), and
# the names read outside it: FLOWER_BASIC_AUTH by crucible_worker.flower; POSTGRES_PASSWORD
# only feeds DATABASE_URL's $(POSTGRES_PASSWORD).
SETTINGS: dict[str, type[BaseSettings]] = {
    "gateway": GatewaySettings,
    "storage": StorageSettings,
    "queue-service": QueueSettings,
    "queue-worker": QueueSettings,
    "celery-worker": WorkerSettings,
    "beat": WorkerSettings,
    "flower": WorkerSettings,
    "executor": ExecutorSettings,
}
READ_ELSEWHERE = {"flower": {"FLOWER_BASIC_AUTH"}, "storage": {"POSTGRES_PASSWORD"}}

# What each component must be told, or it would fall back to a developer machine's default.
REQUIRED_ENV = {
    "gateway": {
        "CELERY_BROKER_URL",
        "REDIS_URL",
        "QUEUE_SERVICE_URL",
        "STORAGE_SERVICE_URL",
        "EXECUTOR_SERVICE_URL",
        "LEGACY_EXECUTOR_URL",
        "OPERATOR_TOKEN",
        "API_KEYS",
        "INTERNAL_API_KEY",
    },
    "storage": {"DATABASE_URL", "REDIS_URL", "INTERNAL_API_KEY"},
    "queue-service": {"INTERNAL_API_KEY"},
    "queue-worker": {
        "QUEUE_SERVICE_URL",
        "STORAGE_SERVICE_URL",
        "LEGACY_EXECUTOR_URL",
        "DEAD_LETTER_REDIS_URL",
        "QUEUE_WORKER_METRICS_PORT",
        "INTERNAL_API_KEY",
    },
    "celery-worker": {
        "CELERY_BROKER_URL",
        "STORAGE_SERVICE_URL",
        "EXECUTOR_SERVICE_URL",
        "CELERY_CONCURRENCY",
        "INTERNAL_API_KEY",
    },
    "beat": {"CELERY_BROKER_URL"},
    "flower": {"CELERY_BROKER_URL", "FLOWER_BASIC_AUTH"},
    "executor": {"EXECUTOR_ID", "EXECUTOR_SLOTS", "INTERNAL_API_KEY"},
}

# The executor's container capabilities (docs/deploy.md, "The executor's privileges").
EXECUTOR_CAPABILITIES = {"SYS_ADMIN", "SETUID", "SETGID", "CHOWN", "FOWNER", "DAC_OVERRIDE", "KILL"}

# The shape of KEDA's ScaledObject (keda.sh/v1alpha1), from the OpenAPI schema its CRD publishes
# (keda.sh_scaledobjects.yaml): kubernetes-validate knows only the built-in kinds.
SCALED_OBJECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "name": {"type": "string"},
                        "envSourceContainerName": {"type": "string"},
                    },
                },
                "pollingInterval": {"type": "integer", "minimum": 0},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "initialCooldownPeriod": {"type": "integer", "minimum": 0},
                "idleReplicaCount": {"type": "integer", "minimum": 0},
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "advanced": {"type": "object"},
                "fallback": {
                    "type": "object",
                    "required": ["failureThreshold", "replicas"],
                    "properties": {
                        "failureThreshold": {"type": "integer"},
                        "replicas": {"type": "integer"},
                    },
                },
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "additionalProperties": False,
                        "properties": {
                            "type": {"type": "string"},
                            "name": {"type": "string"},
                            "useCachedMetrics": {"type": "boolean"},
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                            "metadata": {
                                "type": "object",
                                "additionalProperties": {"type": "string"},
                            },
                            "authenticationRef": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "kind": {"type": "string"},
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


# --- rendering ------------------------------------------------------------------------------


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    """Every object the chart renders for `values`, as `helm template` would."""
    manifests = Chart.load(CHART).render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return [doc for _, text in sorted(manifests.items()) for doc in yaml.safe_load_all(text) if doc]


@functools.cache
def rendered(scenario: str) -> tuple[dict[str, Any], ...]:
    return tuple(render(SCENARIOS[scenario]))


def objects(docs: tuple[dict[str, Any], ...], kind: str) -> dict[str, dict[str, Any]]:
    """The objects of one kind by name, the release prefix cut off."""
    return {
        doc["metadata"]["name"].removeprefix(PREFIX): doc for doc in docs if doc["kind"] == kind
    }


def workloads(docs: tuple[dict[str, Any], ...]) -> dict[str, dict[str, Any]]:
    return objects(docs, "Deployment") | objects(docs, "StatefulSet")


def component(workload: dict[str, Any]) -> str:
    return workload["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]


def containers(docs: tuple[dict[str, Any], ...]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, workload in workloads(docs).items():
        for container in workload["spec"]["template"]["spec"]["containers"]:
            yield name, container


def crucible_containers(docs: tuple[dict[str, Any], ...]) -> Iterator[tuple[str, dict]]:
    """Containers running Crucible's own code, keyed by the SETTINGS entry that reads them."""
    for name, container in containers(docs):
        if name.startswith("executor-"):
            yield "executor", container
        elif name in SETTINGS:
            yield name, container


def secret_data(docs: tuple[dict[str, Any], ...]) -> dict[tuple[str, str], str]:
    return {
        (doc["metadata"]["name"], key): base64.b64decode(value).decode()
        for doc in docs
        if doc["kind"] == "Secret"
        for key, value in doc.get("data", {}).items()
    }


def resolved_env(
    docs: tuple[dict[str, Any], ...],
    container: dict[str, Any],
    pod_name: str,
    *,
    outside: str | None = None,
) -> dict[str, str]:
    """The container's environment as the kubelet makes it: secrets read from the rendered
    Secrets (or `outside` for a key of a Secret the chart does not render), the pod's name for
    metadata.name, $(VAR) expanded."""
    secrets = secret_data(docs)
    env: dict[str, str] = {}
    for entry in container.get("env", []):
        source = entry.get("valueFrom")
        if source is None:
            value = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], entry["value"])
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            value = secrets.get((ref["name"], ref["key"]), outside)
            assert value is not None, f"{ref} is not rendered"
        else:
            assert source["fieldRef"]["fieldPath"] == "metadata.name"
            value = pod_name
        env[entry["name"]] = value
    return env


def env_names(settings: type[BaseSettings]) -> set[str]:
    """The environment names a pydantic-settings class reads."""
    names = set()
    for name, field in settings.model_fields.items():
        alias = field.validation_alias
        names.add((alias if isinstance(alias, str) else name).upper())
    return names


def env_value(container: dict[str, Any], name: str) -> str:
    return next(entry["value"] for entry in container["env"] if entry["name"] == name)


# --- validity -------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_rendered_manifest_is_valid_against_the_kubernetes_schemas(scenario):
    docs = rendered(scenario)
    assert len(docs) > 20
    for doc in docs:
        if doc["apiVersion"] == "keda.sh/v1alpha1":
            jsonschema.validate(doc, SCALED_OBJECT_SCHEMA)
        else:
            # Strict: an unknown field (a typo) is an error too.
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


def test_the_validation_catches_an_invalid_manifest():
    """The checks above can fail: a misspelt field and a wrong type are refused."""
    deployment = objects(rendered("defaults"), "Deployment")["gateway"]
    typo = yaml.safe_load(yaml.safe_dump(deployment))
    typo["spec"]["replica"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, KUBE_VERSION, strict=True)
    scaled = objects(rendered("keda"), "ScaledObject")["celery-worker"]
    wrong = yaml.safe_load(yaml.safe_dump(scaled))
    wrong["spec"]["triggers"][0]["metadata"]["listLength"] = 12
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(wrong, SCALED_OBJECT_SCHEMA)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"postgresql": {"enabled": False}}, "externalDatabase.url"),
        ({"redis": {"enabled": False}}, "redis.external"),
    ],
    ids=["no-database", "no-redis"],
)
def test_values_missing_a_required_url_refuse_to_render(values, message):
    with pytest.raises(HelmRenderError, match=re.escape(message)):
        render(values)


# --- what the values ask --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        (
            "defaults",
            {"gateway": 2, "celery-worker": 2, "executor-celery": 2, "executor-legacy": 1},
        ),
        ("scale", {"gateway": 3, "celery-worker": 4, "executor-celery": 6, "executor-legacy": 2}),
    ],
)
def test_replicas_are_those_the_values_ask(scenario, expected):
    found = {name: w["spec"]["replicas"] for name, w in workloads(rendered(scenario)).items()}
    assert {name: found[name] for name in expected} == expected
    # One deque, one beat: never more, whatever the values say.
    assert found["queue-service"] == 1
    assert objects(rendered(scenario), "Deployment")["queue-service"]["spec"]["strategy"] == {
        "type": "Recreate"
    }


def test_beat_is_off_by_default_and_exactly_one_when_on():
    assert "beat" not in workloads(rendered("defaults"))
    beat = objects(rendered("scale"), "Deployment")["beat"]
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_selector_matches_the_labels_of_the_pods_it_means(scenario):
    docs = rendered(scenario)
    pods = {
        name: w["spec"]["template"]["metadata"]["labels"] for name, w in workloads(docs).items()
    }

    def matched(selector: dict[str, str]) -> set[str]:
        return {
            name
            for name, labels in pods.items()
            if all(labels.get(k) == v for k, v in selector.items())
        }

    for name, workload in workloads(docs).items():
        assert matched(workload["spec"]["selector"]["matchLabels"]) == {name}
    for name, service in objects(docs, "Service").items():
        assert matched(service["spec"]["selector"]) == {name}, name
    for name, budget in objects(docs, "PodDisruptionBudget").items():
        assert matched(budget["spec"]["selector"]["matchLabels"]) == {name}
    for name, policy in objects(docs, "NetworkPolicy").items():
        assert matched(policy["spec"]["podSelector"]["matchLabels"]) == {name}
    for name, workload in objects(docs, "StatefulSet").items():
        assert objects(docs, "Service")[name]["metadata"]["name"] == workload["spec"]["serviceName"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_container_has_probes_and_resources(scenario):
    for name, container in containers(rendered(scenario)):
        assert container.get("readinessProbe"), name
        assert container.get("livenessProbe"), name
        resources = container["resources"]
        assert resources["requests"]["cpu"] and resources["requests"]["memory"], name
        assert resources["limits"]["memory"], name


def test_http_services_are_probed_on_their_health_endpoints():
    docs = rendered("defaults")
    deployments = workloads(docs)
    for name in ("gateway", "queue-service", "executor-celery", "executor-legacy"):
        container = deployments[name]["spec"]["template"]["spec"]["containers"][0]
        assert container["readinessProbe"]["httpGet"]["path"] == "/health"
        assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    storage = deployments["storage"]["spec"]["template"]["spec"]["containers"][0]
    # Storage's /health fails while the database is down: not ready, but not restarted.
    assert storage["readinessProbe"]["httpGet"]["path"] == "/health"
    assert storage["livenessProbe"]["httpGet"]["path"] == "/metrics"
    flower = deployments["flower"]["spec"]["template"]["spec"]["containers"][0]
    assert flower["readinessProbe"]["httpGet"]["path"] == "/healthcheck"
    worker = deployments["celery-worker"]["spec"]["template"]["spec"]["containers"][0]
    assert "inspect ping" in " ".join(worker["livenessProbe"]["exec"]["command"])
    legacy = deployments["queue-worker"]["spec"]["template"]["spec"]["containers"][0]
    assert legacy["livenessProbe"]["exec"]["command"][-1] == "crucible_queue.healthcheck"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_no_container_is_privileged_and_only_the_executors_add_capabilities(scenario):
    for name, container in containers(rendered(scenario)):
        context = container["securityContext"]
        assert context.get("privileged", False) is False, name
        assert context["capabilities"]["drop"] == ["ALL"], name
        assert context["seccompProfile"]["type"] in ("RuntimeDefault", "Localhost"), name
        if name.startswith("executor-"):
            assert set(context["capabilities"]["add"]) == EXECUTOR_CAPABILITIES
            assert context["runAsUser"] == 0
            # The API server refuses allowPrivilegeEscalation=false beside CAP_SYS_ADMIN.
            assert context["allowPrivilegeEscalation"] is True
        else:
            assert "add" not in context["capabilities"], name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["runAsNonRoot"] is True and context["runAsUser"] > 0, name


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_no_pod_mounts_a_service_account_token(scenario):
    docs = rendered(scenario)
    for account in objects(docs, "ServiceAccount").values():
        assert account["automountServiceAccountToken"] is False
    for name, workload in workloads(docs).items():
        assert workload["spec"]["template"]["spec"]["automountServiceAccountToken"] is False, name


# --- the services' own configuration --------------------------------------------------------


def unread_env(docs: tuple[dict[str, Any], ...]) -> dict[str, set[str]]:
    """Per service, the names it is given that its code does not read."""
    unread: dict[str, set[str]] = {}
    for service, container in crucible_containers(docs):
        readable = (
            env_names(SETTINGS[service])
            | env_names(ServerSettings)
            | READ_ELSEWHERE.get(service, set())
        )
        names = {entry["name"] for entry in container["env"]}
        if names - readable:
            unread.setdefault(service, set()).update(names - readable)
    return unread


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_environment_name_is_one_its_service_reads(scenario):
    docs = rendered(scenario)
    assert unread_env(docs) == {}
    for service, container in crucible_containers(docs):
        names = {entry["name"] for entry in container["env"]}
        assert REQUIRED_ENV[service] <= names, f"{service} lacks {REQUIRED_ENV[service] - names}"


def test_an_extra_variable_reaches_its_service_and_a_misspelt_one_is_caught():
    docs = tuple(
        render(
            {
                "executors": {"env": {"MEMORY_MB": 128}},
                "gateway": {"env": {"RATE_LIMIT_PER_SECONDS": 10}},
            }
        )
    )
    executor = objects(docs, "StatefulSet")["executor-celery"]["spec"]["template"]["spec"]
    assert env_value(executor["containers"][0], "MEMORY_MB") == "128"
    assert unread_env(docs) == {"gateway": {"RATE_LIMIT_PER_SECONDS"}}


@pytest.mark.parametrize("scenario", ["defaults", "external"])
def test_each_service_accepts_its_rendered_environment_in_production(scenario, monkeypatch):
    """Each Settings class, fed the environment the kubelet would give, starts (production
    refuses short or well-known secrets) and points at the release's services."""
    docs = rendered(scenario)
    workload_of = {}
    for name, workload in workloads(docs).items():
        for container in workload["spec"]["template"]["spec"]["containers"]:
            workload_of[id(container)] = name
    for service, container in crucible_containers(docs):
        env = resolved_env(docs, container, f"{PREFIX}{workload_of[id(container)]}-0")
        with monkeypatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            settings = SETTINGS[service]()
        assert settings.environment == "production"
        assert len(settings.internal_api_key) >= 32
        assert "127.0.0.1" not in " ".join(env.values()), service
    gateway = next(c for s, c in crucible_containers(docs) if s == "gateway")
    env = resolved_env(docs, gateway, f"{PREFIX}gateway-0")
    with monkeypatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        settings = GatewaySettings()
    assert settings.keys_required
    assert len(settings.operator_tokens) == 1


def test_secrets_come_from_an_existing_secret_when_named():
    docs = rendered("scale")
    names = {doc["metadata"]["name"] for doc in docs if doc["kind"] == "Secret"}
    assert names == set()
    refs = {
        entry["valueFrom"]["secretKeyRef"]["name"]
        for _, container in containers(docs)
        for entry in container.get("env", [])
        if "secretKeyRef" in entry.get("valueFrom", {})
    }
    assert refs == {"crucible-secrets", "crucible-database"}


def test_secrets_given_in_values_are_used_and_missing_ones_generated():
    given = "given-internal-key-0123456789"
    docs = render({"secrets": {"internalApiKey": given, "apiKeys": "acme:k" * 1}})
    data = secret_data(tuple(docs))
    assert data[(f"{PREFIX}secrets", "INTERNAL_API_KEY")] == given
    assert data[(f"{PREFIX}secrets", "API_KEYS")] == "acme:k"
    operator, _, token = data[(f"{PREFIX}secrets", "OPERATOR_TOKEN")].partition(":")
    assert operator == "operator" and re.fullmatch(r"[A-Za-z0-9]{32}", token)
    other = secret_data(tuple(render({})))
    assert other[(f"{PREFIX}secrets", "INTERNAL_API_KEY")] != given


def test_a_short_api_key_given_in_values_is_refused_by_the_gateway(monkeypatch):
    """The chart passes a weak key on as given; the gateway refuses to start with it in
    production rather than run with it."""
    docs = tuple(render({"secrets": {"apiKeys": "acme:short"}}))
    gateway = next(c for s, c in crucible_containers(docs) if s == "gateway")
    for name, value in resolved_env(docs, gateway, f"{PREFIX}gateway-0").items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match="API_KEYS"):
        GatewaySettings()


# --- executors and who reaches them ---------------------------------------------------------


def executor_hosts(urls: str) -> list[str]:
    return [urlsplit(url).hostname for url in urls.split(",")]


@pytest.mark.parametrize(
    ("scenario", "celery", "legacy"), [("defaults", 2, 1), ("scale", 6, 2), ("keda", 9, 1)]
)
def test_consumers_name_every_executor_pod_by_its_stable_name(scenario, celery, legacy):
    docs = rendered(scenario)
    deployments = objects(docs, "Deployment")
    services = objects(docs, "Service")

    def worker_env(name: str, var: str) -> str:
        return env_value(deployments[name]["spec"]["template"]["spec"]["containers"][0], var)

    for pool, count, consumer, var in (
        ("celery", celery, "celery-worker", "EXECUTOR_SERVICE_URL"),
        ("legacy", legacy, "queue-worker", "LEGACY_EXECUTOR_URL"),
    ):
        headless = f"{PREFIX}executor-{pool}"
        assert services[f"executor-{pool}"]["spec"]["clusterIP"] == "None"
        expected = [f"{headless}-{i}.{headless}.{NAMESPACE}.svc" for i in range(count)]
        assert executor_hosts(worker_env(consumer, var)) == expected
        # The gateway kills programs wherever they run: it names the same pods.
        assert executor_hosts(worker_env("gateway", var)) == expected


def test_executor_pods_are_named_for_their_id_and_keda_owns_the_scaled_replicas():
    docs = rendered("keda")
    executor = objects(docs, "StatefulSet")["executor-celery"]
    container = executor["spec"]["template"]["spec"]["containers"][0]
    ids = [e for e in container["env"] if e["name"] == "EXECUTOR_ID"]
    assert ids == [
        {"name": "EXECUTOR_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
    ]
    # KEDA sets the replicas of what it scales; the chart leaves them alone.
    assert "replicas" not in executor["spec"]
    assert "replicas" not in objects(docs, "Deployment")["celery-worker"]["spec"]
    assert objects(docs, "StatefulSet")["executor-legacy"]["spec"]["replicas"] == 1


# --- network policies -----------------------------------------------------------------------


def callers(docs: tuple[dict[str, Any], ...]) -> dict[str, set[str]]:
    """Component -> the components whose environment names one of its Services: who must be
    let in, read from the URLs the chart hands out."""
    services = objects(docs, "Service")
    host_to_component = {
        f"{PREFIX}{name}": service["spec"]["selector"]["app.kubernetes.io/component"]
        for name, service in services.items()
    }
    needed: dict[str, set[str]] = {}
    for name, workload in workloads(docs).items():
        for container in workload["spec"]["template"]["spec"]["containers"]:
            env = resolved_env(docs, container, f"{PREFIX}{name}-0", outside="")
            for value in env.values():
                for url in value.split(","):
                    if "://" not in url:
                        continue
                    host = urlsplit(url).hostname or ""
                    # <pod>.<headless service>.<namespace>.svc names a StatefulSet pod.
                    parts = host.split(".")
                    target = host_to_component.get(parts[1] if len(parts) > 2 else host)
                    if target:
                        needed.setdefault(target, set()).add(component(workload))
    return needed


def allowed_pods(policy: dict[str, Any]) -> set[str]:
    return {
        peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        for rule in policy["spec"].get("ingress", [])
        for peer in rule.get("from", [])
        if "podSelector" in peer
    }


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_network_policies_let_in_exactly_the_callers_each_service_has(scenario):
    docs = rendered(scenario)
    policies = objects(docs, "NetworkPolicy")
    # Every pod of the release is under a policy: nothing is open by omission.
    assert set(policies) == set(workloads(docs))
    needed = callers(docs)
    for name, policy in policies.items():
        if name == "gateway":
            assert policy["spec"]["ingress"] == [{"ports": [{"port": "http"}]}]
            continue
        assert allowed_pods(policy) == needed.get(name, set()), name


def test_the_expected_peers_of_the_sensitive_services():
    policies = objects(rendered("defaults"), "NetworkPolicy")
    assert allowed_pods(policies["storage"]) == {"gateway", "queue-worker", "celery-worker"}
    assert allowed_pods(policies["executor-celery"]) == {"gateway", "celery-worker"}
    assert allowed_pods(policies["executor-legacy"]) == {"gateway", "queue-worker"}
    assert allowed_pods(policies["redis-state"]) == {"gateway", "storage"}
    assert allowed_pods(policies["postgresql"]) == {"storage"}
    assert allowed_pods(policies["celery-worker"]) == set()
    for pool in ("executor-celery", "executor-legacy"):
        assert policies[pool]["spec"]["policyTypes"] == ["Ingress", "Egress"]
        assert policies[pool]["spec"]["egress"] == []


def test_keda_may_read_the_broker_only_when_it_scales():
    def namespaces(scenario: str) -> list[dict]:
        policy = objects(rendered(scenario), "NetworkPolicy")["redis-broker"]
        return [
            peer
            for rule in policy["spec"]["ingress"]
            for peer in rule["from"]
            if "namespaceSelector" in peer
        ]

    assert namespaces("defaults") == []
    assert namespaces("keda") == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda"}}}
    ]


# --- autoscaling ----------------------------------------------------------------------------


def test_keda_is_off_by_default():
    assert objects(rendered("defaults"), "ScaledObject") == {}


def test_celery_workers_scale_on_every_celery_queue_and_the_oldest_message():
    docs = rendered("keda")
    scaled = objects(docs, "ScaledObject")["celery-worker"]
    assert scaled["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": f"{PREFIX}celery-worker",
    }
    triggers = scaled["spec"]["triggers"]
    lists = [t["metadata"]["listName"] for t in triggers if t["type"] == "redis"]
    assert lists == [queue.value for queue in QUEUE_ORDER]
    assert {t["metadata"]["address"] for t in triggers if t["type"] == "redis"} == {
        f"{PREFIX}redis-broker:6379"
    }
    (age,) = [t for t in triggers if t["type"] == "prometheus"]
    assert age["metadata"]["query"] == (
        'max(crucible_queue_oldest_age_seconds{queue=~"high|default|low|shadow"})'
    )
    # The worker consumes the same queues, in the same order.
    worker = objects(docs, "Deployment")["celery-worker"]["spec"]["template"]["spec"]
    command = worker["containers"][0]["command"][-1]
    assert f"-Q {','.join(q.value for q in QUEUE_ORDER)} " in command


def test_metric_names_and_targets_are_values():
    docs = tuple(
        render(
            {
                "keda": {
                    "enabled": True,
                    "celery": {"oldestAgeMetric": "my_age", "oldestAgeSeconds": 30},
                    "executors": {"busySlotsMetric": "my_busy", "targetUtilization": 0.5},
                },
                "executors": {"slots": 4},
            }
        )
    )
    scaled = objects(docs, "ScaledObject")
    (age,) = [t for t in scaled["celery-worker"]["spec"]["triggers"] if t["type"] == "prometheus"]
    assert age["metadata"]["query"].startswith("max(my_age{")
    assert age["metadata"]["threshold"] == "30"
    (busy,) = scaled["executor-celery"]["spec"]["triggers"]
    assert (
        busy["metadata"]["query"]
        == f'sum(my_busy{{executor_id=~"{PREFIX}executor-celery-[0-9]+"}})'
    )
    # Pods wanted = busy slots / (4 slots x 0.5).
    assert float(busy["metadata"]["threshold"]) == 2.0
    assert scaled["executor-celery"]["spec"]["scaleTargetRef"]["kind"] == "StatefulSet"


def test_prometheus_may_scrape_every_component_it_is_pointed_at():
    docs = rendered("defaults")
    policies = objects(docs, "NetworkPolicy")
    scraped = set()
    for name, workload in workloads(docs).items():
        annotations = workload["spec"]["template"]["metadata"].get("annotations", {})
        if annotations.get("prometheus.io/scrape") != "true":
            continue
        scraped.add(name)
        port = int(annotations["prometheus.io/port"])
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        (named,) = [p["name"] for p in container["ports"] if p["containerPort"] == port]
        ingress = policies[name]["spec"]["ingress"]
        monitoring = {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
        }
        assert any(
            rule["ports"] == [{"port": named}] and monitoring in rule.get("from", [monitoring])
            for rule in ingress
        ), name
    assert scraped == {
        "gateway",
        "storage",
        "queue-service",
        "queue-worker",
        "executor-celery",
        "executor-legacy",
    }


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_helm_lint_finds_nothing_to_warn_about(scenario):
    report = helm_lint(CHART, SCENARIOS[scenario], strict=True, kube_version=f"v{KUBE_VERSION}")
    assert report["errors"] == []
    # Severity 1 is information ("icon is recommended"); 2 and 3 are warnings and errors.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_one_image_may_have_its_own_tag():
    docs = tuple(
        render({"image": {"registry": "r.example/c/", "tag": "2.0", "tags": {"storage": "2.1"}}})
    )
    images = {name: container["image"] for name, container in containers(docs)}
    assert images["storage"] == "r.example/c/crucible-storage:2.1"
    assert images["gateway"] == "r.example/c/crucible-gateway:2.0"
    assert images["executor-celery"] == "r.example/c/crucible-executor:2.0"
    assert images["beat" if "beat" in images else "flower"] == "r.example/c/crucible-worker:2.0"


def test_beats_probe_passes_while_the_broker_answers_and_fails_when_it_is_gone(redis_server):
    """Beat has no port: its probe pings the broker it sends to. Run as rendered, against a
    real Redis, then against the same Redis stopped."""
    beat = objects(rendered("scale"), "Deployment")["beat"]["spec"]["template"]["spec"]
    probe = beat["containers"][0]["livenessProbe"]["exec"]["command"]
    assert probe[0] == "python"
    command = [sys.executable, *probe[1:]]
    env = {**os.environ, "CELERY_BROKER_URL": redis_server.url}
    assert subprocess.run(command, env=env, capture_output=True, timeout=30).returncode == 0
    redis_server.stop()
    failed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)
    assert failed.returncode != 0
    assert "ConnectionError" in failed.stderr
