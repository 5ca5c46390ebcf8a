"""Ray on one machine listens on loopback only: node IP 127.0.0.1 for every Ray that makd, its tests and its
benchmarks start locally.

Why this takes more than `--node-ip-address=127.0.0.1`: Ray 2.60 on Linux rewrites a node IP or an address of
127.0.0.1 into the machine's network address (`ray._private.services.resolve_ip_for_localhost`), and its GCS,
raylet, agents and workers then listen on every interface (`*`, `0.0.0.0`, the LAN address; measured with psutil,
tests/test_loopback.py). Ray keeps 127.0.0.1, and all of its servers bind loopback, only in its single-machine mode:
`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`, the default on macOS and Windows. That mode is read once, when Ray is
imported (`ray_constants.ENABLE_RAY_CLUSTER`), so `loopback_ray` sets both the variable (for the processes Ray
spawns, and any later interpreter) and the constant (for this one). The same mode refuses `ray start --address`
(a second node), so cluster/local.sh starts its nodes through `python -m makd_sweep.loopback start ...`.

A sweep that joins a cluster on other machines (`--address`, Ray Jobs) is left as Ray makes it.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray's single-machine mode (node IP 127.0.0.1)
LOOPBACK_IP = "127.0.0.1"


def _constants():
    """Ray's constants module when Ray is imported already (its ENABLE_RAY_CLUSTER was read at import), else None."""
    return sys.modules.get("ray._private.ray_constants")


@contextmanager
def loopback_ray() -> Iterator[None]:
    """Inside: a Ray started here (`ray.init(address="local")`, `ray.cluster_utils.Cluster`) gets node IP
    127.0.0.1 and its processes bind loopback; a driver keeps an address 127.0.0.1:PORT on loopback. Restored on
    exit (the variable and Ray's constant as they were): Ray's processes keep the environment they started with."""
    before_env, constants = os.environ.get(SINGLE_MACHINE_ENV), _constants()
    before_constant = constants.ENABLE_RAY_CLUSTER if constants is not None else None
    os.environ[SINGLE_MACHINE_ENV] = "0"
    if constants is not None:
        constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        if before_env is None:
            os.environ.pop(SINGLE_MACHINE_ENV, None)
        else:
            os.environ[SINGLE_MACHINE_ENV] = before_env
        constants = _constants()  # imported inside: its constant read our "0"; Ray's own rule on the restored env
        if constants is not None:
            constants.ENABLE_RAY_CLUSTER = before_constant if before_constant is not None else constants.env_bool(
                SINGLE_MACHINE_ENV, not constants.IS_WINDOWS_OR_OSX)


def loopback_cluster(nodes: int, cpus_per_node: int = 1):
    """A `ray.cluster_utils.Cluster` of `nodes` nodes on this machine, every one on 127.0.0.1 and loopback only,
    all of them up (the multi-node tests and benchmarks). Stop it with `.shutdown()`."""
    from ray.cluster_utils import Cluster

    with loopback_ray():
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": cpus_per_node, "include_dashboard": False})
        try:
            for _ in range(nodes - 1):
                cluster.add_node(num_cpus=cpus_per_node)
            cluster.wait_for_nodes()
        except BaseException:
            cluster.shutdown()
            raise
    return cluster


def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1, IPv4-mapped loopback, or the name localhost."""
    host = host.strip("[]").split("%")[0]
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def address_host_port(address: str) -> tuple[str, int | None]:
    """(host, port) of a Ray address: 'ray://h:10001', 'h:6379', '[::1]:6379', 'http://h:8265'; port None when the
    address has none ('auto', a bare host)."""
    rest = address.split("://", 1)[-1].split("/", 1)[0]
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        port = tail.removeprefix(":")
    elif rest.count(":") == 1:
        host, port = rest.split(":")
    else:
        host, port = rest, ""
    return host, int(port) if port.isdigit() else None


def address_host(address: str) -> str:
    return address_host_port(address)[0]


def ray_start(argv: list[str]) -> None:
    """`ray start ARGS` for one node of a cluster on this machine, loopback only (cluster/local.sh).

    The single-machine mode keeps node IP 127.0.0.1 for this node's processes; in this process only, Ray's check
    that refuses a second node in that mode is lifted, and 127.0.0.1 is kept as given instead of resolved."""
    os.environ[SINGLE_MACHINE_ENV] = "0"  # before Ray is imported: the node's processes inherit it
    import ray._private.ray_constants as ray_constants
    from ray._private import services
    from ray.scripts.scripts import main

    resolve = services.resolve_ip_for_localhost
    services.resolve_ip_for_localhost = lambda host: LOOPBACK_IP if is_loopback_host(host) else resolve(host)
    ray_constants.ENABLE_RAY_CLUSTER = True  # only Ray's "no second node" check reads it after this point
    sys.argv = ["ray", "start", *argv]
    main()


if __name__ == "__main__":
    if sys.argv[1:2] != ["start"]:
        print("usage: python -m makd_sweep.loopback start [ray start options]", file=sys.stderr)
        sys.exit(2)
    ray_start(sys.argv[2:])
