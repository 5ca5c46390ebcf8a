"""A sweep on one machine listens on loopback only (issue 29). The two-node checks are beside their clusters:
tests/test_sweep.py (ray.cluster_utils via makd_sweep.loopback.loopback_cluster) and tests/test_cluster_jobs.py
(cluster/local.sh)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from makd_sweep.loopback import SINGLE_MACHINE_ENV, address_host, is_loopback_host, loopback_ray
from tests.sockets import SocketWatch, process_tree
from tests.test_sweep import write_config

MAKD = str(Path(sys.executable).with_name("makd"))


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.0.0.2", True), ("localhost", True), ("::1", True), ("::ffff:127.0.0.1", True),
    ("0.0.0.0", False), ("::", False), ("192.0.2.2", False), ("::ffff:192.0.2.2", False), ("head.example", False)])
def test_loopback_hosts(host, loopback):
    assert is_loopback_host(host) is loopback


@pytest.mark.parametrize(("address", "host"), [
    ("127.0.0.1:6379", "127.0.0.1"), ("ray://head:10001", "head"), ("http://127.0.0.1:8265", "127.0.0.1"),
    ("[::1]:6379", "::1"), ("auto", "auto")])
def test_address_host(address, host):
    assert address_host(address) == host


def test_loopback_ray_sets_and_restores_the_single_machine_mode(monkeypatch):
    import ray._private.ray_constants as ray_constants
    from ray._private import services

    monkeypatch.delenv(SINGLE_MACHINE_ENV, raising=False)
    with loopback_ray():
        assert os.environ[SINGLE_MACHINE_ENV] == "0" and ray_constants.ENABLE_RAY_CLUSTER is False
        assert services.resolve_ip_for_localhost("127.0.0.1") == "127.0.0.1"
    assert SINGLE_MACHINE_ENV not in os.environ and ray_constants.ENABLE_RAY_CLUSTER is True
    # Ray imported inside the block reads its constant from our "0"; on exit it is Ray's own default again
    code = ("import sys; from makd_sweep.loopback import loopback_ray\nwith loopback_ray():\n"
            "    import ray._private.ray_constants as c\n    inside = c.ENABLE_RAY_CLUSTER\n"
            "print(inside, c.ENABLE_RAY_CLUSTER)")
    env = {k: v for k, v in os.environ.items() if k != SINGLE_MACHINE_ENV}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["False", "True"]


@pytest.mark.sweep
def test_a_local_sweep_listens_on_loopback_only_with_token_auth_on(tiny_bert_dir, tmp_path):
    """`makd sweep` as a user runs it (private Ray, token auth as Ray 2.60 defaults): every listening socket of the
    driver's process tree (GCS, raylet, agents, the trials' workers), polled while the trials run, is loopback."""
    config = write_config(tmp_path, tiny_bert_dir, losses=["ce", "taylor"], lams=[0.5], seeds=[0, 1], epochs=3)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS", SINGLE_MACHINE_ENV)}
    env.update(MAKD_HOME=str(tmp_path / "home"), RAY_USAGE_STATS_ENABLED="0")
    driver = subprocess.Popen([MAKD, "sweep", str(config), "--quiet", "--num-cpus", "2"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with SocketWatch(lambda: process_tree(driver.pid), interval_s=0.3) as watch:
        out, err = driver.communicate(timeout=300)
    assert driver.returncode == 0, out[-2000:] + err[-2000:]
    assert "TERMINATED" in out
    watch.assert_loopback_only()


def test_an_address_where_no_ray_answers_is_one_line_naming_it_and_the_local_cluster(tiny_bert_dir, tmp_path,
                                                                                     capsys):
    """Ray alone retries an unreachable GCS for minutes with no error (measured: still waiting after 200 s)."""
    from makd_sweep.main import main

    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = write_config(tmp_path, tiny_bert_dir)
    started = time.perf_counter()
    assert main(["sweep", str(config), "--quiet", "--address", f"127.0.0.1:{port}"]) == 2
    assert time.perf_counter() - started < 30
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"127.0.0.1:{port}" in err and "cluster/local.sh up" in err
    assert err.startswith("makd: error: address: no Ray answers")
