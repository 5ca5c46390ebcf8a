"""A causal-LM task end to end without Ray (issue 27): prompts from SST-2's sentences, the teacher's greedy responses
and top-k signal computed once and cached (makd/lm/data.py, makd/lm/pipeline.py), and the student's training loop
(makd/lm/train.py): taylor at τ = 1 is ce's student weight for weight, a run resumes from its checkpoint to the same
weights, and what an LM trial cannot do is refused in one line."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import yaml

from makd.config import TrainConfig, TrainOptions
from makd.data import TextDataset
from makd.errors import UsageError
from makd.lm.data import LmSplit, lm_split, prompt_ids
from makd.lm.pipeline import LmTaskData, lm_references, prepare_lm_task
from makd.lm.sparse_teacher import sparse_from_logits
from makd.lm.train import check_lm_loss, check_lm_tau, train_lm
from makd.models import load_tokenizer
from makd.pipeline import DataSource, load_datasets
from makd.tasks import get_task
from makd_sweep.config import load_config

FIXTURE_GLUE = Path(__file__).resolve().parent / "fixtures" / "glue"
SST2LM = get_task("sst2lm")


def options(teacher: Path, **overrides) -> TrainOptions:
    values = {"teacher": str(teacher), "max_length": 128, "max_train_samples": 24, "max_eval_samples": 12,
              "lm_max_new_tokens": 6, "epochs": 2, "batch_size": 8, "lr": 1e-3, "lm_top_k": 8}
    return TrainOptions(**{**values, **overrides})


@pytest.fixture(scope="module")
def lm_task(talking_llama_dir, tmp_path_factory) -> tuple[TrainOptions, LmTaskData, Path]:
    opts = options(talking_llama_dir)
    train, evals = load_datasets("sst2lm", DataSource(glue_dir=str(FIXTURE_GLUE)), opts)
    cache = tmp_path_factory.mktemp("lm-cache")
    return opts, prepare_lm_task(str(talking_llama_dir), SST2LM, train, evals, opts, cache), cache


def config(opts: TrainOptions, loss: str, lam: float, student: str = "2x32", **overrides) -> TrainConfig:
    return TrainConfig(**{"task": "sst2lm", "student": student, "loss": loss, "lam": lam, **dataclasses.asdict(opts),
                          **overrides})


def test_the_teacher_answers_once_and_the_sequences_hold_its_answers(lm_task, talking_llama_dir, monkeypatch):
    opts, data, cache = lm_task
    assert data.cache["teacher_loaded"] and set(data.cache["splits"]) == {"train", "holdout", ""}
    assert all(s["responses"] == s["signal"] == "miss" for s in data.cache["splits"].values())
    assert 0 < data.cache["teacher_seconds"] <= data.cache["seconds"]
    tokenizer = load_tokenizer(str(talking_llama_dir))
    first = data.train.sequences[0]
    prompt = prompt_ids(tokenizer, data.train.texts[0], SST2LM.prompt_template)
    assert tokenizer.decode(prompt).startswith("review :")  # the instruction (an uncased tokenizer, no chat template)
    assert list(first[:len(prompt)]) == prompt and data.train.prompt_lengths[0] == len(prompt)
    responses = [tokenizer.decode(s[p:]) for s, p in zip(data.train.sequences, data.train.prompt_lengths, strict=True)]
    assert len(set(responses)) > len(responses) // 2  # the teacher answers each prompt in its own way
    for sequence, start, signal in zip(data.train.sequences, data.train.prompt_lengths, data.train_signal, strict=True):
        assert signal.indices.shape == (len(sequence) - start, opts.lm_top_k)
        # greedy responses: the teacher's top-1 token at each response position is the token it answered
        assert np.array_equal(signal.indices[:, 0].numpy(), sequence[start:])

    def refuse(spec):
        raise AssertionError("the teacher was loaded although the cache holds its answers")

    monkeypatch.setattr("makd.lm.causal_lm.load_lm_teacher", refuse)
    train, evals = load_datasets("sst2lm", DataSource(glue_dir=str(FIXTURE_GLUE)), opts)
    hit = prepare_lm_task(str(talking_llama_dir), SST2LM, train, evals, opts, cache)
    assert not hit.cache["teacher_loaded"] and hit.cache["teacher_seconds"] == 0
    assert all(s["responses"] == s["signal"] == "hit" for s in hit.cache["splits"].values())
    assert all(np.array_equal(a, b) for a, b in zip(hit.train.sequences, data.train.sequences, strict=True))


def test_a_prompt_that_leaves_no_room_for_a_response_is_left_out_and_counted():
    ds = TextDataset("sst2lm", "train", ["a", "b", "c"], None, np.array([0, 1, 0]), "test")
    split = lm_split(ds, [[1, 2], [1, 2, 3, 4, 5], [7]], [np.array([9, 9]), np.array([8]), np.array([6, 6, 6])],
                     max_length=4)
    assert split.left_out == 1 and split.texts == ["a", "c"] and list(split.labels) == [0, 0]
    assert [list(s) for s in split.sequences] == [[1, 2, 9, 9], [7, 6, 6, 6]]
    with pytest.raises(UsageError, match="max_length"):
        lm_split(ds, [[1, 2, 3]] * 3, [np.array([9])] * 3, max_length=3)


def test_the_references_are_the_most_frequent_response_token_and_the_teacher_itself():
    import torch

    def signal(tokens):
        logits = torch.full((len(tokens), 5), -9.0)
        logits[torch.arange(len(tokens)), torch.tensor(tokens)] = 9.0
        return sparse_from_logits(logits, 2, "float32")

    split = LmSplit([np.array([0, 1])], np.array([1]), ["x"], np.array([0]))
    data = LmTaskData(split, {"": split}, [signal([3, 3, 3, 1])], {"": [np.array([3, 2, 2, 2])]})
    refs = lm_references(data)
    assert refs["majority_score"] == pytest.approx(0.25) and refs["teacher_score"] == 1.0
    assert "75% of train's response tokens" in refs["majority_prediction"]


def test_taylor_at_tau_1_trains_the_ce_student_weight_for_weight_and_vanilla_does_not(lm_task):
    opts, data, _ = lm_task
    prints = {}
    for loss, lam in (("ce", 1.0), ("taylor", 0.0), ("taylor", 0.5), ("vanilla", 0.0)):
        result = train_lm(config(opts, loss, lam), data, probe=False)
        prints[loss, lam] = [h.weights_fingerprint for h in result.history]
        for epoch in result.history:
            assert 0.0 <= epoch.score <= 1.0 and epoch.metrics["perplexity"] > 1.0
            assert epoch.score == epoch.metrics["holdout_agreement"] and epoch.dev_score == epoch.metrics["agreement"]
    assert prints["taylor", 0.0] == prints["taylor", 0.5] == prints["ce", 1.0]
    assert prints["vanilla", 0.0] != prints["ce", 1.0]


def test_a_run_resumes_from_its_checkpoint_to_the_same_student(lm_task, tmp_path):
    opts, data, _ = lm_task
    cfg = config(opts, "vanilla", 0.5, epochs=3)
    whole = train_lm(cfg, data, checkpoint_dir=tmp_path / "whole", probe=False)

    class Killed(Exception):
        pass

    def kill_after_first(result, _):
        if result.epoch == 1:
            raise Killed

    with pytest.raises(Killed):
        train_lm(cfg, data, checkpoint_dir=tmp_path / "cut", on_epoch_end=kill_after_first, probe=False)
    resumed = train_lm(cfg, data, checkpoint_dir=tmp_path / "cut", probe=False)
    assert resumed.resumed_from_epoch == 1
    assert [h.weights_fingerprint for h in resumed.history] == [h.weights_fingerprint for h in whole.history]
    assert (tmp_path / "cut" / "best_model.pt").is_file()


def test_the_probe_scores_the_dev_texts_every_epoch(lm_task):
    opts, data, _ = lm_task
    result = train_lm(config(opts, "ce", 1.0, epochs=1), data)
    assert 0.0 <= result.history[0].metrics["probe_accuracy"] <= 1.0


@pytest.mark.parametrize(("check", "value", "field"), [(check_lm_loss, "mse", "losses"), (check_lm_tau, 2.0, "taus")])
def test_what_an_lm_trial_cannot_train_is_refused_in_one_line(check, value, field):
    with pytest.raises(UsageError) as err:
        check(value)
    assert err.value.field == field and "\n" not in str(err.value)


def test_reverse_kl_and_jsd_train_from_the_teachers_full_logits_computed_once(lm_task, talking_llama_dir,
                                                                              monkeypatch):
    import torch

    from makd.lm.causal_lm import load_lm_teacher

    opts, data, cache = lm_task
    train, evals = load_datasets("sst2lm", DataSource(glue_dir=str(FIXTURE_GLUE)), opts)
    full = prepare_lm_task(str(talking_llama_dir), SST2LM, train, evals, opts, cache, full_teacher=True)
    assert full.cache["splits"]["train"]["full_logits"] == "miss" and full.cache["splits"]["train"]["signal"] == "hit"
    teacher, _ = load_lm_teacher(str(talking_llama_dir))
    with torch.no_grad():
        live = teacher(input_ids=torch.tensor([list(full.train.sequences[1])])).logits[0]
    start = int(full.train.prompt_lengths[1])
    assert full.train_full.rows([1]).dtype == torch.float16  # as on disk: widened on the device
    assert torch.allclose(full.train_full.rows([1]).float(), live[start - 1:-1].float(), atol=2e-2)
    assert torch.equal(full.train_full.rows([1]).argmax(-1), full.train_signal[1].indices[:, 0].long())

    def refuse(spec):
        raise AssertionError("the teacher was loaded although the cache holds its full logits")

    monkeypatch.setattr("makd.lm.causal_lm.load_lm_teacher", refuse)
    hit = prepare_lm_task(str(talking_llama_dir), SST2LM, train, evals, opts, cache, full_teacher=True)
    assert hit.cache["splits"]["train"]["full_logits"] == "hit"
    assert np.array_equal(hit.train_full.logits, full.train_full.logits)

    prints = {}
    for loss in ("ce", "reverse_kl", "jsd"):
        prints[loss] = train_lm(config(opts, loss, 0.0 if loss != "ce" else 1.0, epochs=1), full,
                                probe=False).history[0].weights_fingerprint
    assert len(set(prints.values())) == 3
    # the teacher is in their gradient: other full logits train another student
    shuffled = dataclasses.replace(full, train_full=dataclasses.replace(
        full.train_full, logits=np.ascontiguousarray(full.train_full.logits[:, ::-1])))
    other = train_lm(config(opts, "reverse_kl", 0.0, epochs=1), shuffled, probe=False).history[0]
    assert other.weights_fingerprint != prints["reverse_kl"]
    with pytest.raises(ValueError, match="full_teacher=True"):
        train_lm(config(opts, "jsd", 0.5, epochs=1), data, probe=False)
    at_lam_1 = train_lm(config(opts, "reverse_kl", 1.0, epochs=1), data, probe=False).history[0]  # no teacher read
    assert at_lam_1.weights_fingerprint == prints["ce"]


@pytest.mark.parametrize(("overrides", "field", "words"), [
    ({"tasks": ["sst2lm", "rte"]}, "tasks", "two sweeps"),
    ({"teacher": None}, "teacher", "causal-LM teacher"),
    ({"losses": ["ce", "mse"]}, "losses[1]", "trains ce"),
    ({"taus": [1.0, 2.0]}, "taus", "τ = 1 only"),
    ({"pack": {"size": 2, "mode": "fused"}}, "pack.mode", "sequentially"),
    ({"resources_per_trial": {"cpu": 1, "gpu": "auto"}}, "resources_per_trial.gpu", "number"),
    ({"teacher_finetune": {"epochs": 1}}, "teacher_finetune", "as it is"),
])
def test_a_sweep_of_causal_lm_tasks_refuses_what_they_cannot_do(tmp_path, overrides, field, words):
    raw = {"name": "lm", "tasks": ["sst2lm"], "teacher": "zoo:smollm2-135m", "students": ["2x64"],
           "losses": ["ce", "vanilla", "taylor"], **overrides}
    path = tmp_path / "lm.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in raw.items() if v is not None}))
    with pytest.raises(UsageError) as err:
        load_config(path)
    assert err.value.field == field and words in err.value.problem, str(err.value)


def write_answers(folder: Path, n: int = 12) -> tuple[Path, Path]:
    """A user's causal-LM task: prompts with their own responses, as jsonl."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for split, size in (("train", n), ("dev", n // 2)):
        rows = [{"prompt": f"what is {i} plus {i}?", "response": f"{2 * i}, the sum"} for i in range(size)]
        paths.append(folder / f"{split}.jsonl")
        paths[-1].write_text("".join(json.dumps(r) + "\n" for r in rows))
    return paths[0], paths[1]


