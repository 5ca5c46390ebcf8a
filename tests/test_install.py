"""What pyproject claims about installing makd holds: the lowest Python it accepts can install every pin."""

from __future__ import annotations

import tomllib
from importlib.metadata import PackageNotFoundError, metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_the_lowest_python_claimed_satisfies_every_pinned_dependency():
    """requires-python's lower bound against each installed pin's own Requires-Python (numpy 2.4.6 and pandas 3.1.1
    need 3.11, so claiming 3.10 would send a 3.10 user into a failed install)."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    claimed = SpecifierSet(project["requires-python"])
    lowest = next(s.version for s in claimed if s.operator == ">=")
    pins = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    checked, refused = 0, []
    for line in pins:
        requirement = Requirement(line)
        assert any(s.operator == "==" for s in requirement.specifier), f"{line}: not pinned"
        try:
            needs = metadata(requirement.name).get("Requires-Python")
        except PackageNotFoundError:  # an extra this environment did not install (e.g. llm)
            continue
        checked += 1
        if needs and lowest not in SpecifierSet(needs):
            refused.append(f"{requirement.name} needs Python {needs}")
    assert checked >= 15 and not refused, refused


def test_make_demo_reads_the_local_glue_folder_when_there_is_one_and_the_hub_otherwise(tmp_path):
    """Off this workplace there is no ../shared/glue: `make demo` must not pass a --glue-dir that does not exist,
    so that makd falls back to $MAKD_GLUE_DIR, then the hub."""
    import subprocess

    repo = PYPROJECT.parent
    glue = tmp_path / "glue"
    (glue / "RTE").mkdir(parents=True)
    for target in ("demo", "distill"):
        present = subprocess.run(["make", "-n", target, f"GLUE_DIR={glue}"], cwd=repo, capture_output=True,
                                 text=True, check=True).stdout
        absent = subprocess.run(["make", "-n", target, f"GLUE_DIR={tmp_path / 'none'}"], cwd=repo,
                                capture_output=True, text=True, check=True).stdout
        assert f"--glue-dir {glue}" in present and "--glue-dir" not in absent, (target, present, absent)



def _setup_calls(tmp_path: Path, *, index: str | None = None, local_wheel: bool = False, gpu: bool = False) -> list[str]:
    """Run scripts/setup.sh in a copy of the project whose .venv python records every call instead of installing
    (a `--no-index` install succeeds only if `local_wheel`), with an nvidia-smi that lists a GPU only if `gpu`."""
    import os
    import shutil
    import subprocess

    copy = tmp_path / "project"
    (copy / "scripts").mkdir(parents=True)
    shutil.copy(PYPROJECT.parent / "scripts" / "setup.sh", copy / "scripts" / "setup.sh")
    log, bin_dir = tmp_path / "calls.log", tmp_path / "bin"
    bin_dir.mkdir()
    python = copy / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    refuse = "" if local_wheel else 'case "$*" in *--no-index*) exit 1;; esac\n'
    python.write_text(f'#!/usr/bin/env bash\necho "$*" >> {log}\n{refuse}[ "$1" = -c ] && echo 0.0.0\nexit 0\n')
    (bin_dir / "nvidia-smi").write_text(f"#!/usr/bin/env bash\nexit {0 if gpu else 1}\n")
    for tool in (python, bin_dir / "nvidia-smi"):
        tool.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "TORCH_INDEX_URL"}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    if index is not None:
        env["TORCH_INDEX_URL"] = index
    subprocess.run(["bash", "scripts/setup.sh"], cwd=copy, env=env, check=True, capture_output=True)
    calls = log.read_text().splitlines()
    makd = next(i for i, c in enumerate(calls) if "-e ." in c)
    return [c for c in calls[:makd] if "torch==2.13.0" in c]  # torch comes first, before makd


CPU = "--index-url https://download.pytorch.org/whl/cpu"


def test_setup_installs_the_torch_build_for_the_machine(tmp_path):
    """README, Install: an explicit TORCH_INDEX_URL wins; else a local wheel folder's torch (this project's machines);
    else the CUDA build (pip's index) where nvidia-smi lists a GPU; else, on Linux, the CPU-only build."""
    import platform

    cuda = "https://download.pytorch.org/whl/cu126"
    (explicit,) = _setup_calls(tmp_path / "a", index=cuda, gpu=False)
    assert f"--index-url {cuda}" in explicit
    local = _setup_calls(tmp_path / "b", local_wheel=True)
    assert "--no-index --no-deps" in local[0] and len(local) == 2 and "--index-url" not in local[1]
    *_, gpu = _setup_calls(tmp_path / "c", gpu=True)
    assert "--index-url" not in gpu and "--no-index" not in gpu
    *_, cpu = _setup_calls(tmp_path / "d", gpu=False)
    assert (CPU in cpu) == (platform.system() == "Linux"), cpu
