"""Sweeps as a service: submit `makd sweep` to a running Ray cluster as a Ray Job, list, follow and stop them.

The config travels in the job's runtime env (working_dir) with the files its own tasks and transfer data name
(ship_task_files), and by default so do the makd and makd_sweep packages (py_modules), so the cluster runs exactly the
client's code on the client's data; it needs only makd's dependencies installed.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

from makd.errors import UsageError

ADDRESS_ENV = ("MAKD_JOBS_ADDRESS", "RAY_API_SERVER_ADDRESS")
DEFAULT_ADDRESS = "http://127.0.0.1:8265"
METADATA_KEY = "makd"
AGENT_WAIT_S = 60  # how long `makd submit` retries a job server whose agent is not up yet
PYTHON_ENV = "MAKD_CLUSTER_PYTHON"  # the cluster's interpreter with makd's dependencies (cluster/local.sh sets it)
PROBE = "probe"  # metadata of the no-op job `wait_until_ready` submits (not a sweep: `makd jobs` hides it)
SHIP_LIMIT_MB = 100  # the task files a job carries in its working_dir (Ray's upload limit is a gRPC message, ~500 MiB)
SHIPPED_DATA = "data"  # their folder in the job's working_dir


def default_python() -> str:
    """The interpreter a submitted job runs when --python is not given: $MAKD_CLUSTER_PYTHON (cluster/local.sh's
    env names the project's .venv python its nodes run), else the one running `makd submit`, which is right
    whenever the cluster's nodes see this machine's files or image (a local cluster, or nodes built from the same
    image). The job checks it before the sweep starts (makd_sweep.jobcheck)."""
    return os.environ.get(PYTHON_ENV) or sys.executable


def jobs_address(address: str | None) -> str:
    for candidate in (address, *(os.environ.get(k) for k in ADDRESS_ENV)):
        if candidate:
            return candidate
    return DEFAULT_ADDRESS


def client(address: str | None):
    from ray.job_submission import JobSubmissionClient

    url = jobs_address(address)
    try:
        return JobSubmissionClient(url)
    except (ConnectionError, RuntimeError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UsageError("address", f"no Ray job server at {url}: {first}") from None


def package_dirs() -> list[str]:
    import makd
    import makd_sweep

    return [str(Path(makd.__file__).parent), str(Path(makd_sweep.__file__).parent)]


def ship_task_files(raw: dict, staging: Path) -> dict:
    """The sweep config `raw` with every file its own tasks (`tasks:` mappings) and transfer data name copied into
    staging/data/ and named there by a relative path: the job's driver resolves it in the job's working_dir (the
    driver makes file paths absolute before it leaves that dir: makd_sweep/driver.py). A file is read where makd submit
    runs, relative to its working dir, as `makd sweep` would read it. Nothing is copied before the total is known
    to fit."""
    out, targets = dict(raw), {}  # each distinct file -> its name in the job

    def ship(value: str, where: str) -> str:
        source = Path(value).expanduser().resolve()
        if not source.is_file():
            raise UsageError(where, f"{value}: no such file here, where makd submit reads it to ship it with the job "
                                    "(--no-ship-data reads it on the cluster head instead)")
        return str(targets.setdefault(source, Path(SHIPPED_DATA) / f"{len(targets)}-{source.name}"))

    tasks = out.get("tasks")
    if isinstance(tasks, list):
        out["tasks"] = [{**t, **{k: ship(t[k], f"tasks.{t.get('name')}.{k}") for k in ("train_file", "eval_file")
                                 if isinstance(t.get(k), str)}} if isinstance(t, dict) else t for t in tasks]
    if isinstance(out.get("transfer"), dict) and isinstance(out["transfer"].get("file"), str):
        out["transfer"] = {**out["transfer"], "file": ship(out["transfer"]["file"], "transfer.file")}
    if isinstance(out.get("transfer_file"), str):
        out["transfer_file"] = ship(out["transfer_file"], "transfer_file")
    size = sum(source.stat().st_size for source in targets)
    if size > SHIP_LIMIT_MB * 2**20:
        raise UsageError("tasks", f"the files of the sweep's own tasks and transfer data total {size / 2**20:.0f} "
                                  f"MiB, more than a job carries ({SHIP_LIMIT_MB} MiB): put them where the cluster "
                                  "head reads them (shared storage, absolute paths) and submit with --no-ship-data")
    for source, target in targets.items():
        (staging / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, staging / target)
    return out


def submit(config_path: str, *, address: str | None = None, glue_dir: str | None = None, ship_code: bool = True,
           ship_data: bool = True, python: str | None = None, extra_args: list[str] | None = None) -> str:
    """Validate the config here, then send `makd sweep` to the cluster, behind a check of the cluster's interpreter
    and paths (makd_sweep.jobcheck); returns the submission id."""
    from makd_sweep.config import load_config
    from makd_sweep.jobcheck import client_versions
    from makd_sweep.storage import is_remote_uri

    cfg = load_config(config_path)  # a bad config fails here, before anything is sent
    if not is_remote_uri(cfg.storage) and not Path(cfg.storage).expanduser().is_absolute():
        raise UsageError("storage", f"a submitted sweep runs on the cluster: use an absolute path every node shares "
                                    f"(NFS) or an s3:// / gs:// URI, not the relative '{cfg.storage}'")
    if glue_dir is None and cfg.glue_dir and not Path(cfg.glue_dir).is_absolute():
        raise UsageError("data.glue_dir", f"relative '{cfg.glue_dir}' would be read on the cluster head: pass an "
                                          "absolute --glue-dir as the head sees it")
    job_client = client(address)
    staging = Path(tempfile.mkdtemp(prefix="makd-submit-"))
    try:
        if ship_data:
            import yaml

            raw = ship_task_files(yaml.safe_load(Path(config_path).read_text()), staging)
            (staging / "sweep.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        else:
            shutil.copy(config_path, staging / "sweep.yaml")
        runtime_env: dict = {"working_dir": str(staging),
                             "env_vars": {k: v for k, v in os.environ.items() if k.startswith("MAKD_")
                                          and k not in ADDRESS_ENV}}
        if ship_code:
            runtime_env["py_modules"] = package_dirs()
        args = ["sweep", "sweep.yaml", "--quiet", *(["--glue-dir", glue_dir] if glue_dir else []), *(extra_args or [])]
        python = python or default_python()
        data_dir = glue_dir or cfg.glue_dir
        check = ["-m", "makd_sweep.jobcheck", "--expect", *(f"{k}={v}" for k, v in client_versions().items()),
                 *(["--glue-dir", data_dir] if data_dir else []), "--storage", cfg.storage]
        entrypoint = " && ".join(shlex.join([python, *part]) for part in (check, ["-m", "makd_sweep.main", *args]))
        submission_id = f"makd-{cfg.name}-{uuid.uuid4().hex[:8]}"
        deadline = time.monotonic() + AGENT_WAIT_S
        while True:
            try:
                return job_client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env,
                                             submission_id=submission_id,
                                             metadata={METADATA_KEY: "sweep", "name": cfg.name,
                                                       "config": Path(config_path).name})
            except RuntimeError as err:
                # A cluster that has just started accepts connections before its job agent is up.
                if "No available agent" not in str(err):
                    raise
                if time.monotonic() > deadline:
                    raise UsageError("address", f"the cluster's job server had no agent for {AGENT_WAIT_S} s "
                                                "(is the head node up?): try again later") from None
                time.sleep(2.0)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def wait_until_ready(address: str | None = None, timeout: float = 90.0) -> bool:
    """Until a no-op job runs to SUCCEEDED on the cluster (the job server has an agent and a node runs jobs) or
    `timeout` passes; what `cluster/local.sh up` waits for before it says the cluster is up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            job_client = client(address)
            job_id = job_client.submit_job(entrypoint="true", metadata={METADATA_KEY: PROBE})
        except (UsageError, RuntimeError, ConnectionError):
            time.sleep(1.0)
            continue
        status = _wait_for_end(job_client, job_id, max(deadline - time.monotonic(), 1.0), poll=0.5)
        if status == "SUCCEEDED":
            return True
        time.sleep(1.0)
    return False


def list_jobs(address: str | None = None) -> list[dict]:
    rows = []
    for job in client(address).list_jobs():
        metadata = job.metadata or {}
        if metadata.get(METADATA_KEY) != "sweep":
            continue
        start = (job.start_time or 0) / 1000
        end = (job.end_time or 0) / 1000 or time.time()
        rows.append({"job": job.submission_id, "status": str(job.status.value if hasattr(job.status, "value")
                                                              else job.status),
                     "name": metadata.get("name"), "config": metadata.get("config"),
                     "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(start)) if start else "",
                     "seconds": round(end - start, 1) if start else None})
    return sorted(rows, key=lambda r: r["started"])


def _known(job_client, job_id: str) -> None:
    try:
        job_client.get_job_info(job_id)
    except RuntimeError:
        raise UsageError("job", f"no job {job_id!r} on this cluster (see `makd jobs`)") from None


def print_logs(job_id: str, *, address: str | None = None, follow: bool = False, out=sys.stdout) -> None:
    job_client = client(address)
    _known(job_client, job_id)
    if not follow:
        out.write(job_client.get_job_logs(job_id))
        return

    async def tail() -> None:
        async for chunk in job_client.tail_job_logs(job_id):
            out.write(chunk)
            out.flush()

    asyncio.run(tail())


def _wait_for_end(job_client, job_id: str, timeout: float, poll: float) -> str:
    """Poll until the job reaches a terminal status or `timeout` passes; returns the last status seen."""
    from ray.job_submission import JobStatus

    deadline = time.time() + timeout
    status = job_client.get_job_status(job_id)
    while status not in {JobStatus.STOPPED, JobStatus.SUCCEEDED, JobStatus.FAILED} and time.time() < deadline:
        time.sleep(poll)
        status = job_client.get_job_status(job_id)
    return str(status.value)


def stop(job_id: str, *, address: str | None = None, wait_seconds: float = 30.0) -> str:
    """Stop a job and wait (bounded) until Ray reports it stopped; returns the final status."""
    job_client = client(address)
    _known(job_client, job_id)
    job_client.stop_job(job_id)
    return _wait_for_end(job_client, job_id, wait_seconds, poll=0.5)


def wait(job_id: str, *, address: str | None = None, timeout: float = 600.0) -> str:
    return _wait_for_end(client(address), job_id, timeout, poll=1.0)
