"""Load labelled GLUE splits from the original GLUE download, the Hugging Face hub, or a user's own file.

GLUE .tsv files are read with the csv module and QUOTE_NONE: the text holds bare quotes and words such as
"null" or "NA" that pandas would otherwise misparse or turn into NaN. Rows are checked strictly, and every
error names the file and the 1-based line, because a silently shifted column corrupts a whole run.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from makd.errors import UsageError
from makd.tasks import GlueLayout, TaskSpec

if TYPE_CHECKING:
    import pandas as pd

HUB_DATASET = "nyu-mll/glue"
STSB_RANGE = (0.0, 5.0)


@dataclass
class TextDataset:
    """One labelled split: one or two text fields per example and a label array."""

    task: str
    split: str
    text_a: list[str]
    text_b: list[str] | None
    labels: np.ndarray  # int64 class ids, or float32 scores for stsb
    source: str
    # makd/transfer.py: which rows' labels the student may read (None: every row's). Not in the digest: the
    # teacher's cache entries are of the rows, whoever may read their labels.
    labeled: np.ndarray | None = None

    @property
    def transfer_rows(self) -> int:
        """Rows the student sees without their label (transfer examples)."""
        return 0 if self.labeled is None else int((~self.labeled).sum())

    def __len__(self) -> int:
        return len(self.text_a)

    def select(self, indices: Sequence[int]) -> TextDataset:
        """A new dataset with the given rows, in the given order."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise UsageError("indices", f"out of range for a dataset of {len(self)} examples")
        return TextDataset(
            task=self.task,
            split=self.split,
            text_a=[self.text_a[i] for i in idx],
            text_b=None if self.text_b is None else [self.text_b[i] for i in idx],
            labels=self.labels[idx],
            source=self.source,
            labeled=None if self.labeled is None else self.labeled[idx],
        )

    def digest(self) -> str:
        """sha256 of task, split, texts and labels: a cache key that is the same on every machine.

        The source is left out on purpose, so the same rows from the hub or from a file share cached logits.
        """
        h = hashlib.sha256()

        def feed(text: str) -> None:
            data = text.encode("utf-8")
            h.update(len(data).to_bytes(8, "little"))  # length prefix: ("ab", "c") != ("a", "bc")
            h.update(data)

        feed(self.task)
        feed(self.split)
        feed("pair" if self.text_b is not None else "single")
        for text in self.text_a:
            feed(text)
        for text in self.text_b or ():
            feed(text)
        # Canonical little-endian dtype, so equal label values give equal keys however the array was built.
        dtype = "<f4" if np.issubdtype(self.labels.dtype, np.floating) else "<i8"
        labels = np.ascontiguousarray(self.labels, dtype=dtype)
        feed(dtype)
        h.update(labels.tobytes())
        return h.hexdigest()


def subsample(ds: TextDataset, max_samples: int | None, seed: int = 0) -> TextDataset:
    """A seeded random subset of at most max_samples rows, kept in file order (reproducible across runs)."""
    if max_samples is None:
        return ds
    if isinstance(max_samples, bool) or not isinstance(max_samples, numbers.Integral) or max_samples <= 0:
        raise UsageError("max_samples", f"must be a positive integer or None, got {max_samples!r}")
    if max_samples >= len(ds):
        return ds
    indices = np.sort(np.random.default_rng(seed).permutation(len(ds))[:max_samples])
    return ds.select(indices)


def holdout_positions(n: int, fraction: float, seed: int) -> np.ndarray:
    """The sorted positions of a fixed, seeded `fraction` of n training examples (at least one): the selection
    hold-out (makd.pipeline.split_holdout; from the labeled rows only with transfer data, makd/transfer.py)."""
    held = np.sort(np.random.default_rng([seed, 2023]).permutation(n)[:max(1, round(fraction * n))])
    if len(held) >= n:
        raise UsageError("holdout_fraction", f"{fraction} of {n} training examples leaves none to train on")
    return held


# --- labels ---------------------------------------------------------------------------------------------


