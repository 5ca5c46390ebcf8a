"""A causal-LM task before training (issue 27): texts -> prompts -> the teacher's responses -> token sequences ->
the teacher's top-k signal on every split (and, for reverse KL and JSD, its full logits at train's response tokens),
each computed once and cached (the teacher loads only on a miss, at most once), and the references every student is
reported beside.

What trials receive (`LmTaskData`) holds the signal of the response positions only: nothing else is trained on.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from makd.config import TrainOptions
from makd.data import TextDataset
from makd.lm.cache import FullTeacher
from makd.lm.data import LmSplit, given_responses, lm_split, prompt_ids, response_positions, teacher_responses
from makd.lm.sparse_teacher import SparseTeacher
from makd.tasks import TaskSpec


@dataclass
class LmTaskData:
    """Every split as token sequences, the teacher's top-k signal at the train split's response positions, and its
    top-1 token at every evaluated split's response positions (what agreement is measured against)."""

    train: LmSplit
    eval_sets: dict[str, LmSplit]  # metric suffix ("") and the selection hold-out -> split
    train_signal: list[SparseTeacher]  # per train sequence, its response positions in order
    teacher_top1: dict[str, list[np.ndarray]]  # per eval split, per sequence
    cache: dict = field(default_factory=dict)  # responses/signal: hit or miss per split; the teacher's seconds
    train_full: FullTeacher | None = None  # full logits at train's response positions, when a loss needs them


def _response_signal(signal: SparseTeacher, split: LmSplit, row: int) -> SparseTeacher:
    where = response_positions(int(split.prompt_lengths[row]), len(split.sequences[row]))
    return SparseTeacher(signal.indices[where], signal.logprobs[where], signal.tail_logprob[where],
                         signal.entropy[where])


def prepare_lm_task(teacher: str, task: TaskSpec, train_ds: TextDataset, eval_sets: Mapping[str, TextDataset],
                    options: TrainOptions, cache_dir: str | Path, *, device: str = "cpu", progress: bool = False,
                    full_teacher: bool = False, tokenizer=None) -> LmTaskData:
    """The task's splits as LM data: each text in `task.prompt_template`, its response (the split's own, text_b, or
    else the teacher's greedy answer, `options.lm_max_new_tokens`), and the teacher's top-k signal (`options.lm_top_k`,
    `options.lm_topk_dtype`), each from the cache when it holds them. `full_teacher`: also the teacher's full logits
    at train's response positions (reverse KL, JSD). `tokenizer`: the teacher's, when the caller has it loaded.
    `progress`: a line on stderr before each thing computed on a miss."""
    from makd.lm.cache import lm_teacher_full, lm_teacher_topk
    from makd.lm.causal_lm import load_lm_teacher
    from makd.models import load_tokenizer

    loaded: dict = {}
    start = time.perf_counter()

    def load(model_id: str):
        if "teacher" not in loaded:
            loaded["teacher"] = load_lm_teacher(model_id)
        return loaded["teacher"]

    def announcer(split: str):
        def say(what: str) -> None:
            if progress:
                print(f"makd: [{split or 'dev'} split] {what}", file=sys.stderr, flush=True)
        return say

    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(teacher, "teacher")
    splits = {"train": train_ds, **eval_sets}
    lm, signals, statuses = {}, {}, {}
    teacher_seconds = 0.0  # loading the teacher and running it, on the cache's misses only

    def ran(since: float, status: str) -> str:
        nonlocal teacher_seconds
        teacher_seconds += time.perf_counter() - since if status == "miss" else 0.0
        return status

    for name, ds in splits.items():
        say = announcer(name)
        prompts = [prompt_ids(tokenizer, text, task.prompt_template) for text in ds.text_a]
        since = time.perf_counter()
        if ds.text_b is not None:
            responses, said = given_responses(tokenizer, ds.text_b), "given"
        else:
            responses, said = teacher_responses(teacher, prompts, max_new_tokens=options.lm_max_new_tokens,
                                                cache_dir=cache_dir, load_teacher=load, device=device, on_miss=say)
        ran(since, said)
        lm[name] = lm_split(ds, prompts, responses, options.max_length)
        since = time.perf_counter()
        signals[name], report = lm_teacher_topk(teacher, lm[name].sequences, k=options.lm_top_k,
                                                dtype=options.lm_topk_dtype, cache_dir=cache_dir, load_teacher=load,
                                                device=device, on_miss=say)
        statuses[name] = {"responses": said, "signal": ran(since, report.status), "left_out": lm[name].left_out}
    train = lm.pop("train")
    full = None
    if full_teacher:
        since = time.perf_counter()
        full, report = lm_teacher_full(teacher, train.sequences, train.prompt_lengths, cache_dir=cache_dir,
                                       load_teacher=load, device=device, on_miss=announcer("train"))
        statuses["train"]["full_logits"] = ran(since, report.status)
    train_signal = [_response_signal(s, train, i) for i, s in enumerate(signals["train"])]
    top1 = {name: [_response_signal(s, split, i).indices[:, 0].numpy().astype(np.int64)
                   for i, s in enumerate(signals[name])] for name, split in lm.items()}
    return LmTaskData(train, lm, train_signal, top1,
                      {"splits": statuses, "teacher_loaded": bool(loaded),
                       "seconds": round(time.perf_counter() - start, 2),
                       "teacher_seconds": round(teacher_seconds, 2),
                       "response_tokens": {"train": train.response_tokens,
                                           **{n: s.response_tokens for n, s in lm.items()}}},
                      full)


def lm_references(data: LmTaskData, tokenizer=None) -> dict:
    """The chance level and the teacher's own score, in agreement's units: the constant predictor of the most
    frequent teacher top-1 token among train's response positions (`majority_score`: its agreement with the teacher
    on dev), and the teacher's agreement with itself (`teacher_score`: 1 by definition)."""
    train_tokens = np.concatenate([s.indices[:, 0].numpy() for s in data.train_signal])
    counts = np.bincount(train_tokens.astype(np.int64))
    constant = int(counts.argmax())
    dev = np.concatenate(data.teacher_top1[""]) if "" in data.teacher_top1 else np.zeros(0, np.int64)
    word = tokenizer.decode([constant]) if tokenizer is not None else str(constant)
    return {"majority_score": float((dev == constant).mean()) if dev.size else float("nan"),
            "majority_prediction": f"the token {word!r} ({100 * counts[constant] / counts.sum():.0f}% of train's "
                                   "response tokens)",
            "teacher_score": 1.0}
