"""The paper-style table: Table 2 of Dasgupta et al. (2023) in Markdown, from finished trials."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from makd_sweep.report.order import (
    is_causal_lm,
    loss_rank,
    split_metrics,
    student_order,
    task_header,
    task_name,
    task_rank,
)
from makd_sweep.report.paired import (
    AGREEMENT_ORDER,
    IDENTICAL,
    SAME_PREDICTIONS,
    TIE,
    UNKNOWN,
    paired_difference,
    reaches_baseline,
)
from makd_sweep.report.rank import (
    best_settings,
    constant_predictor,
    most_common,
    searched_options,
    selection_kind,
    setting_rows,
    setting_seeds,
    setting_view,
)
from makd_sweep.report.transfer import transfer_note


def _format_params(value) -> str:
    if value is None or pd.isna(value):
        return "–"
    return f"{value:.1f}" if value >= 1 else f"{value:.2f}"


MARKS = {IDENTICAL: " =", SAME_PREDICTIONS: " =p", TIE: " =s", UNKNOWN: " =?"}
MARK_NOTES = {
    IDENTICAL: "= marks a cell identical to ce at every paired seed: the same trained weights (equal weight "
               "fingerprints), not merely the same score",
    SAME_PREDICTIONS: "=p the same dev predictions as ce at every seed from different weights",
    TIE: "=s the same dev scores as ce at every seed from different predictions (a tie)",
    UNKNOWN: "=? the same dev scores as ce at every seed, from trials recorded without weight fingerprints "
             "(older trials CSVs): whether they are the same students is unknown",
}
CONSTANT = " (1 class)"
AT_MAJORITY = " ∅"


def reference_rows(df: pd.DataFrame, tasks: list[str], majority: dict[str, float | None],
                   metric: dict[str, str]) -> list[tuple[str, dict[str, float]]]:
    """(label, task -> score) for the table's first rows: the majority-class baseline (`majority`, per task), then
    each teacher's own score (fine-tuned or not), all on dev; none for trials recorded before makd scored them."""
    rows = []
    if any(v is not None for v in majority.values()):
        rows.append(("majority class (constant prediction)", majority))
    taught = df[df["teacher_score"].notna()]
    for (teacher, fine_tuned), group in taught.groupby([taught["teacher"].fillna(""),
                                                        taught["teacher_fine_tuned"].fillna(False).astype(bool)]):
        causal_lm_only = all(is_causal_lm(t, metric.get(t)) for t in group["task"].unique())
        # an instruction-tuned LM answering its own prompts is not "not fine-tuned": it is used as released
        kind = " (fine-tuned)" if fine_tuned else " (as released)" if causal_lm_only else " (not fine-tuned)"
        label = f"teacher {teacher}".strip() + kind
        rows.append((label, {t: most_common(group.loc[group["task"] == t, "teacher_score"]) for t in tasks}))
    return rows


def reference_note(df: pd.DataFrame, tasks: list[str], metric: dict[str, str]) -> str | None:
    """What the reference rows of classification and regression tasks are. A teacher that is not fine-tuned gets the
    paper's reason (a pretrained model with a fresh head) only where it has a head: a causal-LM task's teacher is the
    LM itself, and that task's own note says what its references are (None when every task is one)."""
    headed = [t for t in tasks if not is_causal_lm(t, metric.get(t))]
    if not headed:
        return None
    rows = df[df["task"].isin(headed) & df["teacher_score"].notna()]
    not_fine_tuned = (~rows["teacher_fine_tuned"].fillna(False).astype(bool)).any() if len(rows) else False
    why = (" (a teacher that is not fine-tuned, the paper's setting, is a pretrained model with a freshly initialised "
           "head)") if not_fine_tuned else ""
    scope = "" if len(headed) == len(tasks) else f" for {', '.join(task_name(t) for t in headed)}"
    return (f"*reference* rows{scope}, on the same dev set: the majority class of the training labels predicted for "
            "every example (a regression task: a constant, whose correlation is 0), and the teacher's own score"
            f"{why}.")


def _mark(method: str, task: str, seeds: dict, used: set, majority: float | None = None) -> str:
    """'=' identical to ce at every paired seed (weights), '=p' same predictions, '=s' a tie, '=?' equal scores
    without fingerprints, '°' a CI that contains 0, '' otherwise (or for ce itself); ' (1 class)' when every seed
    of the cell predicts one class on dev (any method, ce included). `used` collects what needs a note."""
    text = ""
    reference = seeds.get(("ce", task))
    if method != "ce" and reference is not None:
        d = paired_difference(seeds[(method, task)], reference)
        if d.agreement:
            text, _ = MARKS[d.agreement], used.add(d.agreement)
        elif d.pairs >= 2 and d.contains_zero:
            text = " °"
    if constant_predictor(seeds[(method, task)]):
        text, _ = text + CONSTANT, used.add(CONSTANT)
    if reaches_baseline(seeds[(method, task)]["dev_score"], majority):
        text, _ = text + AT_MAJORITY, used.add(AT_MAJORITY)
    return text


