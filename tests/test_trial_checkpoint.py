"""A restored trial starts from the newest complete checkpoint in its folder (makd_sweep/trial_checkpoint.py): Tune's
experiment state can name a checkpoint it already deleted (num_to_keep=1) when the driver dies between the two, and a
checkpoint whose upload was cut short must never be read. The end-to-end case is in tests/test_sweep.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.fs as pafs

from makd_sweep.trial_checkpoint import (
    MANIFEST,
    NewestCheckpoint,
    checkpoint_of,
    is_complete,
    newest_complete,
)

FS = pafs.LocalFileSystem()


def trial_folder(tmp_path: Path, epochs: int) -> Path:
    """checkpoint_000000 .. epochs-1, each a trial dir (a model file and a nested one) with its manifest."""
    folder = tmp_path / "trial"
    for n in range(epochs):
        work = tmp_path / f"work{n}"
        (work / "member").mkdir(parents=True)
        (work / "model.pt").write_bytes(b"x" * (100 + n))
        (work / "member" / "state.json").write_text(json.dumps({"epoch": n + 1}))
        checkpoint_of(work).to_directory(str(folder / f"checkpoint_{n:06d}"))
    return folder


def test_the_manifest_lists_every_file_with_its_size(tmp_path):
    folder = trial_folder(tmp_path, 1)
    manifest = json.loads((folder / "checkpoint_000000" / MANIFEST).read_text())
    assert manifest["files"] == {"member/state.json": len('{"epoch": 1}'), "model.pt": 100}
    assert is_complete(FS, str(folder / "checkpoint_000000"))


def test_the_newest_complete_checkpoint_is_chosen_even_when_the_named_one_is_gone(tmp_path):
    folder = trial_folder(tmp_path, 3)
    named = str(folder / "checkpoint_000000")
    assert newest_complete(FS, named) == str(folder / "checkpoint_000002")
    (folder / "checkpoint_000002" / "model.pt").write_bytes(b"x" * 3)  # an upload cut short: the size differs
    assert newest_complete(FS, named) == str(folder / "checkpoint_000001")
    (folder / "checkpoint_000001" / "member" / "state.json").unlink()  # ... or a file is missing
    assert newest_complete(FS, named) == named
    for name in ("checkpoint_000000", "checkpoint_000001"):
        (folder / name / MANIFEST).unlink()  # no manifest: not known to be complete
    assert newest_complete(FS, named) is None


def test_a_restore_is_redirected_to_the_newest_complete_checkpoint(tmp_path):
    from ray.train._internal.checkpoint_manager import _TrainingResult
    from ray.tune import Checkpoint

    folder = trial_folder(tmp_path, 2)

    class Base:
        def restore(self, checkpoint_path):
            return checkpoint_path

    class Trainable(NewestCheckpoint, Base):
        pass

    shutil.rmtree(folder / "checkpoint_000000")  # deleted by Tune before the state naming it reached storage
    named = _TrainingResult(checkpoint=Checkpoint(str(folder / "checkpoint_000000"), filesystem=FS),
                            metrics={"training_iteration": 1})
    restored = Trainable().restore(named)
    assert restored.checkpoint.path == str(folder / "checkpoint_000001")
    assert restored.metrics == {"training_iteration": 1}
    newest = _TrainingResult(checkpoint=Checkpoint(str(folder / "checkpoint_000001"), filesystem=FS), metrics={})
    assert Trainable().restore(newest) is newest  # the named one is the newest: unchanged


def test_a_folder_that_cannot_be_listed_has_no_newest(tmp_path):
    assert newest_complete(FS, str(tmp_path / "nowhere" / "checkpoint_000000")) is None


def test_a_pbt_donors_checkpoint_is_restored_as_named_while_it_is_complete(tmp_path):
    """PBT (makd_sweep/search/pbt.py): a trial that goes on from a donor's checkpoint gets the one PBT chose, even where
    the donor has trained on and written newer ones; a donor's checkpoint gone or cut short falls back as before."""
    from ray.train._internal.checkpoint_manager import _TrainingResult
    from ray.tune import Checkpoint

    folder = trial_folder(tmp_path, 3)
    donor_dir = folder.rename(tmp_path / "distill_trial_ab12c_00000_0_2026-12-08")

    class Base:
        def restore(self, checkpoint_path):
            return checkpoint_path

    class Trainable(NewestCheckpoint, Base):
        trial_id = "ab12c_00001"  # another trial of the same Tuner

    named = _TrainingResult(checkpoint=Checkpoint(str(donor_dir / "checkpoint_000000"), filesystem=FS), metrics={})
    assert Trainable().restore(named) is named  # not the donor's newer checkpoint_000002
    (donor_dir / "checkpoint_000000" / "model.pt").write_bytes(b"x")  # cut short
    assert Trainable().restore(named).checkpoint.path == str(donor_dir / "checkpoint_000002")

    class Own(NewestCheckpoint, Base):
        trial_id = "ab12c_00000"  # the folder's own trial: the newest complete one, as before

    assert Own().restore(named).checkpoint.path == str(donor_dir / "checkpoint_000002")
