"""Connecting to Ray and refusing sweeps that could never run: missing GPUs, too many CPUs, unshared storage.

Ray itself leaves such trials PENDING forever with no error; we check before the first trial starts.
"""

from __future__ import annotations

import os
import socket
import uuid
from contextlib import nullcontext
from pathlib import Path

from makd.errors import UsageError
from makd_sweep.loopback import address_host, address_host_port, is_loopback_host, loopback_ray
from makd_sweep.storage import is_remote_uri
from makd_sweep.sweep_config import SweepConfig, WaitFor

QUIET_DEFAULTS = {
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",  # per-epoch checkpoints are intended
    "RAY_AIR_NEW_OUTPUT": "0",
}


def resolve_address(cfg: SweepConfig, override: str | None = None) -> str | None:
    """--address, then the config's address, then $RAY_ADDRESS; None runs a private local Ray."""
    return override or cfg.address or os.environ.get("RAY_ADDRESS") or None


def forwarded_env() -> dict[str, str]:
    """MAKD_* variables (e.g. MAKD_HOME) reach the trial workers, on every node."""
    return {k: v for k, v in os.environ.items() if k.startswith("MAKD_")}


def init_ray(address: str | None, *, num_cpus: int | None = None, num_gpus: float | None = None,
             verbose: bool = False) -> bool:
    """Join the cluster at `address` as Ray makes it, or start a private Ray on this machine that listens on
    loopback only (makd_sweep/loopback.py); returns True when it did, so the caller shuts it down. A Ray this process is
    connected to already (a notebook's `ray.init()`, a test module's) is used as it is when no address is given:
    False. The trials' own output and Ray's info lines reach the console only when verbose (a failed trial's error
    is printed whole either way: makd_sweep/progress.py)."""
    import logging

    for key, value in QUIET_DEFAULTS.items():
        os.environ.setdefault(key, value)
    import ray

    if not address and ray.is_initialized():
        return False

    # Inside a Ray Job (`makd submit`) the job's runtime env already carries our env vars and code to every
    # worker; Ray refuses to merge a second one with the same keys.
    runtime_env = None if "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ else {"env_vars": forwarded_env()}
    console = {"log_to_driver": verbose, "logging_level": logging.INFO if verbose else logging.ERROR}
    if address:
        check_reachable(address)
        # 127.0.0.1:PORT names a Ray on this machine: keep it on loopback (Ray would rewrite it to the LAN address,
        # where a loopback-only cluster such as cluster/local.sh's does not listen)
        on_this_machine = loopback_ray() if is_loopback_host(address_host(address)) else nullcontext()
        try:
            with on_this_machine:
                ray.init(address=address, runtime_env=runtime_env, **console)
        except (ConnectionError, RuntimeError, ValueError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UsageError("address", f"cannot connect to Ray at {address}: {first} (Ray 2.60 clusters use token "
                                        "auth: see docs/cluster.md)") from None
    else:
        with loopback_ray():  # a private Ray on this machine: node IP 127.0.0.1, every server on loopback
            ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False,
                     runtime_env=runtime_env, **console)
    return True


LOCAL_CLUSTER_HINT = ("start one on this machine with `bash cluster/local.sh up`, or leave out --address for a "
                      "private local Ray")


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """A host:port address must accept a TCP connection: Ray itself retries an unreachable GCS for minutes with no
    error. 'auto' and addresses without a port are left to Ray."""
    host, port = address_host_port(address)
    if port is None:
        return
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as err:
        raise UsageError("address", f"no Ray answers at {address} ({err.strerror or type(err).__name__}); "
                                    + LOCAL_CLUSTER_HINT) from None


def local_node_resources(num_cpus: int | None, num_gpus: float | None) -> dict:
    """What a private `ray.init()` on this machine would offer, in `ray.nodes()` form."""
    if num_gpus is None:
        import torch

        num_gpus = torch.cuda.device_count()
    return {"NodeManagerAddress": "local", "NodeID": "local", "Alive": True,
            "Resources": {"CPU": float(num_cpus or os.cpu_count() or 1), "GPU": float(num_gpus)}}


def alive_nodes() -> list[dict]:
    import ray

    return [n for n in ray.nodes() if n.get("Alive")]


