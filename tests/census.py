"""A pytest plugin that counts what each test file pays for: seconds, Ray clusters started in the test process,
teacher loads, subprocesses (and which of them are makd sweeps / Ray nodes). Off unless asked for:

    .venv/bin/pytest -p tests.census --census census.csv

It measures the suite (CONTRIBUTING.md, "Tests and CI"); it changes nothing a test does."""

from __future__ import annotations

import collections
import csv
import os
import subprocess
import time
from pathlib import Path

import pytest

COUNTS = ("seconds", "tests", "ray_inits", "teacher_loads", "subprocesses", "makd_sweeps", "ray_starts")
_totals: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
_current: list[str] = ["(collection)"]


def pytest_addoption(parser):
    parser.addoption("--census", metavar="CSV", help="write each test file's costs to this CSV (tests/census.py)")


def _count(name: str, n: float = 1) -> None:
    _totals[_current[0]][name] += n


def _wrap(owner, attr: str, on_call) -> None:
    real = getattr(owner, attr)

    def wrapper(*args, **kwargs):
        on_call(args, kwargs)
        return real(*args, **kwargs)

    setattr(owner, attr, wrapper)


def _on_popen(args, kwargs) -> None:
    argv = args[1] if len(args) > 1 else kwargs.get("args", "")
    text = " ".join(map(str, argv)) if isinstance(argv, list | tuple) else str(argv)
    _count("subprocesses")
    if "makd" in text and " sweep" in text or "make demo" in text:
        _count("makd_sweeps")
    if "ray start" in text or ("ray" in text and "start" in text and "--head" in text) or "local.sh" in text:
        _count("ray_starts")


def pytest_configure(config):
    if not config.getoption("--census"):
        return
    import ray

    import makd.models

    _wrap(ray, "init", lambda a, k: _count("ray_inits"))
    _wrap(makd.models, "load_teacher", lambda a, k: _count("teacher_loads"))
    _wrap(subprocess.Popen, "__init__", _on_popen)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    if not item.config.getoption("--census"):
        yield
        return
    _current[0] = item.nodeid.split("::")[0]
    start = time.perf_counter()
    yield
    _count("seconds", time.perf_counter() - start)
    _count("tests")


def pytest_unconfigure(config):
    path = config.getoption("--census", default=None)
    if not path:
        return
    rows = sorted(_totals.items(), key=lambda kv: -kv[1]["seconds"])
    tmp = Path(f"{path}.{os.getpid()}.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", *COUNTS])
        for name, counter in rows:
            writer.writerow([name, round(counter["seconds"], 1), *(int(counter[c]) for c in COUNTS[1:])])
    os.replace(tmp, path)
