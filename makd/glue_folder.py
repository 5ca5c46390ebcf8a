"""A local GLUE folder written from the Hugging Face hub (`makd data glue --out DIR`): download once while online,
then every run and every node reads `--glue-dir DIR` offline, in the layout of the original GLUE download that
`data.load_glue_dir` reads (one <TASK>/{train,dev[,_matched,_mismatched]}.tsv per task)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from makd.data import glue_file, load_hub
from makd.errors import UsageError
from makd.files import atomic_write_bytes
from makd.tasks import GLUE_TASK_NAMES, TaskSpec, get_task

# The original GLUE files name these tasks' labels ("entailment"); the others write ids ("0", "1").
NAMED_LABELS = frozenset({"mnli", "qnli", "rte"})


def _field(text: str) -> str:
    """A tsv field without quoting (GLUE's files are QUOTE_NONE): tabs and line breaks become spaces."""
    return " ".join(str(text).replace("\t", " ").splitlines())


def tsv_bytes(task: TaskSpec, texts: list[list[str]], labels: Iterable) -> bytes:
    """One split as the original GLUE file lays it out (CoLA: no header, its four columns)."""
    layout = task.glue_layout
    assert layout is not None
    columns = layout.columns or (*layout.text_columns, layout.label_column)
    lines = [] if layout.columns else ["\t".join(columns)]
    for i, label in enumerate(labels):
        if task.is_regression:
            value = f"{float(label):g}"
        else:
            value = task.labels[int(label)] if task.name in NAMED_LABELS else str(int(label))
        row = {layout.label_column: value, **{c: _field(t[i]) for c, t in zip(layout.text_columns, texts, strict=True)}}
        lines.append("\t".join(row.get(c, "hub") for c in columns))
    return ("\n".join(lines) + "\n").encode()


def glue_tasks(names: Iterable[str]) -> list[TaskSpec]:
    """The GLUE tasks of these names; UsageError for an unknown name or a task of the user's own."""
    tasks = [get_task(name) for name in names]
    for task in tasks:
        if task.name not in GLUE_TASK_NAMES or task.glue_layout is None:
            raise UsageError("tasks", f"'{task.name}' is not a GLUE task (choose from "
                                      f"{', '.join(sorted(GLUE_TASK_NAMES))})")
    return tasks


def write_glue_folder(out: str | Path, tasks: Iterable[TaskSpec]) -> list[Path]:
    """Every labelled split of each task (`glue_tasks`) from the hub into `out`; each file written whole or not at
    all. All tasks are read before the first file is written, so a hub failure leaves the folder as it was."""
    files: list[tuple[Path, bytes]] = []
    for task in tasks:
        for split in task.splits:
            ds = load_hub(task, split)
            texts = [ds.text_a] + ([ds.text_b] if ds.text_b is not None else [])
            files.append((glue_file(task, split, out), tsv_bytes(task, texts, ds.labels)))
    for path, data in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, data)
    return [path for path, _ in files]
