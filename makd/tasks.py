"""GLUE task registry and the official metrics, so every module agrees on labels, columns and metric names.

STS-B is a regression task; it is distilled as a 2-class problem through Platt scaling (paper §4): the gold
score t in [0, 5] becomes the soft target [1 - p, p] with p = sigmoid(t - 2.5), and a 2-class logit pair maps
back to a score through the exact inverse, score = (logit1 - logit0) + 2.5.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import replace as dataclass_replace

import numpy as np
from scipy.special import expit
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from makd.errors import UsageError

STSB_CENTER = 2.5  # Platt offset: the middle of the STS-B 0..5 scale.

# Metric families: the main metric first. Keys are the main metric without any split suffix.
_METRIC_FAMILIES: dict[str, tuple[str, ...]] = {
    "mcc": ("mcc",),
    "accuracy": ("accuracy",),
    "f1": ("f1", "accuracy"),
    "pearson": ("pearson", "spearman"),
    # a causal-LM task (makd/lm/train.py): top-1 agreement with the teacher on the dev responses' tokens, their
    # perplexity under the student, and the zero-shot sentiment probe (makd/lm/metrics.py)
    "agreement": ("agreement", "perplexity", "probe_accuracy"),
}


METRIC_LABELS = {"mcc": "MCC", "accuracy": "Acc", "f1": "F1", "pearson": "Pearson", "spearman": "Spearman",
                 "agreement": "Agree", "perplexity": "PPL", "probe_accuracy": "Probe Acc"}
CLASSIFICATION, CAUSAL_LM = "classification", "causal_lm"  # TaskSpec.kind


def metric_key(name: str, suffix: str = "") -> str:
    """'accuracy' + 'm' -> 'accuracy_m'; no suffix leaves the name alone."""
    return f"{name}_{suffix}" if suffix else name


@dataclass(frozen=True)
class GlueLayout:
    """Where a task's fields sit in its GLUE .tsv; `columns` set means the file has no header row."""

    text_columns: tuple[str, ...]
    label_column: str
    columns: tuple[str, ...] | None = None


