"""A task defined by the user's own files (csv, tsv, jsonl, json lines, parquet): what a sweep's `tasks:` entry
`{name, train_file, eval_file, text_columns, label_column, type, labels, metric}` describes.

It becomes an ordinary `TaskSpec` (labels, metric, Platt offset for regression), registered under its name in
every process that needs it: the driver when the config is read, each trial from the spec the driver ships (Ray
workers start with only the GLUE tasks registered).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from makd.data import TextDataset, _read_table, _read_tsv, load_file, load_prompt_file
from makd.errors import UsageError
from makd.tasks import CAUSAL_LM, TASKS, GlueLayout, TaskSpec, register_task

CLASSIFICATION_METRICS = ("accuracy", "f1", "mcc")  # f1: of the second label, as GLUE's MRPC/QQP (two labels only)
REGRESSION_METRICS = ("pearson",)
FIELDS = ("name", "train_file", "eval_file", "text_columns", "label_column", "type", "labels", "metric",
          "prompt_column", "response_column")
LM_FIELDS = ("name", "train_file", "eval_file", "type", "prompt_column", "response_column")  # type: causal_lm
EXAMPLE = ("{name: reviews, train_file: train.csv, eval_file: dev.csv, text_columns: [text], label_column: label, "
           "type: classification}")


@dataclass(frozen=True)
class FileTask:
    """A user's task: its two files, which columns hold the text (one or two) and the label, and how it is
    scored. `labels` default to the train file's distinct values, sorted; `metric` to accuracy (pearson for
    regression)."""

    name: str
    train_file: str
    eval_file: str
    text_columns: tuple[str, ...]
    label_column: str = "label"
    type: str = "classification"
    labels: tuple[str, ...] | None = None
    metric: str | None = None
    spec: TaskSpec | None = field(default=None, compare=False)  # as registered for the sweep (kept in sweep.json)

    def build_spec(self) -> TaskSpec:
        """The TaskSpec the files define (reads the train file's labels when `labels` is not given)."""
        if self.type == CAUSAL_LM:  # text_columns: the prompt column, and the responses' when the files give them
            return TaskSpec(self.name, self.name, "", self.text_columns, None, "agreement", from_files=True,
                            kind=CAUSAL_LM)
        regression = self.type == "regression"
        labels, center = None, 2.5
        if regression:
            scores = _label_values(self.train_file, self.label_column, numeric=True)
            center = float((scores.min() + scores.max()) / 2)
        else:
            labels = self.labels or tuple(sorted(set(_label_values(self.train_file, self.label_column))))
            if len(labels) < 2:
                raise UsageError(self.train_file, f"column '{self.label_column}' holds one label value "
                                                  f"({labels[0] if labels else 'none'}): nothing to classify")
        metric = self.metric or ("pearson" if regression else "accuracy")
        if metric == "f1" and len(labels or ()) != 2:
            raise UsageError(f"tasks.{self.name}.metric", f"f1 needs two labels, the files have {len(labels or ())}")
        return TaskSpec(self.name, self.name, "", tuple(self.text_columns), labels, metric, platt_center=center,
                        from_files=True)

    def register(self) -> TaskSpec:
        spec = self.spec or self.build_spec()
        register_task(spec)
        return spec

    def load(self) -> tuple[TextDataset, TextDataset]:
        """Both files as datasets (a bad file, column or label: one line naming the file and row)."""
        spec = TASKS.get(self.name) or self.register()
        if spec.is_causal_lm:
            return (load_prompt_file(spec, "train", self.train_file, self.text_columns),
                    load_prompt_file(spec, "validation", self.eval_file, self.text_columns))
        return (load_file(spec, "train", self.train_file, self.text_columns, self.label_column),
                load_file(spec, "validation", self.eval_file, self.text_columns, self.label_column))


def _label_values(path: str, column: str, numeric: bool = False) -> np.ndarray:
    """The label column as read (text), or as floats for a regression task (a non-number: one line, its row)."""
    file = Path(path)
    if not file.is_file():
        raise UsageError(path, "file not found")
    if file.suffix.lower() == ".tsv":  # the reader load_file uses: header, field counts, errors by line
        rows, _ = _read_tsv(file, GlueLayout((), column))
        values = [row[column].strip() for _, row in rows]
    else:
        frame = _read_table(file)
        if column not in frame.columns:
            raise UsageError(path, f"missing column '{column}' (have {', '.join(map(str, frame.columns))})")
        values = [str(v).strip() for v in frame[column].tolist()]
    if not values:
        raise UsageError(path, "no data rows")
    if not numeric:
        return np.asarray(values, dtype=object)
    scores = []
    for i, value in enumerate(values):
        try:
            scores.append(float(value))
        except ValueError:
            raise UsageError(path, f"row {i + 1}: label {value!r} is not a number (type: regression)") from None
    return np.asarray(scores)


def parse_file_task(raw: object, where: str, reserved: Sequence[str]) -> FileTask:
    """A sweep's `tasks:` mapping -> FileTask; one line naming the field for anything missing or malformed."""
    if not isinstance(raw, dict):
        raise UsageError(where, f"expected a GLUE task name or a mapping like {EXAMPLE}")
    unknown = sorted(set(raw) - set(FIELDS))
    if unknown:
        raise UsageError(f"{where}.{unknown[0]}", f"unknown field (known: {', '.join(FIELDS)})")
    for key in ("name", "train_file", "eval_file"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise UsageError(f"{where}.{key}", f"required: a non-empty string ({EXAMPLE})")
    name = raw["name"].strip().lower()
    if not name.replace("_", "").replace("-", "").isalnum():
        raise UsageError(f"{where}.name", f"letters, digits, '-' and '_' only, got {raw['name']!r}")
    if name.replace("-", "").replace("_", "") in reserved:
        raise UsageError(f"{where}.name", f"{name!r} is a GLUE task: name your own task differently")
    if raw.get("type") == CAUSAL_LM:
        return _parse_lm_file_task(raw, where, name)
    columns = raw.get("text_columns", ["text"])
    columns = [columns] if isinstance(columns, str) else columns
    if not isinstance(columns, list) or len(columns) not in (1, 2) or not all(isinstance(c, str) for c in columns):
        raise UsageError(f"{where}.text_columns", f"expected one or two column names, got {columns!r}")
    kind = raw.get("type", "classification")
    if kind not in ("classification", "regression"):
        raise UsageError(f"{where}.type", f"expected classification, regression or causal_lm, got {kind!r}")
    if "prompt_column" in raw or "response_column" in raw:
        raise UsageError(f"{where}.{'prompt_column' if 'prompt_column' in raw else 'response_column'}",
                         "for type: causal_lm only")
    labels = raw.get("labels")
    if labels is not None and (kind == "regression" or not isinstance(labels, list) or len(labels) < 2):
        raise UsageError(f"{where}.labels", "a list of two or more label names, for type: classification only")
    metric = raw.get("metric")
    allowed = REGRESSION_METRICS if kind == "regression" else CLASSIFICATION_METRICS
    if metric is not None and metric not in allowed:
        raise UsageError(f"{where}.metric", f"expected one of {', '.join(allowed)} for type: {kind}, got {metric!r}")
    return FileTask(name=name, train_file=raw["train_file"], eval_file=raw["eval_file"], text_columns=tuple(columns),
                    label_column=str(raw.get("label_column", "label")), type=kind,
                    labels=tuple(str(v) for v in labels) if labels else None, metric=metric)


LM_EXAMPLE = ("{name: answers, type: causal_lm, train_file: train.jsonl, eval_file: dev.jsonl, prompt_column: prompt, "
              "response_column: response}")


def _parse_lm_file_task(raw: dict, where: str, name: str) -> FileTask:
    """A causal-LM task from files: a prompt column, and a response column when the files give the responses (else
    the teacher answers every prompt, as for sst2lm)."""
    other = sorted(set(raw) - set(LM_FIELDS))
    if other:
        raise UsageError(f"{where}.{other[0]}", f"not a field of a causal_lm task (its fields: {', '.join(LM_FIELDS)})")
    columns = [raw.get("prompt_column", "prompt")]
    if raw.get("response_column") is not None:
        columns.append(raw["response_column"])
    for key, column in zip(("prompt_column", "response_column"), columns, strict=False):
        if not isinstance(column, str) or not column.strip():
            raise UsageError(f"{where}.{key}", f"a column name, e.g. {LM_EXAMPLE}")
    if len(columns) == 2 and columns[0] == columns[1]:
        raise UsageError(f"{where}.response_column", "must differ from prompt_column")
    return FileTask(name=name, train_file=raw["train_file"], eval_file=raw["eval_file"], text_columns=tuple(columns),
                    label_column="", type=CAUSAL_LM)
