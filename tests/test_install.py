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
