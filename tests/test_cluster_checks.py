"""`wait_for:` — a sweep on an autoscaled cluster waits for the GPUs and CPUs it names before its first trial, and
fails in one line when they do not come (the nodes are a stand-in list: the waiting logic, not Ray, is tested)."""

from __future__ import annotations

import time

import pytest

from makd.errors import UsageError
from makd_sweep import cluster
from makd_sweep.config import WaitFor, parse_config


def node(cpus: float, gpus: float = 0.0) -> dict:
    return {"Alive": True, "Resources": {"CPU": cpus, "GPU": gpus}}


def test_the_sweep_waits_until_the_gpu_workers_have_joined(monkeypatch):
    joining = iter([[node(8)], [node(8)], [node(8), node(8, 1)], [node(8), node(8, 1), node(8, 1)]])
    monkeypatch.setattr(cluster, "alive_nodes", lambda: next(joining))
    said = []
    nodes = cluster.wait_for_resources(WaitFor(gpus=2, cpus=16, timeout_s=30), poll_s=0.01,
                                       say=lambda line, **_: said.append(line))
    assert len(nodes) == 3 and len(said) == 1 and "waiting up to 30 s for 2 GPUs" in said[0]


def test_workers_that_never_come_are_one_line_after_the_timeout(monkeypatch):
    monkeypatch.setattr(cluster, "alive_nodes", lambda: [node(8)])
    start = time.monotonic()
    with pytest.raises(UsageError) as err:
        cluster.wait_for_resources(WaitFor(gpus=4, timeout_s=0.3), poll_s=0.05, say=lambda *a, **k: None)
    assert 0.3 <= time.monotonic() - start < 5
    assert err.value.field == "wait_for" and "has 0 GPUs and 8 CPUs on 1 node(s)" in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("section, field", [({}, "wait_for"), ({"gpus": -1}, "wait_for.gpus"),
                                            ({"gpus": 1, "timeout_s": 0}, "wait_for.timeout_s"),
                                            ({"gpus": 1, "nodes": 2}, "wait_for.nodes")])
def test_a_bad_wait_for_names_its_field(section, field):
    with pytest.raises(UsageError) as err:
        parse_config({"name": "s", "tasks": ["rte"], "students": ["2x128"], "wait_for": section})
    assert err.value.field == field


def test_wait_for_defaults_and_reruns_from_the_report_yaml():
    from makd_sweep.config import sweep_yaml

    cfg = parse_config({"name": "s", "tasks": ["rte"], "students": ["2x128"], "teacher": "zoo:minilm-l6",
                        "wait_for": {"gpus": 4}})
    assert cfg.wait_for == WaitFor(gpus=4, cpus=0, timeout_s=600)
    import yaml

    assert parse_config(yaml.safe_load(sweep_yaml(cfg.as_dict()))).wait_for == cfg.wait_for
