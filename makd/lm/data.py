"""A causal-LM task's data (issue 27): instruction prompts made of a task's texts, the teacher's greedy responses as
the targets (sequence-level KD: generated once per teacher, prompts and settings, and cached like its logits), and
every example as one token sequence, prompt then response.

Students are trained and scored on the response tokens only: position t of a sequence predicts token t + 1, so the
positions prompt_length - 1 ... length - 2 are the ones that count (`response_positions`).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from makd.cache import ChecksummedEntries
from makd.data import TextDataset
from makd.errors import UsageError

LM_DATA_FORMAT = 1


@dataclass
class LmSplit:
    """One split as token sequences (prompt ids, then response ids), with the texts and labels they came from (the
    zero-shot probe reads those)."""

    sequences: list[np.ndarray]  # int64 token ids
    prompt_lengths: np.ndarray  # int64: where each response starts
    texts: list[str]
    labels: np.ndarray
    left_out: int = 0  # examples whose prompt did not fit within max_length

    def __len__(self) -> int:
        return len(self.sequences)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(s) for s in self.sequences], dtype=np.int64)

    @property
    def response_tokens(self) -> int:
        return int((self.lengths - self.prompt_lengths).sum())


def sequences_digest(sequences: Sequence[Sequence[int]]) -> str:
    digest = hashlib.sha256()
    for ids in sequences:
        digest.update(np.asarray(ids, dtype=np.int64).tobytes())
        digest.update(b"|")
    return digest.hexdigest()


def response_positions(prompt_length: int, length: int) -> slice:
    """The positions whose next token is a response token."""
    return slice(prompt_length - 1, length - 1)


def prompt_ids(tokenizer, text: str, template: str = "{text}") -> list[int]:
    """The prompt's token ids: the tokenizer's chat template around the instruction when it has one (an instruct
    teacher answers in its own format), else the instruction and a newline."""
    message = template.format(text=text)
    if getattr(tokenizer, "chat_template", None):
        return list(tokenizer.apply_chat_template([{"role": "user", "content": message}], add_generation_prompt=True,
                                                  tokenize=True, return_dict=False))
    return list(tokenizer(message + "\n", add_special_tokens=False)["input_ids"])


@dataclass(frozen=True)
class ResponseKey:
    """Everything that determines the teacher's responses."""

    teacher: str  # models.model_digest: the weights, not just the name
    prompts: str  # sequences_digest of the prompts' token ids
    max_new_tokens: int
    decoding: str = "greedy"

    def digest(self) -> str:
        blob = json.dumps({"format": LM_DATA_FORMAT, **asdict(self)}, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()


class ResponseCache(ChecksummedEntries):
    """The teacher's responses (token ids) to a list of prompts, under `<cache dir>/lm-teacher-responses`."""

    folder, suffix, what = "lm-teacher-responses", ".npz", "LM response cache"

    def load(self, key: ResponseKey) -> list[np.ndarray] | None:
        def parse(npz: Path, meta: dict) -> list[np.ndarray]:
            with np.load(npz, allow_pickle=False) as data:
                tokens, offsets = data["tokens"], data["offsets"]
            return [tokens[a:b].copy() for a, b in zip(offsets[:-1], offsets[1:], strict=True)]

        return self.read(key, parse)

    def save(self, key: ResponseKey, responses: Sequence[np.ndarray]) -> Path:
        offsets = np.cumsum([0] + [len(r) for r in responses]).astype(np.int64)
        tokens = np.concatenate([np.asarray(r, dtype=np.int64) for r in responses]) if responses else np.zeros(0, np.int64)
        buffer = io.BytesIO()
        np.savez(buffer, tokens=tokens, offsets=offsets)
        return self.write(key, buffer.getvalue(), {"responses": len(responses), "tokens": int(offsets[-1])})


def generate_responses(model, prompts: Sequence[Sequence[int]], *, max_new_tokens: int, eos_token_id: int | None,
                       device: str = "cpu") -> list[np.ndarray]:
    """Greedy responses, one prompt at a time (no padding: a response does not depend on its batch), each ending
    with the end-of-sequence token when the teacher stopped before max_new_tokens."""
    import torch
    from tqdm.auto import tqdm

    model.eval()
    out = []
    with torch.no_grad():  # disable=None: a bar on a terminal only (a log file would get a line per redraw)
        for ids in tqdm(prompts, desc="teacher responses", unit="prompt", disable=None, leave=False):
            inputs = torch.tensor([list(ids)], device=device)
            generated = model.generate(inputs, attention_mask=torch.ones_like(inputs), max_new_tokens=max_new_tokens,
                                       do_sample=False, eos_token_id=eos_token_id, pad_token_id=eos_token_id or 0)
            out.append(generated[0, inputs.shape[1]:].cpu().numpy().astype(np.int64))
    return out


def teacher_responses(teacher: str, prompts: Sequence[Sequence[int]], *, max_new_tokens: int, cache_dir: str | Path,
                      load_teacher: Callable | None = None, device: str = "cpu",
                      on_miss: Callable[[str], None] | None = None) -> tuple[list[np.ndarray], str]:
    """The teacher's cached greedy responses to these prompts, generated on a miss; returns (responses, 'hit' or
    'miss'). The teacher is loaded only on a miss; `on_miss` hears what is computed then (minutes for an LLM)."""
    from makd.models import model_digest

    if not 1 <= max_new_tokens <= 4096:
        raise UsageError("lm_max_new_tokens", f"must be between 1 and 4096, got {max_new_tokens}")
    key = ResponseKey(model_digest(teacher), sequences_digest(prompts), max_new_tokens)
    cache = ResponseCache(cache_dir)
    cached = cache.load(key)
    if cached is not None:
        return cached, "hit"
    if on_miss is not None:
        on_miss(f"generating the teacher's responses to {len(prompts)} prompts (at most {max_new_tokens} tokens each)")
    if load_teacher is None:
        from makd.lm.causal_lm import load_lm_teacher as load_teacher
    model, tokenizer = load_teacher(teacher)
    model.to(device)
    responses = generate_responses(model, prompts, max_new_tokens=max_new_tokens,
                                   eos_token_id=tokenizer.eos_token_id, device=device)
    if any(len(r) == 0 for r in responses):
        raise UsageError("teacher", f"{teacher} gave an empty response to a prompt: nothing to distil")
    cache.save(key, responses)
    return responses, "miss"


def given_responses(tokenizer, responses: Sequence[str]) -> list[np.ndarray]:
    """A task's own responses as token ids, each ending with the end-of-sequence token (the student learns to stop)."""
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    return [np.asarray(tokenizer(text, add_special_tokens=False)["input_ids"] + eos, dtype=np.int64)
            for text in responses]


def lm_split(ds: TextDataset, prompts: Sequence[Sequence[int]], responses: Sequence[np.ndarray],
             max_length: int) -> LmSplit:
    """Prompt + response sequences, each cut to max_length tokens. An example whose prompt leaves no room for a
    response token within max_length is left out and counted (`LmSplit.left_out`), never trained on half."""
    sequences, prompt_lengths, kept = [], [], []
    for i, (prompt, response) in enumerate(zip(prompts, responses, strict=True)):
        if len(prompt) + 1 > max_length:
            continue
        sequences.append(np.concatenate([np.asarray(prompt, dtype=np.int64), np.asarray(response, np.int64)])[:max_length])
        prompt_lengths.append(len(prompt))
        kept.append(i)
    if not kept:
        longest = max((len(p) for p in prompts), default=0)
        raise UsageError("max_length", f"no prompt of the {ds.split} split fits within max_length {max_length} with a "
                                       f"response token (the shortest needs {min(len(p) for p in prompts) + 1}, the "
                                       f"longest {longest + 1}): raise max_length")
    return LmSplit(sequences, np.asarray(prompt_lengths, dtype=np.int64), [ds.text_a[i] for i in kept],
                   np.asarray(ds.labels)[kept], left_out=len(prompts) - len(kept))
