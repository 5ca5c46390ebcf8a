"""Teacher-logit cache: the frozen teacher runs once per (teacher, head seed, task, split, max length, data).

Entries are content-addressed (the key is a sha256 of everything that changes the logits, the exact examples
included), written atomically (temp file + rename, the JSON sidecar last as the commit marker) and verified by
checksum on load; a corrupt entry is rebuilt with a warning. Training reads logits from here and never loads the
teacher when every entry it needs exists.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from tqdm.auto import tqdm

from makd.batching import default_pad_multiple, encode, sorted_batches
from makd.data import TextDataset
from makd.files import atomic_write_bytes
from makd.masks import model_batch
from makd.teacher_spec import TeacherSpec

log = logging.getLogger(__name__)
T = TypeVar("T")
CACHE_FORMAT = 1


@dataclass(frozen=True)
class TeacherKey:
    """Everything that determines a teacher's logits on one split."""

    teacher: str  # models.model_digest(model id): the weights, not just the name
    head_seed: int
    fine_tuned: bool
    task: str
    split: str
    num_labels: int
    max_length: int
    data: str  # TextDataset.digest(): the exact (sub)sample, texts and order

    def digest(self) -> str:
        blob = json.dumps({"format": CACHE_FORMAT, **asdict(self)}, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class ChecksummedEntries:
    """A folder of `<digest><suffix>` data files, each with a `<digest>.json` of its key, facts and sha256: both
    written atomically, the checksum verified on every read, a corrupt entry removed with a warning (the caller
    then recomputes it). The teacher-logit cache and the LM teacher's top-k cache (makd/lm/cache.py) are two."""

    folder = ""  # under the cache dir
    suffix = ""
    what = "cache"

    def __init__(self, root: str | Path):
        self.root = Path(root) / self.folder

    def paths(self, key) -> tuple[Path, Path]:
        d = key.digest()
        base = self.root / d[:2]
        return base / f"{d}{self.suffix}", base / f"{d}.json"

    def read(self, key, parse: Callable[[Path, dict], T]) -> T | None:
        """parse(data file, its metadata) of a verified entry, or None when absent or corrupt."""
        data_path, meta_path = self.paths(key)
        if not meta_path.exists():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            if sha256_file(data_path) != meta["sha256"]:
                raise ValueError("checksum mismatch")
            return parse(data_path, meta)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("%s entry %s is corrupt (%s): rebuilding it", self.what, data_path, exc)
            data_path.unlink(missing_ok=True)
            meta_path.unlink(missing_ok=True)
            return None

    def write(self, key, data: bytes, facts: Mapping[str, object]) -> Path:
        data_path, meta_path = self.paths(key)
        atomic_write_bytes(data_path, data)
        meta = {"key": asdict(key), "digest": key.digest(), **facts, "sha256": hashlib.sha256(data).hexdigest(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        atomic_write_bytes(meta_path, json.dumps(meta, indent=1).encode())
        return data_path


class TeacherLogitCache(ChecksummedEntries):
    """A folder of `<digest>.npy` + `<digest>.json` entries."""

    folder, suffix, what = "teacher-logits", ".npy", "teacher-logit cache"

    def load(self, key: TeacherKey) -> np.ndarray | None:
        """The cached logits, or None when absent or corrupt (a corrupt entry is removed, with a warning)."""
        def parse(npy: Path, meta: dict) -> np.ndarray:
            logits = np.load(npy, allow_pickle=False)
            if list(logits.shape) != meta["shape"]:
                raise ValueError(f"shape {logits.shape} != {meta['shape']}")
            return logits

        return self.read(key, parse)

    def save(self, key: TeacherKey, logits: np.ndarray, extra: Mapping[str, object] | None = None) -> Path:
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(logits, dtype=np.float32), allow_pickle=False)
        return self.write(key, buf.getvalue(), {"shape": list(logits.shape), **(extra or {})})


def default_batch_size(device: str | torch.device) -> int:
    """Teacher-pass batch size: 16 on CPU (mpnet-base, 256 RTE examples, 2 threads: 25.5 s at 16 vs 31.7 s at
    64; smaller batches stay in cache), 64 on an accelerator."""
    return 16 if torch.device(device).type == "cpu" else 64


@torch.no_grad()
def compute_logits(model: torch.nn.Module, tokenizer, ds: TextDataset, *, max_length: int,
                   batch_size: int | None = None, device: str | torch.device = "cpu",
                   progress: bool = True) -> np.ndarray:
    """Teacher logits for every example, in dataset order: eval mode, no_grad, longest-first batches with dynamic
    padding (a sorted pass wastes almost no compute on padding; on a GPU, widths rounded up to length buckets)."""
    batch_size = batch_size or default_batch_size(device)
    model.eval().to(device)
    encoded = encode(tokenizer, ds, max_length)
    out = np.zeros((len(ds), model.config.num_labels), dtype=np.float32)
    batches = sorted_batches(encoded.lengths, batch_size)
    # disable=None: the bar only on a terminal (a CI log or `makd logs` would get one line per redraw)
    bar = tqdm(total=len(ds), desc=f"teacher logits {ds.task}/{ds.split}", unit="ex",
               disable=None if progress else True, leave=False)
    chunks = []
    for idx in batches:
        batch = model_batch(model, encoded, idx, torch.device(device), default_pad_multiple(device))
        chunks.append(model(**batch).logits.float())
        bar.update(len(idx))
    if batches:  # one copy back to the host, not one wait for the GPU per batch
        out[np.concatenate(batches)] = torch.cat(chunks).cpu().numpy()
    bar.close()
    return out


@dataclass
class CacheReport:
    """What happened while fetching teacher logits: used by the CLI's JSON line and by tests."""

    hits: int = 0
    misses: int = 0
    teacher_loaded: bool = False
    teacher_seconds: float = 0.0

    @property
    def status(self) -> str:
        return "hit" if self.misses == 0 else ("miss" if self.hits == 0 else "partial")


def teacher_logits(datasets: Mapping[str, TextDataset], spec: TeacherSpec, *, cache_dir: str | Path,
                   batch_size: int | None = None, device: str | torch.device = "cpu", progress: bool = True,
                   compute: bool = True) -> tuple[dict[str, np.ndarray], CacheReport]:
    """Logits of the frozen teacher for each named dataset, from the cache when present.

    The teacher is loaded only if at least one entry is missing, and then at most once. compute=False only looks:
    a missing entry is left out of the result (and counted as a miss).
    """
    from makd import models  # heavy imports stay out of module import
    from makd.tasks import get_task

    teacher, head_seed, fine_tuned, max_length = spec.teacher, spec.head_seed, spec.fine_tuned, spec.max_length
    task = get_task(spec.task)
    num_labels = task.num_labels
    cache = TeacherLogitCache(cache_dir)
    digest = models.model_digest(teacher)
    cache_report = CacheReport()
    result: dict[str, np.ndarray] = {}
    loaded = None
    for name, ds in datasets.items():
        key = TeacherKey(teacher=digest, head_seed=head_seed, fine_tuned=fine_tuned, task=ds.task,
                         split=ds.split, num_labels=num_labels, max_length=max_length, data=ds.digest())
        logits = cache.load(key)
        if logits is not None:
            cache_report.hits += 1
            result[name] = logits
            continue
        cache_report.misses += 1
        if not compute:
            continue
        start = time.perf_counter()
        if loaded is None:
            loaded = models.load_teacher(teacher, num_labels, fine_tuned=fine_tuned, head_seed=head_seed,
                                         labels=task.labels)
            cache_report.teacher_loaded = True
        model, tokenizer = loaded
        logits = compute_logits(model, tokenizer, ds, max_length=max_length, batch_size=batch_size, device=device,
                                progress=progress)
        cache_report.teacher_seconds += time.perf_counter() - start
        cache.save(key, logits, extra={"teacher_spec": teacher, "examples": len(ds), "source": ds.source})
        result[name] = logits
    return result, cache_report
