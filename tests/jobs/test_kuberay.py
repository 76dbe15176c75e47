"""jobs/kuberay-rayjob.yaml: a RayJob valid against a pinned KubeRay CRD schema, wired to ray-bench.

The RayJob is checked offline against the ``openAPIV3Schema`` of the RayJob CRD of KubeRay
:data:`KUBERAY_VERSION` (vendored in tests/jobs/kuberay/, see its README.md), the way the API
server would: jsonschema for types, enums, patterns and required fields, plus
:func:`structural_problems` for what jsonschema does not do with a Kubernetes schema (unknown
fields, int32 ranges, duplicate keys of map-lists). CEL rules (``x-kubernetes-validations``) and
the operator's own checks are not evaluated; the few that matter here are asserted directly.
"""

import copy
import json
import re
import shlex
from pathlib import Path, PurePosixPath

import pytest
import yaml

from ray_bench.config import RunConfig, build_config

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "jobs" / "kuberay-rayjob.yaml"
KUBERAY_VERSION = "v1.7.0"
SCHEMA_PATH = Path(__file__).resolve().parent / "kuberay" / f"rayjob-crd-{KUBERAY_VERSION}.json"

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)


# --- The strictness jsonschema lacks on a Kubernetes structural schema ----------------------------

def structural_problems(value, schema: dict, path: str = "") -> list[str]:
    """What the API server refuses (or silently prunes) in ``value`` that jsonschema lets through.

    * a key not in ``properties`` of an object schema (the CRD schemas have no
      ``additionalProperties: false``: Kubernetes prunes unknown fields, or rejects them under
      strict field validation, instead), unless the node sets ``x-kubernetes-preserve-unknown-fields``;
    * integers outside their ``int32`` / ``int64`` format;
    * two items with the same keys in an ``x-kubernetes-list-type: map`` list (``set``: equal items).

    Maps (``additionalProperties``) and arrays (``items``) are walked into. An object schema with
    neither ``properties`` nor ``additionalProperties`` (only the root ``metadata``, which the
    API server checks as ObjectMeta itself) is not looked into.
    """
    problems: list[str] = []
    where = path or "(root)"
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return problems
    if isinstance(value, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            sub = f"{path}.{key}" if path else str(key)
            if props is not None:
                if key in props:
                    problems += structural_problems(item, props[key], sub)
                else:
                    problems.append(f"{sub}: unknown field")
            elif isinstance(extra, dict):
                problems += structural_problems(item, extra, sub)
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(value):
                problems += structural_problems(item, items, f"{path}[{i}]")
        kind = schema.get("x-kubernetes-list-type")
        if kind == "map":
            keys = schema.get("x-kubernetes-list-map-keys") or []
            seen = [tuple(item.get(k) for k in keys) for item in value if isinstance(item, dict)]
            dupes = sorted({repr(s) for s in seen if seen.count(s) > 1})
            problems += [f"{where}: duplicate {'/'.join(keys)} {d}" for d in dupes]
        elif kind == "set":
            seen = [json.dumps(item, sort_keys=True) for item in value]
            problems += [f"{where}: duplicate item {d}" for d in sorted({s for s in seen if seen.count(s) > 1})]
    elif isinstance(value, int) and not isinstance(value, bool):
        bounds = {"int32": INT32, "int64": INT64}.get(schema.get("format"))
        if bounds and not bounds[0] <= value <= bounds[1]:
            problems.append(f"{where}: {value} is out of the {schema['format']} range")
    return problems


def schema_problems(obj: dict, schema: dict) -> list[str]:
    """jsonschema's errors (``path: message``) and :func:`structural_problems`, sorted."""
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft7Validator(schema)  # no format checker: "int32", "int-or-string", ...
    found = [
        f"{'.'.join(str(p) for p in err.absolute_path) or '(root)'}: {err.message}"
        for err in validator.iter_errors(obj)
    ]
    return sorted(found + structural_problems(obj, schema))


# --- The manifest ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


@pytest.fixture(scope="module")
def docs() -> list[dict]:
    loaded = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d is not None]
    assert all(isinstance(d, dict) for d in loaded)
    return loaded


def _only(docs: list[dict], kind: str) -> dict:
    found = [d for d in docs if d.get("kind") == kind]
    assert len(found) == 1, f"expected one {kind} in {MANIFEST.name}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def rayjob(docs) -> dict:
    return _only(docs, "RayJob")


def _cluster(rayjob: dict) -> dict:
    return rayjob["spec"]["rayClusterSpec"]


