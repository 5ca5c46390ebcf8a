"""makd's losses in a user's own Hugging Face Trainer (issue 45, item 5): docs/method.md's `compute_loss` block, run
as written on a tiny random BERT. The Taylor loss keeps its identity there too: at tau = 1 the Trainer trains ce's
student whatever the teacher, while vanilla KD trains another."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from makd.models import build_student
from tests.helpers import sentiment

DOC = Path(__file__).resolve().parents[1] / "docs" / "method.md"


def documented_trainer():
    """The DistillationTrainer class exactly as docs/method.md shows it."""
    text = DOC.read_text().split("## In your own Hugging Face Trainer", 1)[1]
    (block,) = re.findall(r"```python\n(.*?)```", text.split("\n## ", 1)[0], flags=re.S)
    namespace: dict = {}
    exec(compile(block, str(DOC), "exec"), namespace)  # noqa: S102 - the documented code, run as written
    return namespace["DistillationTrainer"]


class Examples(torch.utils.data.Dataset):
    def __init__(self, tokenizer, teacher_logits: np.ndarray):
        data = sentiment(32)
        self.encoded = tokenizer(list(data.text_a), padding="max_length", truncation=True, max_length=16,
                                 return_tensors="pt")
        self.labels = torch.as_tensor(np.asarray(data.labels), dtype=torch.long)
        self.teacher = torch.as_tensor(teacher_logits)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.encoded["input_ids"][i], "attention_mask": self.encoded["attention_mask"][i],
                "labels": self.labels[i], "teacher_logits": self.teacher[i]}


def trained_weights(tiny_bert_dir, tmp_path, teacher_seed: int, **loss) -> dict:
    from transformers import TrainingArguments

    model, tokenizer = build_student("2x32", 2, seed=0, tokenizer=str(tiny_bert_dir))
    teacher = np.random.default_rng(teacher_seed).normal(0, 3, size=(32, 2)).astype(np.float32)
    args = TrainingArguments(output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, num_train_epochs=1,
                             learning_rate=1e-3, seed=0, report_to=[], save_strategy="no", use_cpu=True,
                             remove_unused_columns=False, logging_strategy="no", dataloader_num_workers=0,
                             disable_tqdm=True)
    trainer = documented_trainer()(model=model, args=args, train_dataset=Examples(tokenizer, teacher), **loss)
    trainer.train()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_the_documented_trainer_keeps_taylor_at_tau_1_equal_to_cross_entropy(tiny_bert_dir, tmp_path):
    ce = trained_weights(tiny_bert_dir, tmp_path, 1, kind="taylor", lam=1.0, tau=1.0)  # lam = 1: plain CE
    taylor = [trained_weights(tiny_bert_dir, tmp_path, seed, kind="taylor", lam=0.5, tau=1.0) for seed in (1, 2)]
    vanilla = trained_weights(tiny_bert_dir, tmp_path, 1, kind="vanilla", lam=0.5, tau=2.0)
    start, _ = build_student("2x32", 2, seed=0, tokenizer=str(tiny_bert_dir))
    assert any(not torch.equal(start.state_dict()[k], ce[k]) for k in ce)  # it trained
    for run in taylor:  # two teachers, one student: the Taylor gradient never reads the teacher
        assert all(torch.equal(run[k], ce[k]) for k in ce)  # bit for bit, as in makd's own loop
    assert any(not torch.allclose(vanilla[k], ce[k], atol=1e-4) for k in ce)


def test_the_documented_trainer_refuses_a_loss_makd_does_not_have(tiny_bert_dir, tmp_path):
    from makd.errors import UsageError

    with pytest.raises(UsageError) as err:
        trained_weights(tiny_bert_dir, tmp_path, 1, kind="kl", lam=0.5, tau=1.0)
    assert "kl" in str(err.value)
