"""A trial's checkpoint on storage, and the one a restored trial starts from.

Tune names a trial's latest checkpoint in its experiment state, which it saves to storage a little after the
checkpoint itself, and deletes the checkpoint before (`num_to_keep=1`). A driver killed in between leaves a state
that names a checkpoint gone from storage, while the newer one sits beside it: Tune's restore would fail with "does
not exist on storage anymore". `NewestCheckpoint` restores a trial from the newest *complete* checkpoint in its
folder instead: complete means every file its manifest lists (written by `checkpoint_of`, last in the trial dir
before Ray uploads it) is on storage with that size, so a checkpoint whose upload was cut short is never read.
"""

from __future__ import annotations

import json
import posixpath
import re
from pathlib import Path

MANIFEST = "makd-checkpoint.json"
_CHECKPOINT_DIR = re.compile(r"checkpoint_(\d+)$")


def checkpoint_of(workdir: Path):
    """The trial dir as a Tune checkpoint, with a manifest of its files and sizes."""
    from ray import tune as ray_tune

    files = {str(p.relative_to(workdir)): p.stat().st_size
             for p in sorted(workdir.rglob("*")) if p.is_file() and p.name != MANIFEST}
    (workdir / MANIFEST).write_text(json.dumps({"files": files}))
    return ray_tune.Checkpoint.from_directory(str(workdir))


def is_complete(filesystem, path: str) -> bool:
    """Does the checkpoint dir at `path` hold every file of its manifest, at its size?"""
    import pyarrow.fs as pafs

    try:
        with filesystem.open_input_stream(posixpath.join(path, MANIFEST)) as stream:
            files = json.loads(stream.read())["files"]
    except (OSError, ValueError, KeyError):
        return False
    infos = filesystem.get_file_info([posixpath.join(path, name) for name in files])
    return all(info.type == pafs.FileType.File and info.size == size
               for info, size in zip(infos, files.values(), strict=True))


def newest_complete(filesystem, path: str) -> str | None:
    """The newest complete checkpoint dir beside `path` (in its trial folder), `path` itself included."""
    import pyarrow.fs as pafs

    folder = posixpath.dirname(path.rstrip("/"))
    try:
        entries = filesystem.get_file_info(pafs.FileSelector(folder))
    except OSError:
        return None
    numbered = sorted(((int(m.group(1)), e.path) for e in entries
                       if e.type == pafs.FileType.Directory and (m := _CHECKPOINT_DIR.search(e.path))), reverse=True)
    return next((candidate for _, candidate in numbered if is_complete(filesystem, candidate)), None)


def _of_another_trial(trial_id: str | None, path: str) -> bool:
    """Is the checkpoint at `path` in another trial's folder (Tune names a trial's folder with its id)?"""
    return trial_id is not None and trial_id not in posixpath.basename(posixpath.dirname(path.rstrip("/")))


class NewestCheckpoint:
    """A mixin for Tune's function trainable (`fn.__mixins__`): restore from the newest complete checkpoint in the
    trial's folder, not necessarily the one Tune's experiment state names. Another trial's checkpoint (PBT's donor,
    makd_sweep/search/pbt.py) is taken as named while it is complete: the donor may have trained on since."""

    def restore(self, checkpoint_path):
        from ray.train._internal.checkpoint_manager import _TrainingResult
        from ray.tune import Checkpoint

        result = checkpoint_path
        if isinstance(result, _TrainingResult):
            named = result.checkpoint
            if _of_another_trial(getattr(self, "trial_id", None), named.path) and is_complete(named.filesystem,
                                                                                                named.path):
                return super().restore(result)
            newest = newest_complete(named.filesystem, named.path)
            if newest is not None and newest != named.path:
                result = _TrainingResult(checkpoint=Checkpoint(newest, filesystem=named.filesystem),
                                         metrics=result.metrics)
        return super().restore(result)