def _head_pod(rayjob: dict) -> dict:
    return _cluster(rayjob)["headGroupSpec"]["template"]["spec"]


def _worker_pods(rayjob: dict) -> list[tuple[str, dict]]:
    return [(g["groupName"], g["template"]["spec"]) for g in _cluster(rayjob)["workerGroupSpecs"]]


def _ray_container(pod: dict) -> dict:
    return pod["containers"][0]  # KubeRay runs Ray in the first container


def _mounts(pod: dict) -> list[tuple[dict, dict]]:
    """``(volumeMount, volume)`` pairs of a pod's Ray container."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    return [(m, volumes[m["name"]]) for m in _ray_container(pod).get("volumeMounts", [])]


def _claim_mounts(pod: dict, claim: str) -> list[dict]:
    return [m for m, v in _mounts(pod) if v.get("persistentVolumeClaim", {}).get("claimName") == claim]


def _under(path, mount_path: str) -> bool:
    return PurePosixPath(mount_path) in (PurePosixPath(path), *PurePosixPath(path).parents)


def _run_config_text(docs, rayjob) -> tuple[str, str]:
    """The entrypoint's ``--config`` path and that file's text, found through the head's mounts."""
    argv = shlex.split(rayjob["spec"]["entrypoint"])
    config_path = PurePosixPath(argv[argv.index("--config") + 1])
    configmaps = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "ConfigMap"}
    for mount, volume in _mounts(_head_pod(rayjob)):
        if "configMap" not in volume or not _under(config_path, mount["mountPath"]):
            continue
        rel = str(config_path.relative_to(mount["mountPath"]))
        source = volume["configMap"]
        data = configmaps[source["name"]]["data"]  # a ConfigMap this manifest defines
        items = source.get("items")
        key = next((i["key"] for i in items if i["path"] == rel), None) if items else rel
        assert key in data, f"{config_path}: no key for {rel!r} in ConfigMap {source['name']}"
        return str(config_path), data[key]
    raise AssertionError(f"--config {config_path} is not inside a ConfigMap mounted on the head pod")


def test_manifest_holds_the_pvcs_the_run_config_and_the_rayjob(docs):
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["ConfigMap", "PersistentVolumeClaim", "PersistentVolumeClaim", "RayJob"]
    assert all(d["apiVersion"] == ("ray.io/v1" if d["kind"] == "RayJob" else "v1") for d in docs)
    names = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(set(names)) == len(names)
    # The token is made with kubectl, never shipped in the repository.
    assert "Secret" not in kinds


def test_rayjob_passes_the_pinned_kuberay_crd_schema(rayjob, schema):
    assert schema_problems(rayjob, schema) == []
    # KubeRay's metadata check: a DNS-1035 label of at most 47 characters (53 minus the suffix).
    name = rayjob["metadata"]["name"]
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 47


def test_rayjob_lifecycle(rayjob):
    spec = rayjob["spec"]
    assert spec["submissionMode"] == "K8sJobMode"
    # ttlSecondsAfterFinished only acts with shutdownAfterJobFinishes (KubeRay refuses it otherwise).
    assert spec["shutdownAfterJobFinishes"] is True and spec["ttlSecondsAfterFinished"] > 0
    assert spec["activeDeadlineSeconds"] > 0 and spec.get("backoffLimit", 0) >= 0
    assert "clusterSelector" not in spec  # the job brings up (and deletes) its own cluster


def test_entrypoint_runs_ray_bench_with_a_mounted_config(docs, rayjob):
    argv = shlex.split(rayjob["spec"]["entrypoint"])
    assert argv[:3] == ["ray-bench", "run", "--config"] and "--quiet" in argv
    path, text = _run_config_text(docs, rayjob)
    assert path == argv[3] and text.strip()


