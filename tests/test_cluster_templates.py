"""The cloud templates would work as written, as far as can be checked without a cloud: they parse, the Ray token
reaches every node, every node runs Python >= 3.11 with makd's pins, each GPU worker holds the trials per GPU the
sweep config asks for (CPUs included), and every command they run exists. `ray up` / `kubectl apply` themselves need
an account: no test runs them."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

from tune.config import load_config

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
    """The config's trials fill every GPU of such a worker: its CPUs are not what limits the packing."""
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
    text = (CLUSTER / name).read_text()
    spec = yaml.safe_load(text)
    cluster = spec["spec"].get("rayClusterSpec", spec["spec"])
    pods = [cluster["headGroupSpec"]] + cluster["workerGroupSpecs"]
    assert "kubectl create secret generic makd-ray-token --from-literal=token=" in text
    assert "docker build -f cluster/Dockerfile" in (CLUSTER / "kuberay-raycluster.yaml").read_text()
    for pod in pods:
        (container,) = pod["template"]["spec"]["containers"]
        env = {e["name"]: e for e in container["env"]}
        assert env["RAY_AUTH_MODE"]["value"] == "token"
        assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "makd-ray-token", "key": "token"}
    worker = cluster["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["resources"]["limits"]
    packs(float(worker["cpu"]), float(worker["nvidia.com/gpu"]))
    if "entrypoint" in spec["spec"]:
        _is_a_makd_command(spec["spec"]["entrypoint"])


def test_the_image_runs_a_python_that_makd_accepts():
    base = re.search(r"(?m)^FROM rayproject/ray:(\S+)-py(\d)(\d+)-gpu$", (CLUSTER / "Dockerfile").read_text())
    ray_version, major, minor = base.groups()
    assert (int(major), int(minor)) >= lowest_python()
    pins = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(re.fullmatch(rf"ray\[[^]]*\]=={re.escape(ray_version)}", p) for p in pins), (ray_version, pins)


def _is_a_makd_command(line: str) -> None:
    """The line parses as a `makd` command with every flag it uses (argparse, as `makd` would)."""
    from tune.main import build_parser

    words = [w for w in shlex.split(line) if "=" not in w or w.startswith("-")]
    words = words[words.index("makd") + 1:]
    build_parser().parse_args(words)