def test_your_own_prompts_with_their_responses_are_a_causal_lm_task(talking_llama_dir, tmp_path):
    from makd.file_tasks import parse_file_task
    from makd.tasks import BUILTIN_TASK_NAMES

    train_file, eval_file = write_answers(tmp_path / "answers")
    task = parse_file_task({"name": "answers", "type": "causal_lm", "train_file": str(train_file),
                            "eval_file": str(eval_file), "response_column": "response"}, "tasks[0]", BUILTIN_TASK_NAMES)
    spec = task.register()
    assert spec.is_causal_lm and spec.labels is None and spec.metric == "agreement"
    train, dev = task.load()
    assert train.text_a[3] == "what is 3 plus 3?" and train.text_b[3] == "6, the sum"
    opts = options(talking_llama_dir, max_train_samples=None, max_eval_samples=None, holdout_fraction=0.0)
    data = prepare_lm_task(str(talking_llama_dir), spec, train, {"": dev}, opts, tmp_path / "cache")
    assert data.cache["splits"]["train"]["responses"] == "given"
    tokenizer = load_tokenizer(str(talking_llama_dir))
    sequence, start = data.train.sequences[3], data.train.prompt_lengths[3]
    assert tokenizer.decode(sequence[start:]) == "6, the sum" + (f" {tokenizer.eos_token}" if tokenizer.eos_token else "")
    result = train_lm(config(opts, "vanilla", 0.5, epochs=1, task="answers"), data)
    assert "probe_accuracy" not in result.history[0].metrics  # no sentiment labels: no probe
    assert 0.0 <= result.history[0].score <= 1.0