@dataclass(frozen=True)
class TaskSpec:
    """One GLUE task: where its data lives (hub config, GLUE folder and .tsv layout), what its labels mean, how it
    is scored, and where it sits in the paper's Table 2. Adding a task = one `register_task(TaskSpec(...))`."""

    name: str
    glue_dir: str
    hub_config: str
    text_fields: tuple[str, ...]
    labels: tuple[str, ...] | None
    metric: str
    eval_splits: tuple[tuple[str, str], ...] = (("validation", ""),)
    glue_layout: GlueLayout | None = None  # None: no GLUE-folder layout (hub or --train-file only)
    paper_order: float = 100.0  # column order in the paper-style table (Table 2 of the paper)
    platt_center: float = STSB_CENTER  # a regression task's Platt offset: the middle of its score range
    from_files: bool = False  # a user's task (makd/file_tasks.py): data only from its files, never the hub
    kind: str = CLASSIFICATION  # or CAUSAL_LM: prompts from the texts, responses by the teacher (makd/lm/data.py)
    prompt_template: str = "{text}"  # a causal-LM task: the instruction its text_a becomes (the chat turn's content)

    @property
    def is_causal_lm(self) -> bool:
        return self.kind == CAUSAL_LM

    @property
    def is_regression(self) -> bool:
        return self.labels is None and not self.is_causal_lm

    @property
    def display_name(self) -> str:
        """What tables call the task: its GLUE name, with ' LM' for a causal-LM task made of a GLUE task's texts."""
        return f"{self.glue_dir} LM" if self.is_causal_lm else self.glue_dir

    @property
    def num_labels(self) -> int:
        """Output width of the classifier head; 2 for STS-B because of Platt scaling."""
        return 2 if self.labels is None else len(self.labels)

    @property
    def base_metrics(self) -> tuple[str, ...]:
        """Metric names before any split suffix, main first."""
        suffix = self.eval_splits[0][1]
        family = self.metric[: -len(suffix) - 1] if suffix else self.metric
        return _METRIC_FAMILIES[family]

    @property
    def metric_names(self) -> tuple[str, ...]:
        """Every metric key the task reports, suffixes included, main first."""
        return tuple(metric_key(m, suffix) for _, suffix in self.eval_splits for m in self.base_metrics)

    @property
    def split_metrics(self) -> tuple[str, ...]:
        """The main metric on every evaluation split, main first (MNLI: accuracy_m, accuracy_mm): what one cell
        of the paper-style table shows."""
        return tuple(metric_key(self.base_metrics[0], suffix) for _, suffix in self.eval_splits)

    @property
    def column_header(self) -> str:
        """The task's column in the paper-style table: 'RTE (Acc)', 'MNLI-m/mm (Acc)'."""
        suffixes = "/".join(suffix for _, suffix in self.eval_splits if suffix)
        name = f"{self.display_name}-{suffixes}" if suffixes else self.display_name
        return f"{name} ({METRIC_LABELS.get(self.base_metrics[0], self.base_metrics[0])})"

    @property
    def splits(self) -> tuple[str, ...]:
        """Labelled split names (Hugging Face spelling): train plus the evaluation splits."""
        return ("train",) + tuple(split for split, _ in self.eval_splits)

    def target_probs(self, labels: np.ndarray) -> np.ndarray:
        """[N, K] float32 targets: one-hot class ids, or Platt-scaled [1 - p, p] for STS-B scores."""
        labels = np.asarray(labels)
        if labels.ndim != 1:
            raise UsageError("labels", f"expected a 1-D array, got shape {labels.shape}")
        if self.is_regression:
            shifted = labels.astype(np.float64) - self.platt_center
            return np.stack([expit(-shifted), expit(shifted)], axis=1).astype(np.float32)
        if labels.size and (labels.min() < 0 or labels.max() >= self.num_labels):
            raise UsageError("labels", f"class ids must be in [0, {self.num_labels - 1}] for task {self.name}")
        out = np.zeros((labels.shape[0], self.num_labels), dtype=np.float32)
        out[np.arange(labels.shape[0]), labels.astype(np.int64)] = 1.0
        return out

    def predictions(self, logits: np.ndarray) -> np.ndarray:
        """Argmax class ids (int64), or for STS-B the exact inverse Platt score (float64, not clipped)."""
        logits = np.asarray(logits)
        if logits.ndim != 2 or logits.shape[1] != self.num_labels:
            raise UsageError("logits", f"expected shape [N, {self.num_labels}] for task {self.name}, got {logits.shape}")
        if self.is_regression:
            logits = logits.astype(np.float64)
            return logits[:, 1] - logits[:, 0] + self.platt_center
        return logits.argmax(axis=1).astype(np.int64)


TASKS: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec) -> TaskSpec:
    """Make a task known to data loading, training, sweep configs and the leaderboard (by its name)."""
    TASKS[spec.name] = spec
    return spec


_PAIR = GlueLayout(("sentence1", "sentence2"), "label")
for _spec in (  # in the paper's Table 2 order
    TaskSpec("cola", "CoLA", "cola", ("sentence",), ("unacceptable", "acceptable"), "mcc",
             glue_layout=GlueLayout(("sentence",), "label", columns=("source", "label", "original_label", "sentence"))),
    TaskSpec("sst2", "SST-2", "sst2", ("sentence",), ("negative", "positive"), "accuracy",
             glue_layout=GlueLayout(("sentence",), "label")),
    TaskSpec("mrpc", "MRPC", "mrpc", ("sentence1", "sentence2"), ("not_equivalent", "equivalent"), "f1",
             glue_layout=GlueLayout(("#1 String", "#2 String"), "Quality")),
    TaskSpec("stsb", "STS-B", "stsb", ("sentence1", "sentence2"), None, "pearson",
             glue_layout=GlueLayout(("sentence1", "sentence2"), "score")),
    TaskSpec("qqp", "QQP", "qqp", ("question1", "question2"), ("not_duplicate", "duplicate"), "f1",
             glue_layout=GlueLayout(("question1", "question2"), "is_duplicate")),
    TaskSpec("mnli", "MNLI", "mnli", ("premise", "hypothesis"), ("entailment", "neutral", "contradiction"),
             "accuracy_m", (("validation_matched", "m"), ("validation_mismatched", "mm")),
             glue_layout=GlueLayout(("sentence1", "sentence2"), "gold_label")),
    TaskSpec("qnli", "QNLI", "qnli", ("question", "sentence"), ("entailment", "not_entailment"), "accuracy",
             glue_layout=GlueLayout(("question", "sentence"), "label")),
    TaskSpec("rte", "RTE", "rte", ("sentence1", "sentence2"), ("entailment", "not_entailment"), "accuracy",
             glue_layout=_PAIR),
    TaskSpec("wnli", "WNLI", "wnli", ("sentence1", "sentence2"), ("not_entailment", "entailment"), "accuracy",
             glue_layout=_PAIR),
):
    register_task(dataclass_replace(_spec, paper_order=float(len(TASKS))))