def parse_label(task: TaskSpec, value: object) -> int | float:
    """A label name or id (class tasks) or a 0..5 score (stsb); ValueError with a short reason otherwise."""
    if isinstance(value, str):
        value = value.strip()
    if task.is_regression:
        try:
            score = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ValueError(f"unparseable score {value!r} (expected a number in 0..5)") from None
        if not math.isfinite(score) or (not task.from_files and not STSB_RANGE[0] <= score <= STSB_RANGE[1]):
            raise ValueError(f"score {value!r} outside {'finite numbers' if task.from_files else '0..5'}")
        return score
    assert task.labels is not None
    if task.from_files:  # a user's task: its labels are the names its files use (ids would be ambiguous)
        name = str(value).strip()
        if name in task.labels:
            return task.labels.index(name)
        raise ValueError(f"unknown label {value!r} (the task's labels: {', '.join(task.labels)})")
    expected = f"expected {', '.join(task.labels)} or ids 0..{task.num_labels - 1}"
    if isinstance(value, str):
        if value in task.labels:
            return task.labels.index(value)
        if value.isascii() and value.isdigit() and int(value) < task.num_labels:
            return int(value)
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        if float(value).is_integer() and 0 <= int(value) < task.num_labels:
            return int(value)
    raise ValueError(f"unknown label {value!r} ({expected})")


def _label_array(task: TaskSpec, labels: list) -> np.ndarray:
    return np.asarray(labels, dtype=np.float32 if task.is_regression else np.int64)


# --- the original GLUE download -------------------------------------------------------------------------


_GLUE_FILES = {
    "train": "train.tsv",
    "validation": "dev.tsv",
    "validation_matched": "dev_matched.tsv",
    "validation_mismatched": "dev_mismatched.tsv",
}


def _check_split(task: TaskSpec, split: str) -> None:
    if split not in task.splits:
        raise UsageError("split", f"unknown split '{split}' for task {task.name} (choose from {', '.join(task.splits)})")


def glue_file(task: TaskSpec, split: str, glue_dir: str | Path) -> Path:
    """<glue_dir>/<TASKDIR>/{train,dev,dev_matched,dev_mismatched}.tsv for a Hugging Face split name."""
    _check_split(task, split)
    return Path(glue_dir) / task.glue_dir / _GLUE_FILES[split]


def _read_tsv(path: Path, layout: GlueLayout) -> tuple[list[tuple[int, dict[str, str]]], tuple[str, ...]]:
    """(line number, {column: field}) for every data row of a QUOTE_NONE tsv, checked for field counts."""
    if not path.is_file():
        raise UsageError(str(path), "file not found")
    rows: list[tuple[int, dict[str, str]]] = []
    header = layout.columns
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        try:
            for fields in reader:
                if not fields:  # blank line, e.g. a trailing newline
                    continue
                if header is None:
                    header = tuple(fields)
                    missing = [c for c in (*layout.text_columns, layout.label_column) if c and c not in header]
                    if missing:
                        raise UsageError(str(path), f"line {reader.line_num}: missing column "
                                         f"{', '.join(repr(c) for c in missing)} (header has {', '.join(header)})")
                    continue
                if len(fields) != len(header):
                    raise UsageError(str(path), f"line {reader.line_num}: expected {len(header)} tab-separated "
                                     f"fields, got {len(fields)}")
                rows.append((reader.line_num, dict(zip(header, fields, strict=True))))
        except UnicodeDecodeError as e:
            raise UsageError(str(path), f"not UTF-8 text ({e.reason} near line {reader.line_num + 1})") from None
        except csv.Error as e:
            raise UsageError(str(path), f"line {reader.line_num}: {e}") from None
    if header is None:
        raise UsageError(str(path), "empty file")
    if not rows:
        raise UsageError(str(path), "no data rows")
    return rows, header


def _dataset_from_tsv(task: TaskSpec, split: str, path: Path, layout: GlueLayout) -> TextDataset:
    rows, _ = _read_tsv(path, layout)
    labels = []
    for line, row in rows:
        try:
            labels.append(parse_label(task, row[layout.label_column]))
        except ValueError as e:
            raise UsageError(str(path), f"line {line}: {e}") from None
    texts = [[row[c] for _, row in rows] for c in layout.text_columns]
    return TextDataset(task.name, split, texts[0], texts[1] if len(texts) > 1 else None,
                       _label_array(task, labels), str(path))


