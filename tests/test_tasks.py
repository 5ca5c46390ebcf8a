"""Task registry entries, official metrics against hand computations, and the STS-B Platt round trip."""

from __future__ import annotations

import math

import numpy as np
import pytest

from makd.errors import UsageError
from makd.tasks import TASKS, compute_metrics, get_task

EXPECTED = {
    # name: (glue_dir, hub_config, text_fields, labels, metric, metric_names)
    "cola": ("CoLA", "cola", ("sentence",), ("unacceptable", "acceptable"), "mcc", ("mcc",)),
    "sst2": ("SST-2", "sst2", ("sentence",), ("negative", "positive"), "accuracy", ("accuracy",)),
    "mrpc": ("MRPC", "mrpc", ("sentence1", "sentence2"), ("not_equivalent", "equivalent"), "f1",
             ("f1", "accuracy")),
    "qqp": ("QQP", "qqp", ("question1", "question2"), ("not_duplicate", "duplicate"), "f1", ("f1", "accuracy")),
    "stsb": ("STS-B", "stsb", ("sentence1", "sentence2"), None, "pearson", ("pearson", "spearman")),
    "mnli": ("MNLI", "mnli", ("premise", "hypothesis"), ("entailment", "neutral", "contradiction"), "accuracy_m",
             ("accuracy_m", "accuracy_mm")),
    "qnli": ("QNLI", "qnli", ("question", "sentence"), ("entailment", "not_entailment"), "accuracy",
             ("accuracy",)),
    "rte": ("RTE", "rte", ("sentence1", "sentence2"), ("entailment", "not_entailment"), "accuracy", ("accuracy",)),
    "wnli": ("WNLI", "wnli", ("sentence1", "sentence2"), ("not_entailment", "entailment"), "accuracy",
             ("accuracy",)),
}


def test_registry_has_exactly_the_nine_glue_tasks_and_one_causal_lm_task():
    assert sorted(name for name, task in TASKS.items() if not task.is_causal_lm) == sorted(EXPECTED)
    lm = TASKS["sst2lm"]
    assert [name for name, task in TASKS.items() if task.is_causal_lm] == ["sst2lm"]
    assert (lm.glue_dir, lm.metric, lm.metric_names) == ("SST-2", "agreement", ("agreement", "perplexity",
                                                                               "probe_accuracy"))
    assert not lm.is_regression and lm.column_header == "SST-2 LM (Agree)" and get_task("SST-2-LM") is lm


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_registry_entry(name):
    glue_dir, hub_config, text_fields, labels, metric, metric_names = EXPECTED[name]
    task = TASKS[name]
    assert (task.name, task.glue_dir, task.hub_config) == (name, glue_dir, hub_config)
    assert task.text_fields == text_fields
    assert task.labels == labels
    assert task.metric == metric
    assert task.metric_names == metric_names
    assert task.metric_names[0] == task.metric
    assert task.is_regression == (labels is None)
    assert task.num_labels == (2 if labels is None else len(labels))
    if name == "mnli":
        assert task.eval_splits == (("validation_matched", "m"), ("validation_mismatched", "mm"))
    else:
        assert task.eval_splits == (("validation", ""),)
    assert task.splits == ("train",) + tuple(s for s, _ in task.eval_splits)


@pytest.mark.parametrize("spelling, name", [("rte", "rte"), ("RTE", "rte"), ("sst-2", "sst2"), ("SST2", "sst2"),
                                            ("sts-b", "stsb"), ("STS-B", "stsb"), ("stsb", "stsb"), (" CoLA ", "cola")])
def test_get_task_spellings(spelling, name):
    assert get_task(spelling) is TASKS[name]


def test_unknown_task_lists_choices():
    with pytest.raises(UsageError) as err:
        get_task("foo")
    assert err.value.field == "task"
    assert str(err.value) == ("task: unknown task 'foo' (choose from cola, mnli, mrpc, qnli, qqp, rte, sst2, sst2lm, "
                              "stsb, wnli)")


def test_target_probs_one_hot():
    probs = get_task("mnli").target_probs(np.array([2, 0, 1]))
    assert probs.dtype == np.float32
    np.testing.assert_array_equal(probs, [[0, 0, 1], [1, 0, 0], [0, 1, 0]])


def test_target_probs_rejects_out_of_range_ids():
    with pytest.raises(UsageError, match="labels"):
        get_task("rte").target_probs(np.array([0, 2]))


