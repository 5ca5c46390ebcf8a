"""The causal-LM teacher's signal, computed once per (teacher weights, token sequences, k, dtype) and kept on disk:
per token the top-k log-probabilities and ids, the exact tail mass and entropy (makd/lm/sparse_teacher.py), so that
students train from the cache and never load the teacher (the LLM analogue of makd/cache.py's logit cache).

An entry is `<digest>.npz` (every sequence's tokens concatenated, with offsets) + `<digest>.json` (key, shapes,
sha256), each written atomically; a corrupt entry is removed with a warning and recomputed.

Reverse KL and JSD weigh the teacher's probability of every token the *student* favours, which a top-k cache does
not hold (results/bench-lm: gradient cosine < 0.2 to the true one). For them `lm_teacher_full` keeps the teacher's
full logits in float16, at the response positions only (what is trained on), once per (teacher weights, sequences,
response starts): `<cache dir>/lm-teacher-full/<digest>.npy`, ~2 bytes × vocabulary per response token."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from makd.cache import ChecksummedEntries
from makd.lm.data import response_positions, sequences_digest
from makd.lm.sparse_teacher import VALUE_DTYPES, SparseTeacher, sparse_from_logits

LM_CACHE_FORMAT = 1


@dataclass(frozen=True)
class LmSignalKey:
    """Everything that determines the cached signal."""

    teacher: str  # models.model_digest(model id): the weights, not just the name
    k: int
    dtype: str
    data: str  # sequences_digest(): the exact token ids, in order

    def digest(self) -> str:
        blob = json.dumps({"format": LM_CACHE_FORMAT, **asdict(self)}, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()


def _stack(signals: Sequence[SparseTeacher]) -> dict[str, np.ndarray]:
    offsets = np.cumsum([0] + [int(s.indices.shape[0]) for s in signals])
    value_dtype = signals[0].logprobs.dtype if signals else torch.float16
    as_np = {torch.float16: np.float16, torch.float32: np.float32}.get(value_dtype)
    logprobs = torch.cat([s.logprobs for s in signals])
    return {"offsets": offsets.astype(np.int64),
            "indices": torch.cat([s.indices for s in signals]).numpy().astype(np.int32),
            # bfloat16 has no numpy twin: stored as its float32 values, read back as bfloat16
            "logprobs": logprobs.numpy().astype(as_np) if as_np else logprobs.float().numpy(),
            "tail_logprob": torch.cat([s.tail_logprob for s in signals]).float().numpy(),
            "entropy": torch.cat([s.entropy for s in signals]).float().numpy()}


def _unstack(arrays: dict[str, np.ndarray], dtype: str) -> list[SparseTeacher]:
    offsets = arrays["offsets"]
    out = []
    for start, end in zip(offsets[:-1], offsets[1:], strict=True):
        out.append(SparseTeacher(indices=torch.from_numpy(arrays["indices"][start:end].copy()),
                                 logprobs=torch.from_numpy(arrays["logprobs"][start:end].copy()).to(VALUE_DTYPES[dtype]),
                                 tail_logprob=torch.from_numpy(arrays["tail_logprob"][start:end].copy()),
                                 entropy=torch.from_numpy(arrays["entropy"][start:end].copy())))
    return out


class SparseTeacherCache(ChecksummedEntries):
    """A folder of `<digest>.npz` + `<digest>.json` entries under `<cache dir>/lm-teacher-topk`."""

    folder, suffix, what = "lm-teacher-topk", ".npz", "LM teacher cache"

    def load(self, key: LmSignalKey) -> list[SparseTeacher] | None:
        def parse(npz: Path, meta: dict) -> list[SparseTeacher]:
            with np.load(npz, allow_pickle=False) as data:
                return _unstack({name: data[name] for name in data.files}, key.dtype)

        return self.read(key, parse)

    def save(self, key: LmSignalKey, signals: Sequence[SparseTeacher]) -> Path:
        buffer = io.BytesIO()
        arrays = _stack(signals)
        np.savez(buffer, **arrays)
        data = buffer.getvalue()
        tokens = int(arrays["offsets"][-1])
        return self.write(key, data, {"sequences": len(signals), "tokens": tokens,
                                      "bytes_per_token": round(len(data) / max(tokens, 1), 1)})


@torch.no_grad()
def compute_topk(model: torch.nn.Module, sequences: Sequence[Sequence[int]], *, k: int, dtype: str,
                 device: str | torch.device = "cpu") -> list[SparseTeacher]:
    """The teacher's top-k signal at every position of every sequence (position t: its distribution over token
    t + 1), one sequence at a time (no padding, so nothing depends on what else is in a batch)."""
    model.eval()
    out = []
    for ids in sequences:
        logits = model(input_ids=torch.tensor([list(ids)], device=device)).logits[0].float().cpu()
        out.append(sparse_from_logits(logits, k, dtype))
    return out


@dataclass
class LmCacheReport:
    status: str  # hit | miss
    teacher_loaded: bool
    path: str


def lm_teacher_topk(teacher: str, sequences: Sequence[Sequence[int]], *, k: int, dtype: str = "float16",
                    cache_dir: str | Path, load_teacher: Callable | None = None,
                    device: str | torch.device = "cpu",
                    on_miss: Callable[[str], None] | None = None) -> tuple[list[SparseTeacher], LmCacheReport]:
    """The cached signal for these sequences, computed on a miss (the teacher is loaded only then; `on_miss` hears
    it first)."""
    from makd.models import model_digest

    if dtype not in VALUE_DTYPES:
        from makd.errors import UsageError

        raise UsageError("topk_dtype", f"expected one of {', '.join(VALUE_DTYPES)}, got {dtype!r}")
    key = LmSignalKey(teacher=model_digest(teacher), k=k, dtype=dtype, data=sequences_digest(sequences))
    return _cached_or_computed(
        SparseTeacherCache(cache_dir), key, teacher, f"computing the teacher's top-{k} signal on {len(sequences)} "
        "sequences", lambda model: compute_topk(model, sequences, k=k, dtype=dtype, device=device),
        load_teacher=load_teacher, device=device, on_miss=on_miss)


def _cached_or_computed(cache, key, teacher: str, what: str, compute: Callable, *, load_teacher: Callable | None,
                        device: str | torch.device, on_miss: Callable[[str], None] | None) -> tuple:
    """The cache's entry for `key`, or `compute(teacher model)` saved there: the teacher is loaded only on a miss,
    after `on_miss` heard `what`."""
    cached = cache.load(key)
    if cached is not None:
        return cached, LmCacheReport("hit", False, str(cache.paths(key)[0]))
    if on_miss is not None:
        on_miss(what)
    if load_teacher is None:
        from makd.lm.causal_lm import load_lm_teacher as load_teacher
    model, _ = load_teacher(teacher)
    model.to(device)
    value = compute(model)
    return value, LmCacheReport("miss", True, str(cache.save(key, value)))


@dataclass(frozen=True)
class FullTeacher:
    """The teacher's full logits at the response positions of a split's sequences, concatenated [tokens, V]
    (float16), and where each sequence's rows start (`offsets`, [sequences + 1])."""

    logits: np.ndarray
    offsets: np.ndarray

    def rows(self, sequences: Sequence[int]) -> torch.Tensor:
        """The given sequences' rows, concatenated in that order, as stored (float16 [N, V]): half the bytes to
        copy to the device, where the caller widens them (`.to(device, torch.float32)`)."""
        parts = [self.logits[self.offsets[i]:self.offsets[i + 1]] for i in sequences]
        return torch.from_numpy(np.concatenate(parts))


