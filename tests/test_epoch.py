"""makd/epoch.py (issue 44): every training loop's per-epoch result is built by one function, so a field means
the same in the classifier loop, the fused pack and the causal-LM loop."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

from makd.epoch import HOLDOUT, TrainResult, build_epoch_result, record_epoch
from makd.inference_cost import InferenceCost

REPO = Path(__file__).resolve().parents[1]


def construction_sites() -> list[str]:
    """Every call of EpochResult(...) in makd/ and makd_sweep/, as path:line."""
    sites = []
    for path in sorted((REPO / "makd").rglob("*.py")) + sorted((REPO / "makd_sweep").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "EpochResult":
                sites.append(f"{path.relative_to(REPO)}:{node.lineno}")
    return sites


def test_the_per_epoch_result_is_constructed_in_makd_epoch_only():
    sites = construction_sites()
    assert sites and {site.split(":")[0] for site in sites} == {"makd/epoch.py"}, sites
    assert len(sites) == 2  # build_epoch_result, and restored_history (a checkpoint's epochs read back)


def epoch(epoch: int, held: dict, *, classes: bool = True, cost: InferenceCost | None = None):
    weights = {"w": torch.full((2, 2), float(epoch))}
    return build_epoch_result(epoch=epoch, metric="accuracy", dev={"accuracy": 0.5 + epoch / 10, "f1": 0.4},
                              held=held, train_loss=0.7, examples=300, train_seconds=2.0, eval_seconds=0.5,
                              device=torch.device("cpu"), student_parameters=4, weights=weights,
                              predictions=[np.array([0, 1, 1])], classes=classes, cost=cost)


def test_the_builder_selects_on_the_holdout_reports_dev_and_says_what_it_did_not_measure():
    result = TrainResult(task="sst2", metric="accuracy")
    first = epoch(1, {"accuracy": 0.9})
    record_epoch(result, first)
    assert first.score == 0.9 and first.dev_score == pytest.approx(0.6)  # selected on the hold-out, reported on dev
    assert first.metrics == {"accuracy": pytest.approx(0.6), "f1": 0.4, f"{HOLDOUT}_accuracy": 0.9}
    assert first.train_examples_per_s == 150.0 and first.predicted_classes == 2 and first.peak_gpu_mb is None
    assert first.latency_ms is None and first.inference_examples_per_s is None  # no cost measured: None, not 0
    second = epoch(2, {"accuracy": 0.8}, classes=False, cost=InferenceCost(3.0, 400.0, 32, "cpu"))
    record_epoch(result, second)
    assert (second.best_epoch, second.best_score) == (1, 0.9)  # the first best epoch so far
    assert second.predicted_classes is None and (second.latency_ms, second.inference_examples_per_s) == (3.0, 400.0)
    assert second.weights_fingerprint != first.weights_fingerprint
    assert epoch(3, {}).score == pytest.approx(0.8)  # no hold-out: dev selects