# A causal-LM task (issue 27): SST-2's sentences as instruction prompts, the teacher's greedy responses as the
# targets (sequence-level KD, generated once and cached), its labels only for the zero-shot probe.
SST2_PROMPT = "Review: {text}\nIs this movie review positive or negative? Answer in one word, then give the reason."
register_task(TaskSpec("sst2lm", "SST-2", "sst2", ("sentence",), ("negative", "positive"), "agreement",
                       glue_layout=GlueLayout(("sentence",), "label"), paper_order=float(len(TASKS)),
                       kind=CAUSAL_LM, prompt_template=SST2_PROMPT))
GLUE_TASK_NAMES = frozenset(name for name, task in TASKS.items() if not task.is_causal_lm)
BUILTIN_TASK_NAMES = frozenset(TASKS)  # a user's own task (makd/file_tasks.py) may not take one of these names


def get_task(name: str) -> TaskSpec:
    """Look a task up by its name (a user's own task may have '-' or '_' in it: 'reviews-2026') or by any common
    spelling of a GLUE name: 'RTE', 'sst-2', 'STS_B', 'stsb'."""
    spelled = str(name).strip().lower()
    for key in (spelled, spelled.replace("-", "").replace("_", "")):
        if key in TASKS:
            return TASKS[key]
    raise UsageError("task", f"unknown task '{name}' (choose from {', '.join(sorted(TASKS))})")


def classifier_task(name: str, command: str) -> TaskSpec:
    """The task of a command that trains or scores a classifier (`makd distill`, `cache-teacher`, ...): a causal-LM
    task is refused in one line, pointing at the sweep that runs it."""
    task = get_task(name)
    if task.is_causal_lm:
        raise UsageError("task", f"{task.name} is a causal-LM task, which {command} does not run: distil it in a sweep "
                                 "(makd sweep; docs/llm.md)")
    return task


def _correlation(fn, predictions: np.ndarray, references: np.ndarray) -> float:
    """Pearson/Spearman, with 0.0 instead of nan when either side is constant (undefined correlation)."""
    if np.ptp(predictions) == 0 or np.ptp(references) == 0:
        return 0.0
    return float(fn(predictions, references)[0])


def compute_metrics(task: TaskSpec, predictions: np.ndarray, references: np.ndarray,
                    suffix: str = "") -> dict[str, float]:
    """The task's official GLUE metrics for one evaluation split, keyed as in `task.metric_names`."""
    suffixes = [s for _, s in task.eval_splits]
    if suffix not in suffixes:
        raise UsageError("suffix", f"task {task.name} reports suffixes {suffixes}, got '{suffix}'")
    predictions, references = np.asarray(predictions), np.asarray(references)
    if predictions.ndim != 1 or predictions.shape != references.shape:
        raise UsageError("predictions", f"expected two 1-D arrays of the same length, got {predictions.shape} "
                         f"and {references.shape}")
    if predictions.size == 0:
        raise UsageError("predictions", "no examples to score")
    out: dict[str, float] = {}
    for name in task.base_metrics:
        if name == "accuracy":
            value = accuracy_score(references, predictions)
        elif name == "f1":
            value = f1_score(references, predictions, pos_label=1, average="binary", zero_division=0.0)
        elif name == "mcc":
            value = matthews_corrcoef(references, predictions)
        elif name == "pearson":
            value = _correlation(pearsonr, predictions.astype(np.float64), references.astype(np.float64))
        else:  # spearman
            value = _correlation(spearmanr, predictions.astype(np.float64), references.astype(np.float64))
        out[metric_key(name, suffix)] = float(value)
    return out