def load_glue_dir(task: TaskSpec, split: str, glue_dir: str | Path) -> TextDataset:
    """A split from the original GLUE download layout (each task's columns: TaskSpec.glue_layout)."""
    if task.glue_layout is None:
        raise UsageError("glue_dir", f"task {task.name} has no GLUE-folder layout: use train/eval files instead")
    return _dataset_from_tsv(task, split, glue_file(task, split, glue_dir), task.glue_layout)


# --- the Hugging Face hub -------------------------------------------------------------------------------


def load_hub(task: TaskSpec, split: str) -> TextDataset:
    """A split of nyu-mll/glue via `datasets` (imported here: it is slow to import and often offline)."""
    _check_split(task, split)
    import datasets

    source = f"hub:{HUB_DATASET}/{task.hub_config}/{split}"
    try:
        hub = datasets.load_dataset(HUB_DATASET, task.hub_config, split=split)
    except Exception as e:  # network, cache or auth trouble: point at the offline alternatives
        raise UsageError(source, f"could not load from the Hugging Face hub ({type(e).__name__}: {e}); "
                         "read a local GLUE folder instead (--glue-dir DIR, $MAKD_GLUE_DIR, or a sweep's data: "
                         "{glue_dir: DIR}; `makd data glue --out DIR` writes one while online) or your own files "
                         "(--train-file/--eval-file, or a tasks: mapping)") from e
    missing = [c for c in (*task.text_fields, "label") if c not in hub.column_names]
    if missing:
        raise UsageError(source, f"missing column {', '.join(repr(c) for c in missing)}")
    labels = []
    for i, value in enumerate(hub["label"]):
        try:
            labels.append(parse_label(task, value))
        except ValueError as e:
            raise UsageError(source, f"row {i + 1}: {e}") from None
    texts = [list(hub[c]) for c in task.text_fields]
    return TextDataset(task.name, split, texts[0], texts[1] if len(texts) > 1 else None,
                       _label_array(task, labels), source)


# --- a user's own file ----------------------------------------------------------------------------------


def _read_table(path: Path) -> pd.DataFrame:
    """A pandas DataFrame for .csv / .jsonl / .json (JSON lines) / .parquet, text kept as read."""
    import pandas as pd

    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        if suffix in (".jsonl", ".json"):
            return pd.read_json(path, lines=True, dtype=False, convert_dates=False, encoding="utf-8")
        if suffix == ".parquet":
            return pd.read_parquet(path)
    except Exception as e:  # pandas raises many types for malformed files
        raise UsageError(str(path), f"cannot read as {suffix[1:]}: {type(e).__name__}: {e}") from None
    raise UsageError(str(path), f"unsupported file type '{suffix}' (use .csv, .tsv, .jsonl, .json or .parquet)")


def load_file(task: TaskSpec, split: str, path: str | Path, text_columns: Sequence[str] | str,
              label_column: str) -> TextDataset:
    """A split from any csv/tsv/jsonl/parquet file; labels may be names (from task.labels) or ids.

    .tsv files follow the GLUE convention (header row, QUOTE_NONE, strict field counts) and errors name the
    line; the other formats go through pandas and errors name the 1-based data row. A file read before in this
    process, unchanged since (size and modification time), is not parsed again: a sweep checks the user's files
    before Ray starts and then loads them."""
    text_columns = (text_columns,) if isinstance(text_columns, str) else tuple(text_columns)
    try:
        stat = Path(path).stat()
    except OSError:
        return _load_file(task, split, path, text_columns, label_column)  # the one-line error for a missing file
    return _load_file_once(task, split, str(path), (stat.st_size, stat.st_mtime_ns), text_columns, label_column)