def _average_vs_ce(method: str, tasks: list[str], seeds: dict) -> str:
    """The paired difference of the row's Average to ce's Average over the same tasks, seed by seed; equal
    Averages agree only as far as every task's cell does (its weakest agreement)."""
    if method == "ce" or not all(("ce", t) in seeds for t in tasks) or not tasks:
        return ""
    mine = pd.concat([seeds[(method, t)]["dev_score"] for t in tasks], axis=1).dropna().mean(axis=1)
    ce = pd.concat([seeds[("ce", t)]["dev_score"] for t in tasks], axis=1).dropna().mean(axis=1)
    d = paired_difference(mine, ce)
    cells = [paired_difference(seeds[(method, t)], seeds[("ce", t)]).agreement for t in tasks]
    if all(cell == IDENTICAL for cell in cells):  # ce's student in every cell, whichever ce copy scored it
        d = dataclasses.replace(d, mean=0.0, ci_low=0.0, ci_high=0.0, agreement=IDENTICAL)
    elif d.agreement:
        if all(cells):
            d = dataclasses.replace(d, agreement=max(cells, key=AGREEMENT_ORDER.index))
        else:  # equal averages of unequal cells: a zero difference, not an agreement
            d = dataclasses.replace(d, agreement="", ci_low=d.ci_low if d.pairs > 1 else math.nan,
                                    ci_high=d.ci_high if d.pairs > 1 else math.nan)
    return d.describe()


SELECTION_HEADER = {"dev": " (epoch, λ chosen on dev)", "mixed": " (mixed selection: see notes)"}