def test_stsb_platt_targets_match_the_formula():
    scores = np.array([0.0, 2.5, 3.8, 5.0], dtype=np.float32)
    probs = get_task("stsb").target_probs(scores)
    assert probs.dtype == np.float32 and probs.shape == (4, 2)
    p = [1.0 / (1.0 + math.exp(-(float(t) - 2.5))) for t in scores]
    np.testing.assert_allclose(probs[:, 1], p, rtol=1e-6)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    assert probs[1, 1] == pytest.approx(0.5)


def test_stsb_predictions_invert_target_probs():
    task = get_task("stsb")
    scores = np.linspace(0.0, 5.0, 21, dtype=np.float32)
    recovered = task.predictions(np.log(task.target_probs(scores)))
    np.testing.assert_allclose(recovered, scores, atol=1e-5)
    # Any logit pair: only the difference matters, and nothing is clipped to 0..5.
    np.testing.assert_allclose(task.predictions(np.array([[1.0, 4.0], [10.0, 0.0]])), [5.5, -7.5])


def test_classification_predictions_are_argmax_ids():
    preds = get_task("mnli").predictions(np.array([[0.1, 0.5, 0.2], [3.0, -1.0, 0.0]]))
    assert preds.dtype == np.int64
    np.testing.assert_array_equal(preds, [1, 0])
    with pytest.raises(UsageError, match="logits"):
        get_task("rte").predictions(np.zeros((2, 3)))


def test_accuracy():
    out = compute_metrics(get_task("rte"), np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0]))
    assert out == {"accuracy": 0.75}
    assert type(out["accuracy"]) is float


def test_f1_and_accuracy_for_mrpc():
    # preds 1,1,0,1,0 vs refs 1,0,0,1,1: tp=2, fp=1, fn=1 -> precision 2/3, recall 2/3, f1 2/3; accuracy 3/5.
    out = compute_metrics(get_task("mrpc"), np.array([1, 1, 0, 1, 0]), np.array([1, 0, 0, 1, 1]))
    assert list(out) == ["f1", "accuracy"]
    assert out["f1"] == pytest.approx(2 / 3)
    assert out["accuracy"] == pytest.approx(0.6)


def test_f1_is_of_the_positive_class():
    # Only negatives predicted right: positive-class F1 is 0 even though accuracy is 0.5.
    out = compute_metrics(get_task("qqp"), np.array([0, 0]), np.array([0, 1]))
    assert out == {"f1": 0.0, "accuracy": 0.5}


def test_mcc_for_cola():
    # tp=2, tn=1, fp=1, fn=1: (2*1 - 1*1) / sqrt(3*3*2*2) = 1/6.
    out = compute_metrics(get_task("cola"), np.array([1, 1, 0, 1, 0]), np.array([1, 1, 0, 0, 1]))
    assert out == {"mcc": pytest.approx(1 / 6)}


def test_mcc_of_constant_predictions_is_zero():
    assert compute_metrics(get_task("cola"), np.ones(4, dtype=int), np.array([0, 1, 1, 0])) == {"mcc": 0.0}


def test_pearson_and_spearman_for_stsb():
    preds = np.array([1.0, 2.0, 3.0, 4.0])
    refs = np.array([1.0, 3.0, 2.0, 5.0])
    # Pearson by hand: centred x = [-1.5,-.5,.5,1.5], y = [-1.75,.25,-.75,2.25]; sum xy = 5.5,
    # sum x^2 = 5, sum y^2 = 8.75. Spearman: ranks [1,2,3,4] vs [1,3,2,4] -> 1 - 6*2/(4*15) = 0.8.
    out = compute_metrics(get_task("stsb"), preds, refs)
    assert list(out) == ["pearson", "spearman"]
    assert out["pearson"] == pytest.approx(5.5 / math.sqrt(5 * 8.75))
    assert out["spearman"] == pytest.approx(0.8)


def test_constant_stsb_predictions_score_zero_not_nan():
    out = compute_metrics(get_task("stsb"), np.full(3, 2.5), np.array([1.0, 2.0, 4.0]))
    assert out == {"pearson": 0.0, "spearman": 0.0}


def test_mnli_suffixes():
    task = get_task("mnli")
    preds, refs = np.array([0, 1, 2, 2]), np.array([0, 1, 2, 0])
    assert compute_metrics(task, preds, refs, suffix="m") == {"accuracy_m": 0.75}
    assert compute_metrics(task, preds, refs, suffix="mm") == {"accuracy_mm": 0.75}
    with pytest.raises(UsageError, match="suffix"):
        compute_metrics(task, preds, refs)


def test_metric_input_errors():
    with pytest.raises(UsageError, match="predictions"):
        compute_metrics(get_task("rte"), np.array([0, 1]), np.array([0]))
    with pytest.raises(UsageError, match="no examples"):
        compute_metrics(get_task("rte"), np.array([], dtype=int), np.array([], dtype=int))
