"""`makd data glue`: a local GLUE folder written from the hub, read back by --glue-dir. The hub is a stand-in built
from the fixture GLUE folder (datasets.load_dataset patched: no network here), for all nine tasks."""

from __future__ import annotations

import shlex

import numpy as np
import pytest

from makd.data import load_glue_dir
from makd.tasks import GLUE_TASK_NAMES, get_task
from makd_sweep.main import main
from tests.conftest import FIXTURES
from tests.docs import commands_after


@pytest.fixture
def stand_in_hub(monkeypatch):
    """datasets.load_dataset('nyu-mll/glue', config, split=...) answered from tests/fixtures/glue, hub columns."""
    import datasets

    asked = []

    def load_dataset(name, config, split):
        assert name == "nyu-mll/glue"
        task = next(get_task(t) for t in GLUE_TASK_NAMES if get_task(t).hub_config == config)
        asked.append((config, split))
        ds = load_glue_dir(task, split, FIXTURES / "glue")
        columns = dict(zip(task.text_fields, [ds.text_a] + ([ds.text_b] if ds.text_b else []), strict=True))
        return datasets.Dataset.from_dict({**columns, "label": ds.labels.tolist()})

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return asked


def test_every_glue_task_round_trips_through_a_written_folder(stand_in_hub, tmp_path, capsys):
    assert main(["data", "glue", "--out", str(tmp_path / "glue")]) == 0
    written = capsys.readouterr().out.split()
    for name in sorted(GLUE_TASK_NAMES):
        task = get_task(name)
        for split in task.splits:
            hub = load_glue_dir(task, split, FIXTURES / "glue")
            local = load_glue_dir(task, split, tmp_path / "glue")
            assert local.text_a == hub.text_a and local.text_b == hub.text_b, (name, split)
            np.testing.assert_allclose(local.labels, hub.labels, err_msg=f"{name} {split}")
    assert len(written) == sum(len(get_task(t).splits) for t in GLUE_TASK_NAMES) == len(stand_in_hub)


def test_the_documented_command_runs_as_written(stand_in_hub, tmp_path, monkeypatch):
    (command,) = commands_after("docs/distill.md", "## GLUE data offline")
    monkeypatch.chdir(tmp_path)
    assert command.startswith("makd data glue ") and main(shlex.split(command)[1:]) == 0
    assert sorted(p.name for p in (tmp_path / "glue").iterdir()) == ["MRPC", "RTE"]
    assert len(load_glue_dir(get_task("rte"), "train", tmp_path / "glue")) > 0


def test_no_hub_is_one_line_naming_both_ways_and_writes_nothing(monkeypatch, tmp_path, capsys):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'nyu-mll/glue' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    assert main(["data", "glue", "--out", str(tmp_path / "glue"), "--tasks", "rte"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--glue-dir" in err and "makd data glue" in err and "hub" in err
    assert not (tmp_path / "glue").exists()


@pytest.mark.parametrize("args, field", [(["--tasks", "rte,reviews"], "task"), (["--tasks", "rte"], None)])
def test_bad_tasks_and_a_file_as_out_are_one_line(args, field, tmp_path, capsys):
    out = tmp_path / "file"
    out.write_text("x")
    assert main(["data", "glue", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and (f"{field}:" in err if field else "out:" in err and "not a folder" in err)
