"""The first thing a submitted sweep runs on the cluster: does this interpreter have makd's dependencies at the
client's versions, and does the cluster head see the GLUE folder and the storage path? If not: one line on stderr
naming what is missing and how to fix it, exit 1 (what `makd logs JOB` shows first and `makd submit --wait` ends
with), instead of a traceback from deep inside an import.

Standard library only: it has to run where torch is missing. `makd submit` puts it before `makd_sweep.main sweep` in the
job's entrypoint: `PY -m makd_sweep.jobcheck --expect torch=2.13.0 ... && PY -m makd_sweep.main sweep ...`.
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import os
import socket
import sys
from pathlib import Path

CHECKED = ("torch", "transformers", "ray")  # what a sweep imports first; the rest of makd's pins come with them
FIX_PYTHON = ("pass `makd submit --python` an interpreter that has makd's dependencies (the local cluster's is in "
              "$MAKD_CLUSTER_PYTHON), or install them there (pip install -e . in a checkout)")


def public(version: str) -> str:
    """2.13.0+cpu -> 2.13.0: a CUDA build on the cluster and a CPU build on a laptop are the same release."""
    return version.split("+", 1)[0]


def client_versions() -> dict[str, str]:
    """Run on the client by `makd submit`: the versions the job must find on the cluster."""
    return {name: public(metadata.version(name)) for name in CHECKED}


def dependency_problem(expected: dict[str, str]) -> str | None:
    for name, version in expected.items():
        try:
            have = public(metadata.version(name))
        except metadata.PackageNotFoundError:
            return f"lacks {name} (makd needs {name}=={version})"
        if have != version:
            return f"has {name} {have}, but the client that submitted the sweep has {version}"
    return None


def path_problem(glue_dir: str | None, storage: str | None) -> str | None:
    if glue_dir and not Path(glue_dir).is_dir():
        return f"--glue-dir {glue_dir} is not a folder on the cluster head: pass the GLUE folder as the head sees it"
    if storage and "://" not in storage:
        existing = next((p for p in (Path(storage), *Path(storage).parents) if p.exists()), None)
        if existing is None or not os.access(existing, os.W_OK):
            return (f"storage {storage} cannot be written on the cluster head ({existing} is not writable): "
                    "use a path every node shares and may write (NFS), or an s3:// / gs:// URI")
    return None


def parse_expect(items: list[str]) -> dict[str, str]:
    return dict(item.split("=", 1) for item in items)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m makd_sweep.jobcheck", description=__doc__.split("\n\n")[0])
    p.add_argument("--expect", nargs="*", default=[], metavar="NAME=VERSION")
    p.add_argument("--glue-dir", default=os.environ.get("MAKD_GLUE_DIR"))  # the sweep reads it there too
    p.add_argument("--storage")
    args = p.parse_args(argv)
    where = f"python {sys.executable} on {socket.gethostname()}"
    problem = dependency_problem(parse_expect(args.expect))
    if problem:
        print(f"makd job: {where} {problem}: {FIX_PYTHON}", file=sys.stderr, flush=True)
        return 1
    problem = path_problem(args.glue_dir, args.storage)
    if problem:
        print(f"makd job: {problem}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