def test_run_config_validates_and_writes_to_the_results_pvc(docs, rayjob):
    _, text = _run_config_text(docs, rayjob)
    config = build_config(RunConfig, yaml.safe_load(text), "kuberay-rayjob.yaml ConfigMap run.yaml")
    assert config.resources.device == "gpu"  # the cluster starts with no GPU worker
    assert config.ray_address is None  # the driver joins the job's cluster (RAY_ADDRESS)
    head = _head_pod(rayjob)
    pvcs = [d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"]
    # out_dir: on a PVC the driver (head) mounts writable; data_dir: on a PVC the head mounts.
    writable = [m for c in pvcs for m in _claim_mounts(head, c) if not m.get("readOnly")]
    assert any(_under(config.out_dir, m["mountPath"]) for m in writable), config.out_dir
    readable = [m for c in pvcs for m in _claim_mounts(head, c)]
    assert any(_under(config.data_dir, m["mountPath"]) for m in readable), config.data_dir
    # Local checkpoints must be readable by the GPU actors: on a PVC every worker mounts.
    for model in config.models:
        if model.path.startswith(("/", ".", "~")):
            for group, pod in _worker_pods(rayjob):
                mounts = [m for c in pvcs for m in _claim_mounts(pod, c)]
                assert any(_under(model.path, m["mountPath"]) for m in mounts), (group, model.path)


def test_gpu_worker_group_autoscales_from_zero(rayjob):
    cluster = _cluster(rayjob)
    assert cluster["enableInTreeAutoscaling"] is True
    gpu_groups = []
    for group in cluster["workerGroupSpecs"]:
        resources = _ray_container(group["template"]["spec"])["resources"]
        gpus = resources.get("limits", {}).get("nvidia.com/gpu")
        if gpus is None:
            continue
        assert int(gpus) >= 1
        # Extended resources: a request, if given, must equal the limit.
        assert str(resources.get("requests", {}).get("nvidia.com/gpu", gpus)) == str(gpus)
        assert group["minReplicas"] == 0 and group["maxReplicas"] >= 1
        assert group.get("replicas", 0) <= group["maxReplicas"]
        gpu_groups.append(group["groupName"])
    assert gpu_groups, "no worker group requests nvidia.com/gpu"
    head = _ray_container(_head_pod(rayjob))
    assert "nvidia.com/gpu" not in head["resources"].get("limits", {})  # a CPU head
    assert cluster["headGroupSpec"]["rayStartParams"].get("num-cpus") == "0"  # no model actor there


def test_pvcs_are_mounted_on_the_head_and_every_worker(docs, rayjob):
    pvcs = [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
    assert pvcs
    pods = [("head", _head_pod(rayjob)), *_worker_pods(rayjob)]
    for pvc in pvcs:
        assert "ReadWriteMany" in pvc["spec"]["accessModes"]  # pods on several nodes mount it at once
        assert pvc["spec"]["resources"]["requests"]["storage"]
        for group, pod in pods:
            mounts = _claim_mounts(pod, pvc["metadata"]["name"])
            assert len(mounts) == 1, (group, pvc["metadata"]["name"])
    # The same mount paths everywhere, so a path in the run config means one file on every pod.
    paths = {g: sorted((m["name"], m["mountPath"]) for m, v in _mounts(p) if "persistentVolumeClaim" in v)
             for g, p in pods}
    assert len({tuple(v) for v in paths.values()}) == 1, paths


def test_token_auth_uses_kuberays_auth_options(rayjob):
    cluster = _cluster(rayjob)
    auth = cluster["authOptions"]
    assert auth["mode"] == "token" and auth["secretName"]
    assert not auth.get("enableK8sTokenAuth")  # unsupported for RayJob in KubeRay v1.7
    # KubeRay needs rayVersion >= 2.52 for token auth; it must be the Ray this project pins.
    pin = re.search(r'"ray\[[^\]]*\]==([0-9.]+)"', (ROOT / "pyproject.toml").read_text())
    assert pin and cluster["rayVersion"] == pin.group(1)
    assert tuple(int(x) for x in cluster["rayVersion"].split(".")[:2]) >= (2, 52)
    pods = [("head", _head_pod(rayjob)), *_worker_pods(rayjob)]
    images = {_ray_container(p)["image"] for _, p in pods}
    assert len(images) == 1  # one Ray and Python version on every pod
    for group, pod in pods:
        for container in pod["containers"]:
            for env in container.get("env", []):
                # KubeRay does not override an env var the pod already sets: none may weaken auth.
                if env["name"] == "RAY_AUTH_MODE":
                    assert env.get("value", "").lower() == "token", group
                if env["name"] == "RAY_AUTH_TOKEN":
                    assert "value" not in env, f"{group}: a literal token in the manifest"


# --- The checks catch mistakes --------------------------------------------------------------------

def _set(obj: dict, path: list, value) -> None:
    for key in path[:-1]:
        obj = obj[key]
    obj[path[-1]] = value


HEAD = ["spec", "rayClusterSpec", "headGroupSpec", "template", "spec", "containers", 0]
WORKER = ["spec", "rayClusterSpec", "workerGroupSpecs", 0]


def _rename(path: list, new: str):
    def edit(job):
        parent = job
        for key in path[:-1]:
            parent = parent[key]
        parent[new] = parent.pop(path[-1])
    return edit


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (_rename(["spec", "entrypoint"], "entrypont"), "spec.entrypont: unknown field"),
        (_rename([*HEAD, "volumeMounts"], "volumeMount"),
         "spec.rayClusterSpec.headGroupSpec.template.spec.containers[0].volumeMount: unknown field"),
        (_rename([*WORKER, "maxReplicas"], "maxReplica"), "'maxReplicas' is a required property"),
        (lambda j: _set(j, ["spec", "shutdownAfterJobFinishes"], "yes"),
         "spec.shutdownAfterJobFinishes: 'yes' is not of type 'boolean'"),
        (lambda j: _set(j, ["spec", "rayClusterSpec", "authOptions", "mode"], "tokens"),
         "spec.rayClusterSpec.authOptions.mode: 'tokens' is not one of ['disabled', 'token']"),
        (lambda j: _set(j, [*WORKER, "template", "spec", "containers", 0, "resources", "limits", "nvidia.com/gpu"],
                        "one"),
         "nvidia.com/gpu: 'one' does not match"),
        (lambda j: _set(j, ["spec", "activeDeadlineSeconds"], 2**31), "spec.activeDeadlineSeconds: 2147483648 is out"),
        (lambda j: j["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["env"].append(
            {"name": "RAY_USAGE_STATS_ENABLED", "value": "1"}), "duplicate name ('RAY_USAGE_STATS_ENABLED',)"),
    ],
    ids=["typo-entrypoint", "typo-deep", "missing-required", "wrong-type", "bad-enum", "bad-quantity",
         "int32-range", "duplicate-env"],
)
def test_schema_check_refuses_broken_rayjobs(rayjob, schema, edit, expected):
    bad = copy.deepcopy(rayjob)
    edit(bad)
    problems = schema_problems(bad, schema)
    assert any(expected in p for p in problems), problems