def wait_for_resources(want: WaitFor, *, poll_s: float = 2.0, say=print) -> list[dict]:
    """Poll the cluster's alive nodes until they hold `want`'s GPUs and CPUs in all; their list, or one line when
    `want.timeout_s` passes first (an autoscaler that cannot start the workers, a wrong instance type)."""
    import time

    deadline = time.monotonic() + want.timeout_s
    said = False
    while True:
        nodes = alive_nodes()
        gpus = sum(n["Resources"].get("GPU", 0.0) for n in nodes)
        cpus = sum(n["Resources"].get("CPU", 0.0) for n in nodes)
        if gpus >= want.gpus and cpus >= want.cpus:
            return nodes
        if time.monotonic() >= deadline:
            raise UsageError("wait_for", f"after {want.timeout_s:g} s the Ray cluster has {gpus:g} GPUs and {cpus:g} "
                                         f"CPUs on {len(nodes)} node(s), not the {want.gpus:g} GPUs and {want.cpus:g} "
                                         "CPUs waited for: check the autoscaler (`ray status`) or lower wait_for")
        if not said:
            say(f"makd: waiting up to {want.timeout_s:g} s for {want.gpus:g} GPUs and {want.cpus:g} CPUs "
                f"(the cluster has {gpus:g} and {cpus:g})", flush=True)
            said = True
        time.sleep(poll_s)


def check_resources(cfg: SweepConfig, nodes: list[dict]) -> None:
    """Fail at once when no single node can hold one trial's request (Ray would leave it PENDING forever)."""
    gpus = [n["Resources"].get("GPU", 0.0) for n in nodes]
    cpus = [n["Resources"].get("CPU", 0.0) for n in nodes]
    if cfg.gpu > 0 and max(gpus, default=0.0) == 0:
        raise UsageError("resources_per_trial.gpu", f"each trial asks for {cfg.gpu:g} GPU but the Ray cluster "
                                                    f"({len(nodes)} node(s)) has no GPU; set gpu: 0 to train on CPUs")
    if cfg.gpu > 0 and max(gpus) < cfg.gpu:
        raise UsageError("resources_per_trial.gpu", f"each trial asks for {cfg.gpu:g} GPUs but the largest node "
                                                    f"has {max(gpus):g}")
    fits = [c >= cfg.cpu and g >= cfg.gpu for c, g in zip(cpus, gpus, strict=True)]
    if not any(fits):
        raise UsageError("resources_per_trial.cpu", f"each trial asks for {cfg.cpu:g} CPUs (+{cfg.gpu:g} GPU) but "
                                                    f"no node has that much (largest: {max(cpus, default=0):g} CPUs)")


def trial_slots(cfg: SweepConfig, nodes: list[dict]) -> int:
    """How many trials the cluster runs at once: on every node its CPUs (and GPUs) over one trial's request, in
    all at most max_concurrent_trials; at least 1."""
    slots = 0
    for node in nodes:
        resources = node["Resources"]
        fit = [resources.get("CPU", 0.0) / cfg.cpu] if cfg.cpu > 0 else []
        fit += [resources.get("GPU", 0.0) / cfg.gpu] if cfg.gpu > 0 else []
        slots += int(min(fit) + 1e-9) if fit else 1
    if cfg.max_concurrent_trials:
        slots = min(slots, cfg.max_concurrent_trials)
    return max(slots, 1)


def check_shared_storage(root: str, nodes: list[dict]) -> None:
    """On a multi-node cluster a local storage path must be visible from every node (NFS): probe it for real."""
    if len(nodes) < 2 or is_remote_uri(root):
        return
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    Path(root).mkdir(parents=True, exist_ok=True)
    marker = Path(root) / f".makd-storage-probe-{uuid.uuid4().hex}"
    marker.write_text("probe")

    @ray.remote(num_cpus=0)
    def sees(path: str) -> bool:
        return os.path.exists(path)

    try:
        refs = {n["NodeManagerAddress"] + "/" + n["NodeID"][:8]: sees.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(str(marker))
            for n in nodes}
        blind = [name for name, ref in refs.items() if not ray.get(ref, timeout=120)]
    finally:
        marker.unlink(missing_ok=True)
    if blind:
        raise UsageError("storage", f"{root} is a local path that node(s) {', '.join(blind)} cannot see: a multi-node "
                                    "sweep needs shared storage (s3://, gs://, or an NFS path mounted on every node)")