@pytest.mark.parametrize(("raw", "field", "words"), [
    ({"type": "causal_lm", "labels": ["a", "b"]}, "tasks[0].labels", "not a field of a causal_lm task"),
    ({"type": "causal_lm", "prompt_column": "q", "response_column": "q"}, "tasks[0].response_column", "differ"),
    ({"prompt_column": "q"}, "tasks[0].prompt_column", "causal_lm only"),
    ({"type": "generation"}, "tasks[0].type", "causal_lm"),
])
def test_a_causal_lm_file_task_refuses_what_it_does_not_have_in_one_line(tmp_path, raw, field, words):
    from makd.file_tasks import parse_file_task
    from makd.tasks import BUILTIN_TASK_NAMES

    with pytest.raises(UsageError) as err:
        parse_file_task({"name": "mine", "train_file": "t.jsonl", "eval_file": "d.jsonl", **raw}, "tasks[0]",
                        BUILTIN_TASK_NAMES)
    assert err.value.field == field and words in err.value.problem


def test_a_prompt_file_without_its_column_or_with_an_empty_prompt_is_named_in_one_line(tmp_path):
    from makd.data import load_prompt_file

    spec = get_task("sst2lm")
    path = tmp_path / "p.csv"
    path.write_text("question,answer\nhi,there\n,empty\n")
    with pytest.raises(UsageError, match="missing column 'prompt'") as err:
        load_prompt_file(spec, "train", path, ("prompt",))
    assert err.value.field == str(path)
    with pytest.raises(UsageError, match="row 2: empty 'question'"):
        load_prompt_file(spec, "train", path, ("question", "answer"))


def test_a_usage_error_survives_the_copy_ray_makes_of_a_trials_exception():
    import copy
    import pickle

    err = UsageError("task", "unknown task 'x'")
    for clone in (copy.copy(err), pickle.loads(pickle.dumps(err))):
        assert (clone.field, clone.problem, str(clone)) == ("task", "unknown task 'x'", "task: unknown task 'x'")