def read_text_columns(path: str | Path, columns: Sequence[str], what: Sequence[str]) -> dict[str, list[str]]:
    """The named text columns of a csv/tsv/jsonl/parquet file with no labels, every row's text present (an empty
    one is named by its row and by `what`, the columns' meaning: 'prompt', 'text', ...)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(str(path), "file not found")
    if path.suffix.lower() == ".tsv":
        rows, _ = _read_tsv(path, GlueLayout(tuple(columns), ""))
        table = {c: [row[c] for _, row in rows] for c in columns}
    else:
        frame = _read_table(path)
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise UsageError(str(path), f"missing column {', '.join(repr(c) for c in missing)} "
                             f"(have {', '.join(map(str, frame.columns))})")
        table = {c: ["" if v is None else str(v) for v in frame[c].tolist()] for c in columns}
    if not table[columns[0]]:
        raise UsageError(str(path), "no data rows")
    for column, meaning in zip(columns, what, strict=False):
        empty = next((i for i, text in enumerate(table[column]) if not text.strip()), None)
        if empty is not None:
            raise UsageError(str(path), f"row {empty + 1}: empty {column!r} (a {meaning} is needed on every row)")
    return table


def load_prompt_file(task: TaskSpec, split: str, path: str | Path, columns: Sequence[str]) -> TextDataset:
    """A causal-LM task's split from a csv/tsv/jsonl/parquet file: its prompt column (text_a) and, when `columns`
    names a second one, the given responses (text_b; else the teacher answers each prompt). No labels: zeros."""
    table = read_text_columns(path, columns, ("prompt", "response"))
    return TextDataset(task.name, split, table[columns[0]], table[columns[1]] if len(columns) > 1 else None,
                       np.zeros(len(table[columns[0]]), dtype=np.int64), str(path))


@functools.lru_cache(maxsize=16)
def _load_file_once(task: TaskSpec, split: str, path: str, stamp: tuple[int, int], text_columns: tuple[str, ...],
                    label_column: str) -> TextDataset:
    return _load_file(task, split, path, text_columns, label_column)


def _load_file(task: TaskSpec, split: str, path: str | Path, text_columns: Sequence[str],
              label_column: str) -> TextDataset:
    """load_file's parse, every time it is called."""
    path = Path(path)
    text_columns = (text_columns,) if isinstance(text_columns, str) else tuple(text_columns)
    if len(text_columns) not in (1, 2):
        raise UsageError("text_columns", f"expected 1 or 2 column names, got {len(text_columns)}")
    if not path.is_file():
        raise UsageError(str(path), "file not found")
    if path.suffix.lower() == ".tsv":
        return _dataset_from_tsv(task, split, path, GlueLayout(text_columns, label_column))
    frame = _read_table(path)
    missing = [c for c in (*text_columns, label_column) if c not in frame.columns]
    if missing:
        raise UsageError(str(path), f"missing column {', '.join(repr(c) for c in missing)} "
                         f"(have {', '.join(map(str, frame.columns))})")
    if len(frame) == 0:
        raise UsageError(str(path), "no data rows")
    labels = []
    for i, value in enumerate(frame[label_column].tolist()):
        try:
            labels.append(parse_label(task, value))
        except ValueError as e:
            raise UsageError(str(path), f"row {i + 1}: {e}") from None
    texts = []
    for column in text_columns:
        values = frame[column].tolist()
        for i, value in enumerate(values):
            if not isinstance(value, str):
                raise UsageError(str(path), f"row {i + 1}: column '{column}' is not text ({value!r})")
        texts.append(values)
    return TextDataset(task.name, split, texts[0], texts[1] if len(texts) > 1 else None,
                       _label_array(task, labels), str(path))


# --- one entry point ------------------------------------------------------------------------------------


def load_split(task: TaskSpec, split: str, *, glue_dir: str | Path | None = None,
               data_file: str | Path | None = None, text_columns: Sequence[str] | None = None,
               label_column: str | None = None, max_samples: int | None = None, seed: int = 0) -> TextDataset:
    """The split from data_file if given, else from glue_dir, else from the hub; then subsampled.

    text_columns / label_column only apply to data_file; they default to the hub column names
    (task.text_fields and "label").
    """
    if data_file is None and task.from_files:
        raise UsageError("task", f"{task.name} is a task defined by files: its {split} split needs its file")
    if data_file is not None and task.is_causal_lm:
        ds = load_prompt_file(task, split, data_file, text_columns or task.text_fields)
    elif data_file is not None:
        ds = load_file(task, split, data_file, text_columns or task.text_fields, label_column or "label")
    else:
        for name, value in (("text_columns", text_columns), ("label_column", label_column)):
            if value is not None:
                raise UsageError(name, "only applies together with data_file")
        ds = load_glue_dir(task, split, glue_dir) if glue_dir is not None else load_hub(task, split)
    return subsample(ds, max_samples, seed)