@dataclass(frozen=True)
class LmFullKey:
    """Everything that determines a full-logit entry."""

    teacher: str  # models.model_digest(model id)
    data: str  # sequences_digest() of the sequences, then of their response starts

    def digest(self) -> str:
        blob = json.dumps({"format": LM_CACHE_FORMAT, "kind": "full-logits-at-responses", **asdict(self)},
                          sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()


class FullTeacherCache(ChecksummedEntries):
    """A folder of `<digest>.npy` (float16 [tokens, V]) + `<digest>.json` (key, offsets, sha256) entries under
    `<cache dir>/lm-teacher-full`."""

    folder, suffix, what = "lm-teacher-full", ".npy", "LM full-logit cache"

    def load(self, key: LmFullKey) -> FullTeacher | None:
        def parse(npy: Path, meta: dict) -> FullTeacher:
            logits = np.load(npy, allow_pickle=False)
            offsets = np.asarray(meta["offsets"], dtype=np.int64)
            if logits.shape[0] != offsets[-1]:
                raise ValueError(f"{logits.shape[0]} rows, offsets say {offsets[-1]}")
            return FullTeacher(logits, offsets)

        return self.read(key, parse)

    def save(self, key: LmFullKey, full: FullTeacher) -> Path:
        buffer = io.BytesIO()
        np.save(buffer, full.logits, allow_pickle=False)
        return self.write(key, buffer.getvalue(), {"offsets": full.offsets.tolist(),
                                                   "shape": list(full.logits.shape), "dtype": "float16"})


@torch.no_grad()
def compute_full(model: torch.nn.Module, sequences: Sequence[Sequence[int]], prompt_lengths: Sequence[int], *,
                 device: str | torch.device = "cpu") -> FullTeacher:
    """The teacher's logits at each sequence's response positions, one sequence at a time (as `compute_topk`)."""
    model.eval()
    rows, offsets = [], [0]
    for ids, start in zip(sequences, prompt_lengths, strict=True):
        logits = model(input_ids=torch.tensor([list(ids)], device=device)).logits[0]
        kept = logits[response_positions(int(start), len(ids))].float().cpu().numpy().astype(np.float16)
        rows.append(kept)
        offsets.append(offsets[-1] + len(kept))
    if not rows:
        return FullTeacher(np.zeros((0, model.get_output_embeddings().out_features), np.float16), np.zeros(1, np.int64))
    return FullTeacher(np.concatenate(rows), np.asarray(offsets, dtype=np.int64))


def lm_teacher_full(teacher: str, sequences: Sequence[Sequence[int]], prompt_lengths: Sequence[int], *,
                    cache_dir: str | Path, load_teacher: Callable | None = None, device: str | torch.device = "cpu",
                    on_miss: Callable[[str], None] | None = None) -> tuple[FullTeacher, LmCacheReport]:
    """The teacher's full logits at the response positions of these sequences, from the cache or computed on a miss
    (the teacher is loaded only then; `on_miss` hears it first)."""
    from makd.models import model_digest

    data = sequences_digest([*sequences, list(prompt_lengths)])
    key = LmFullKey(teacher=model_digest(teacher), data=data)
    return _cached_or_computed(
        FullTeacherCache(cache_dir), key, teacher,
        f"computing the teacher's full logits at the response tokens of {len(sequences)} sequences",
        lambda model: compute_full(model, sequences, prompt_lengths, device=device),
        load_teacher=load_teacher, device=device, on_miss=on_miss)