def test_jsonschema_alone_would_miss_the_typo(rayjob, schema):
    # Why structural_problems exists: the CRD schema does not forbid unknown keys.
    jsonschema = pytest.importorskip("jsonschema")
    bad = copy.deepcopy(rayjob)
    _rename(["spec", "entrypoint"], "entrypont")(bad)
    assert list(jsonschema.Draft7Validator(schema).iter_errors(bad)) == []
    assert structural_problems(bad, schema) == ["spec.entrypont: unknown field"]


def test_structural_checker_on_a_hand_made_schema():
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "count": {"type": "integer", "format": "int32"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "opaque": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "items": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
                "items": {"type": "object", "properties": {"name": {"type": "string"},
                                                           "nested": {"type": "object",
                                                                      "properties": {"a": {"type": "integer"}}}}},
            },
            "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            "groups": {"type": "object", "additionalProperties": {"type": "object",
                                                                  "properties": {"size": {"type": "integer"}}}},
        },
    }
    good = {"name": "x", "count": 3, "labels": {"any-key": "v"}, "opaque": {"whatever": {"deep": 1}},
            "items": [{"name": "a", "nested": {"a": 1}}, {"name": "b"}], "tags": ["p", "q"],
            "groups": {"g1": {"size": 2}}}
    assert structural_problems(good, schema) == []
    bad = copy.deepcopy(good)
    bad["nmae"] = "typo"
    bad["count"] = 2**31
    bad["items"][0]["nested"]["b"] = 2
    bad["items"].append({"name": "a"})
    bad["tags"].append("p")
    bad["groups"]["g1"]["sise"] = 1
    assert structural_problems(bad, schema) == [
        "count: 2147483648 is out of the int32 range",
        "items[0].nested.b: unknown field",
        "items: duplicate name ('a',)",
        "tags: duplicate item \"p\"",
        "groups.g1.sise: unknown field",
        "nmae: unknown field",
    ]


def test_vendored_schema_is_the_pinned_rayjob_crd(schema):
    assert sorted(p.name for p in SCHEMA_PATH.parent.glob("rayjob-crd-*.json")) == [SCHEMA_PATH.name]
    spec = schema["properties"]["spec"]["properties"]
    assert {"entrypoint", "rayClusterSpec", "submissionMode", "shutdownAfterJobFinishes"} <= spec.keys()
    assert "authOptions" in spec["rayClusterSpec"]["properties"]
    notes = (SCHEMA_PATH.parent / "README.md").read_text()
    assert KUBERAY_VERSION in notes and "Apache-2.0" in notes