def paper_table(trials: pd.DataFrame, stage: str = "search") -> str:
    """Table 2 of the paper, in Markdown: rows student × method, columns tasks, scores ×100, best per block bold.

    A cell is the mean dev score over seeds at the λ (and lr) with the best mean for that task, student and method;
    a method is the loss, split by τ ("vanilla τ=2") unless a search drew many τ values ("vanilla (τ tuned)").
    MNLI shows matched/mismatched accuracy (mismatched at the epoch chosen on matched); the Average is the mean of
    the row's headline numbers, MNLI counted by its matched accuracy only.
    """
    if trials.empty:
        return "(no finished trials)\n"
    df = setting_view(trials)
    companions = {t: split_metrics(t)[1:] for t in df["task"].unique()}  # MNLI: accuracy_mm beside accuracy_m
    extra = sorted({f"best_glue_{m}" for ms in companions.values() for m in ms} & set(df.columns))
    cells = best_settings(df, ["task", "student", "_method"], extra=extra)
    tasks = sorted(cells["task"].unique(), key=task_rank)
    metric = {t: most_common(cells.loc[cells["task"] == t, "metric"]) for t in tasks}
    header = ["Student", "Params (M)", f"Method{SELECTION_HEADER.get(selection_kind(trials['selection']), '')}",
              *[task_header(t, metric[t]) for t in tasks], "Average",
              "Δ Average vs ce [95% CI]"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * (len(tasks) + 2)) + "|"]
    majority = {t: most_common(df.loc[df["task"] == t, "majority_score"]) for t in tasks}
    references = reference_rows(df, tasks, majority, metric)
    for label, scores in references:
        known = [scores[t] for t in tasks if scores[t] is not None]
        average = f"{100 * np.mean(known):.1f}" if known else "–"
        if 0 < len(known) < len(tasks):
            average += f" ({len(known)} of {len(tasks)})"
        lines.append("| " + " | ".join(["*reference*", "–", f"*{label}*",
                                        *("–" if scores[t] is None else f"{100 * scores[t]:.1f}" for t in tasks),
                                        average, ""]) + " |")
    incomplete = any_cut = False
    used: set[str] = set()  # marks that need their note
    for student in [s for s in student_order(trials) if s in set(cells["student"])]:
        block = cells[cells["student"] == student]
        methods = sorted(block["_method"].unique(), key=loss_rank)
        values = {m: {} for m in methods}  # method -> task -> (headline, text)
        seeds = {(c["_method"], c["task"]): setting_seeds(df, c, key="_method") for _, c in block.iterrows()}
        cut = {(c["_method"], c["task"]) for _, c in block.iterrows()
               if setting_rows(df, c, key="_method")["stopped_early"].fillna(False).astype(bool).any()}
        any_cut |= bool(cut)
        for _, cell in block.iterrows():
            head = cell["dev_score_mean"] * 100
            others = [cell.get(f"best_glue_{m}", np.nan) for m in companions[cell["task"]]]
            text = "/".join([f"{head:.1f}", *("–" if pd.isna(v) else f"{v * 100:.1f}" for v in others)])
            values[cell["_method"]][cell["task"]] = (head, text)
        averages, covered = {}, {}
        for m in methods:
            heads = [values[m][t][0] for t in tasks if t in values[m]]
            averages[m] = float(np.mean(heads)) if heads else np.nan
            covered[m] = len(heads)
            incomplete |= len(heads) < len(tasks)
        best = {t: max((round(values[m][t][0], 1) for m in methods if t in values[m]), default=None) for t in tasks}
        # Averages over different task sets are not comparable: bold only among the rows that cover the most tasks.
        widest = max(covered.values(), default=0)
        best_avg = max((round(a, 1) for m, a in averages.items() if pd.notna(a) and covered[m] == widest),
                       default=None)
        params = _format_params(block["student_parameters_m"].max())
        for i, m in enumerate(methods):
            row = [str(student) if i == 0 else "", params if i == 0 else "", m]
            for t in tasks:
                if t not in values[m]:
                    row.append("–")
                    continue
                head, text = values[m][t]
                text = f"**{text}**" if round(head, 1) == best[t] else text
                row.append(text + _mark(m, t, seeds, used, majority.get(t)) + (" †" if (m, t) in cut else ""))
            avg = averages[m]
            avg_text = "–" if pd.isna(avg) else f"{avg:.1f}"
            if covered[m] == widest and pd.notna(avg) and round(avg, 1) == best_avg:
                avg_text = f"**{avg_text}**"
            if 0 < covered[m] < len(tasks):
                avg_text += f" ({covered[m]} of {len(tasks)})"
            row.append(avg_text)
            row.append(_average_vs_ce(m, [t for t in tasks if t in values[m]], seeds))
            lines.append("| " + " | ".join(row) + " |")
    notes = ["**Chosen on the reported dev set** (`selection: dev`): dev-set scores ×100, the mean over seeds at the "
             "λ (and lr) with the best mean dev score for each task, student and method; a trial's score is its best "
             "epoch on dev. Both choices were made on the numbers shown, so they are optimistic (equally for every "
             "method); the default, a train hold-out, is not. Best per student in **bold**.",
             "ce is cross-entropy on the labels only (λ = 1). At τ = 1 the taylor loss trains exactly like ce "
             "(its gradient does not depend on the teacher), so taylor vs ce differences are seed noise.",
             "Differences to ce are paired by seed (same initialisation, batch order and dropout): "
             + "".join(MARK_NOTES[a] + "; " for a in AGREEMENT_ORDER if a in used)
             + "° a difference whose 95% CI (Student t over seeds) contains 0. The last column is the paired "
             "difference of the Average ×100 with its CI (one seed: no CI)."]
    note = reference_note(df, tasks, metric) if references else None
    if note:
        notes.append(note)
    transfer = transfer_note(trials)
    if transfer:
        notes.insert(1, transfer)
    if AT_MAJORITY in used:
        notes.append("∅ the cell is not above the majority-class baseline at 95% confidence (its Student-t interval "
                     "over seeds reaches it; one seed: its score is at or below it): no measurable learning.")
    if CONSTANT in used:
        notes.append("(1 class): every seed of the cell predicts a single class for all of dev, a constant "
                     "predictor: its score is the metric's value for that class, whatever the method.")
    selections = set(trials["selection"].dropna()) if "selection" in trials else {"dev"}
    if selections == {"train_holdout"}:
        notes[0] = ("Dev-set scores ×100, the dev set used as a test set only: each trial's epoch and each task, "
                    "student and method's λ (and lr) were chosen on a held-out part of the training set "
                    "(`selection: train_holdout`); a cell is the mean dev score over seeds at that setting. Best per "
                    "student in **bold**.")
    elif len(selections) > 1:
        notes.insert(1, "Mixed selection: some trials chose their epoch and setting on dev, others on a train "
                        "hold-out; their dev scores are not equally optimistic.")
    if stage == "final":
        notes.insert(1, "Final stage: each method's best search setting, rerun for every final seed to the full "
                        "epoch budget with no early stopping (the same budget and seeds for every method).")
    searched = searched_options(trials)
    if searched:
        notes.insert(1, "A cell's setting also holds the training options the search varied (search_space: "
                        f"{', '.join(searched)}): the leaderboard's best_<key> columns give each cell's values.")
    if any_cut:
        notes.insert(1, "† the cell's trials include ones that early stopping cut short: budgets differ, so the "
                        "comparison with other cells is not at equal cost (add a final stage: `final:`).")
    lm_tasks = [task_name(t) for t in tasks if is_causal_lm(t, metric[t])]
    if lm_tasks:
        notes.insert(1, f"{', '.join(lm_tasks)}: a causal-LM task (docs/llm.md). Its score (Agree) is the student's "
                        "top-1 agreement with the teacher's top-1 token at every token of the responses to the dev "
                        "prompts (the teacher's greedy answers, unless a task's files give the responses); ce there is "
                        "cross-entropy on those responses (sequence-level KD when the teacher wrote them), vanilla the "
                        "forward KL per token from the teacher's top-k cache, taylor eq. 8 per token. Its references: "
                        "the most frequent response token of train predicted at every position, and the teacher, "
                        "which agrees with its own top-1 token (100 by definition).")
    if "mnli" in tasks:
        notes.insert(1, "MNLI: matched/mismatched accuracy (mismatched at the epoch chosen on matched); the "
                        "Average uses matched accuracy only.")
    if incomplete:
        notes.append("Average over the tasks a row has results for, marked \"(n of N)\" when that is not all of them "
                     "(bold compares only rows that cover the same, widest set of tasks); – marks a task with no "
                     "finished trial.")
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
