"""`makd report EXP... -o report.html`: one self-contained page (figures embedded, no network needed to view it).

Sections, answer first: a verdict per task written from the numbers (makd_sweep/report/verdict.py), the headline
leaderboard with paired differences to CE and their CIs, the paper-style table, the score-vs-cost Pareto front, λ
curves and per-trial learning curves (each only where it can say something), then the sweep's facts (its config
folded, as the YAML that reruns it) and every finished trial. The sweep
driver writes it into the experiment dir and rewrites it as trials finish (makd_sweep/live_report.py).
"""

from __future__ import annotations

import base64
import html
import io
import json
import time
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from makd.errors import UsageError
from makd.files import atomic_write_bytes
from makd_sweep.experiment_dir import SEARCHED_OPTIONS, sweep_config
from makd_sweep.report.build import Report
from makd_sweep.report.curves import learning_curves, plot_learning_curves
from makd_sweep.report.paired import IDENTICAL, SAME_PREDICTIONS, TIE, UNKNOWN
from makd_sweep.report.paper import AT_MAJORITY
from makd_sweep.report.pareto import COSTS, cost_frame, plot_pareto
from makd_sweep.report.plots import plot_lambda_curves
from makd_sweep.report.rank import known_true
from makd_sweep.report.searched import parameter_importance, plot_searched_keys
from makd_sweep.report.verdict import verdict_lines

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1200px;padding:0 1rem;
color:#222}
h1{font-size:1.6rem} h2{font-size:1.25rem;margin-top:2.2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
table{border-collapse:collapse;font-size:.85rem;margin:.6rem 0} th,td{border:1px solid #ddd;padding:.25rem .5rem}
th{background:#f3f3f3;text-align:left} td.num{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;border:1px solid #eee} .note{color:#555;font-size:.9rem} pre{background:#f7f7f7;padding:.6rem;
overflow-x:auto;font-size:.8rem} .facts td:first-child{font-weight:600}
"""


def _png(fig: Figure | None) -> str | None:
    if fig is None:
        return None
    buffer = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buffer)
    return _png_uri(buffer.getvalue())


def _png_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _img(uri: str | None, alt: str) -> str:
    return f'<img src="{uri}" alt="{html.escape(alt)}">' if uri else f'<p class="note">{html.escape(alt)}: no data.</p>'


def _fmt(value, digits: int = 1, scale: float = 1.0) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value * scale:.{digits}f}"
    return html.escape(str(value))


def _table(frame: pd.DataFrame, table_id: str, numeric: set[str]) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for _, row in frame.iterrows():
        fields = "".join(f'<td class="num">{row[c]}</td>' if c in numeric else f"<td>{row[c]}</td>" for c in frame.columns)
        rows.append(f"<tr>{fields}</tr>")
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _inline(text: str) -> str:
    """Markdown's **bold** and `code` in one escaped line."""
    text = html.escape(text)
    for mark, tag in (("**", "b"), ("`", "code")):
        while text.count(mark) >= 2:
            text = text.replace(mark, f"<{tag}>", 1).replace(mark, f"</{tag}>", 1)
    return text


def markdown_table_html(markdown: str, table_id: str) -> str:
    """The paper table's Markdown (a pipe table, then `- ` notes) as HTML; **bold** kept."""
    lines = markdown.strip().splitlines()
    table = [line for line in lines if line.startswith("|")]
    notes = [line[2:] for line in lines if line.startswith("- ")]

    def table_cell(text: str, tag: str) -> str:
        return f"<{tag}>{_inline(text.strip())}</{tag}>"

    rows = ["<tr>" + "".join(table_cell(c, "th" if i == 0 else "td") for c in line.strip().strip("|").split("|")) + "</tr>"
            for i, line in enumerate(table) if i != 1]  # line 1 is the |---| separator
    body = f'<table id="{table_id}"><thead>{rows[0] if rows else ""}</thead><tbody>{"".join(rows[1:])}</tbody></table>'
    return body + ("<ul class='note'>" + "".join(f"<li>{_inline(n)}</li>" for n in notes) + "</ul>" if notes else "")


AGREEMENT_TEXT = {IDENTICAL: "= (identical students at every seed: equal weight fingerprints)",
                  SAME_PREDICTIONS: "+0.0 (same dev predictions at every seed, different weights)",
                  TIE: "+0.0 (a tie: equal scores, different predictions)",
                  UNKNOWN: "+0.0 (equal scores; identity unknown: no fingerprints)"}


def cost_note(board: pd.DataFrame) -> str:
    """Where the ms / example column was measured: ' Inference cost re-measured on <machine> ...' or ''."""
    if "latency_ms_mean" not in board or board["latency_ms_mean"].isna().all():
        return ""
    places = sorted({str(m) for m in board.get("cost_measured_on", pd.Series(dtype=object)).dropna()})
    if not places:
        return (" ms / example: one number per task × student, measured once by the sweep (trials older than that: "
                "the median of their own per-trial timings).")
    rest = " (rows without a number there: their trials' own)" if board["cost_measured_on"].isna().any() else ""
    return f" ms / example: re-measured apart from the trials by makd inference-cost on {'; '.join(places)}{rest}."


def headline(board: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard as people read it: one row per task × student × method, scores ×100, Δ vs CE with its CI."""
    def delta(row) -> str:
        agreement = row.get("agreement_vs_ce")
        if isinstance(agreement, str) and agreement:
            return AGREEMENT_TEXT[agreement]
        d, lo, hi = row.get("delta_vs_ce"), row.get("ci_low_vs_ce"), row.get("ci_high_vs_ce")
        if d is None or pd.isna(d):
            return ""
        ci = "" if lo is None or pd.isna(lo) else f" [{100 * lo:+.1f}, {100 * hi:+.1f}]"
        return f"{100 * d:+.1f}{ci}"

    frame = pd.DataFrame({
        "task": board["task"], "student": board["student"], "params (M)": board["student_parameters_m"].map(_fmt),
        "method": board["loss"], "best λ": board["best_lam"].map(lambda v: _fmt(v, 2)),
        "best τ": board["best_tau"].map(lambda v: _fmt(v, 2)),
        "score ×100": [_fmt(m, 1, 100) + ("" if pd.isna(s) else f" ± {_fmt(s, 1, 100)}")  # one seed: no spread
                       + (AT_MAJORITY if known_true(at) else "")
                       for m, s, at in zip(board["dev_score_mean"], board["dev_score_std"], board["at_majority"], strict=True)],
        "seeds": board["n_seeds"], "Δ vs ce ×100 [95% CI]": board.apply(delta, axis=1),
        "majority class ×100": board["majority_score"].map(lambda v: _fmt(v, 1, 100)),
        "teacher ×100": board["teacher_score"].map(lambda v: _fmt(v, 1, 100)),
        "device-hours": board["device_hours_total"].map(lambda v: _fmt(v, 4)),
        "ms / example (batch 1)": board["latency_ms_mean"].map(lambda v: _fmt(v, 2))})
    searched = [c for c in board.columns if c.startswith("best_") and c[5:] in SEARCHED_OPTIONS]
    for at, column in enumerate(searched, start=list(frame.columns).index("best τ") + 1):  # search_space's keys
        frame.insert(at, f"best {column[5:]}", board[column].map(lambda v: f"{v:.3g}" if pd.notna(v) else ""))
    unscored = [c for c, source in MEASURED_HEADINGS.items() if board[source].isna().all()]
    return frame.drop(columns=unscored)  # trials recorded before makd measured these: no empty columns


# columns of trials that older makd did not record (references, inference cost): left out when no row has them
MEASURED_HEADINGS = {"majority class ×100": "majority_score", "teacher ×100": "teacher_score",
                     "ms / example (batch 1)": "latency_ms_mean"}


def trials_view(trials: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "task": trials["task"], "trial": trials["trial_id"], "student": trials["student"], "method": trials["loss"],
        "λ": trials["lam"].map(lambda v: _fmt(v, 2)), "τ": trials["tau"].map(lambda v: _fmt(v, 2)),
        "seed": trials["seed"], "score ×100": trials["best_score"].map(lambda v: _fmt(v, 1, 100)),
        "epochs": trials["epochs_run"], "status": trials["status"],
        "wall s": trials["wall_seconds"].map(lambda v: _fmt(v, 1))})


SWEEP_FILES = ("trials.csv", "trials.jsonl", "leaderboard.csv", "table.md", "lambda.png", "report.html", "sweep.json",
               "events.jsonl")  # what a sweep leaves in its experiment dir, beside Ray's per-task folders


def sweep_facts(paths: list[str]) -> list[tuple[str, str]]:
    """sweep.json of each experiment dir (config, teacher cache, wall time, status counts); a running sweep has none."""
    facts = []
    for path in paths:
        sweep = Path(path) / "sweep.json"
        if not sweep.is_file():
            if Path(path).is_dir():
                facts.append((f"{path}", "running (no sweep.json yet): the page is rewritten as trials finish"))
            continue
        try:
            data = json.loads(sweep.read_text())
        except ValueError:
            continue
        cache = data.get("teacher_cache") or {}
        files = [name for name in SWEEP_FILES if (Path(path) / name).is_file()]
        facts += [(f"{path}: files", html.escape(", ".join(files)) + " (in the experiment dir)"),
                  (f"{path}: wall time", f"{data.get('wall_seconds', '?')} s"),
                  (f"{path}: trials", ", ".join(f"{n} {s}" for s, n in (data.get("status_counts") or {}).items())),
                  (f"{path}: teacher cache", "; ".join(f"{t}: {c.get('status')}" for t, c in cache.items())),
                  (f"{path}: config", _config_details(data.get("config"), data.get("config_yaml")))]
    return facts


def _config_details(config, config_yaml) -> str:
    """The sweep's config, folded, as the YAML that reruns it (`makd sweep` reads it back to the same config): the
    driver writes it into sweep.json (makd_sweep.config.sweep_yaml, the inverse of the config's parser), so the report
    only reads it."""
    if not isinstance(config, dict):
        return "not recorded"
    if isinstance(config_yaml, str):
        text = config_yaml
    else:  # an older or hand-edited sweep.json: show what it holds
        text = json.dumps(config, indent=1)
    return ("<details><summary>the sweep's config (YAML: save it and run <code>makd sweep</code> on it to rerun the "
            f"sweep)</summary><pre>{html.escape(text)}</pre></details>")


def sweep_name(path: str | Path) -> str:
    """The name of the sweep an input comes from: sweep.json's `name` in its experiment dir (the dir itself, or the
    dir a trials.csv lies in), else that dir's name (a running sweep's dir is named after it)."""
    path = Path(path)
    root = path.parent if path.suffix in (".csv", ".jsonl") else path
    try:
        config = sweep_config(root) or {}
    except UsageError:  # a hand-edited sweep.json: the dir's name still says which sweep
        config = {}
    return str(config.get("name") or root.resolve().name or path)


def page_title(paths: list[str]) -> str:
    """The page's title: the sweeps' names (one per input, in order, each once)."""
    return "makd report: " + ", ".join(dict.fromkeys(sweep_name(p) for p in paths))


def render(report: Report, paths: list[str], title: str | None = None, lambda_png: bytes | None = None) -> str:
    """The whole page as one string; lambda_png: the λ figure already drawn for lambda.png (drawn here otherwise)."""
    board = report.leaderboard
    costs = cost_frame(board)
    pareto_rows = costs[costs[[f"pareto_{c}" for c, _ in COSTS]].any(axis=1)]
    pareto = pd.DataFrame({"task": pareto_rows["task"], "student": pareto_rows["student"], "method": pareto_rows["loss"],
                           "score ×100": pareto_rows["score"].map(_fmt),
                           "optimal against": [", ".join(label for c, label in COSTS if r[f"pareto_{c}"])
                                               for _, r in pareto_rows.iterrows()]})
    failed = report.failed
    facts = [("inputs", "<br>".join(html.escape(s) for s in report.sources)),
             ("tables hold", f"the {report.stage} stage ({len(report.trials)} finished trials; finished per stage: "
                             + ", ".join(f"{n} {s}" for s, n in report.stages.items()) + ")"),
             ("not finished", ", ".join(f"{n} {s}" for s, n in report.unfinished_by_status.items()) or "none"),
             ("failures", "<br>".join(html.escape(f"{r.task} {r.trial_id}: {r.error}") for r in failed.itertuples())
              or "none")]
    facts += sweep_facts(paths)
    curves = plot_learning_curves(learning_curves(paths), report.trials, report.leaderboard)
    lam_figure = None if lambda_png else plot_lambda_curves(report.trials, stage=report.stage,
                                                           board=report.leaderboard, search=report.search_trials)
    lam_uri = _png_uri(lambda_png) if lambda_png else _png(lam_figure)
    title = title or page_title(paths)
    verdicts = verdict_lines(board)
    searched = report.search_trials if report.search_trials is not None else report.trials
    importance = parameter_importance(searched)
    sections = [
        f"<h1>{html.escape(title)}</h1>",
        "<h2>Answer</h2><ul id='verdict'>" + "".join(f"<li>{html.escape(v)}</li>" for v in verdicts) + "</ul>",
        f"<p class='note'>Written {time.strftime('%Y-%m-%d %H:%M:%S')} by makd report from the {report.stage} stage "
        f"({len(report.trials)} finished trials). Dev-set scores ×100; a trial's score is its best epoch; differences "
        "to ce are paired by seed with a Student-t 95% CI. At τ = 1 the taylor loss trains exactly like ce (its "
        "gradient does not depend on the teacher): taylor reads identical to ce where the trained weights are.</p>",
        "<h2>Leaderboard</h2><p class='note'>One row per task × student × method at its best setting; Δ vs ce is "
        "paired by seed with a Student-t 95% CI." + (
            " The references are on the same dev set: the majority class of the training labels predicted for "
            "every example, and the teacher's own score; ∅ marks a score not above the majority class at 95% "
            "confidence (no measurable learning)." if board["majority_score"].notna().any() else "")
        + html.escape(cost_note(board)) + "</p>",
        _table(headline(board), "leaderboard", {"params (M)", "best λ", "best τ", "seeds", "device-hours",
                                                *MEASURED_HEADINGS}),
        "<h2>Paper-style table (Table 2 layout)</h2>", markdown_table_html(report.paper_table_markdown, "paper-table"),
        "<h2>Score against cost: the Pareto front</h2><p class='note'>Methods on the same point are drawn nested, the "
        "first in the leaderboard's order outermost (taylor at τ = 1 often sits inside ce).</p>",
        _img(_png(plot_pareto(board)), "score against cost (a panel needs two or more distinct costs: with one "
                                      "student there is no parameter axis)"),
        _table(pareto, "pareto", {"score ×100"}),
        "<h2>Dev score against λ</h2>",
        _img(lam_uri, "λ curves (drawn when the methods ran at two or more λ values)"),
        "<h2>Score against each searched key (search stage)</h2><p class='note'>Every finished search trial's "
        "selection score against each setting key it varied; the importance table is Optuna's fANOVA share of the "
        "score's variance per key (and per loss, where several ran), fitted on these trials.</p>",
        _img(_png(plot_searched_keys(searched)), "score against each searched key (drawn when the search varied a "
                                                 "key other than λ: search_space, or an lr or τ range)"),
        _table(importance.assign(importance=importance["importance"].map(lambda v: f"{v:.2f}")),
               "importance", {"importance", "trials"}) if not importance.empty else "",
        "<h2>Learning curves</h2>",
        _img(_png(curves), "per-trial learning curves (experiment dirs only: trials CSVs hold no per-epoch history)"),
        "<h2>Sweep</h2>", '<table class="facts" id="facts">' + "".join(
            f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>" for k, v in facts) + "</table>",
        f"<h2>Trials ({report.stage} stage, finished)</h2>",
        _table(trials_view(report.trials), "trials", {"λ", "τ", "seed", "score ×100", "epochs", "wall s"}),
    ]
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>" + html.escape(title) +
            f"</title><style>{STYLE}</style></head><body>" + "\n".join(sections) + "</body></html>\n")


def write_html(report: Report, paths: list[str], out: str | Path, lambda_png: bytes | None = None) -> Path:
    atomic_write_bytes(Path(out), render(report, [str(p) for p in paths], lambda_png=lambda_png).encode())
    return Path(out)


def write_no_report_html(paths: list[str], out: str | Path, problem: str) -> Path:
    """The page for inputs that give no report (no finished trial yet, a bad path): what is wrong, no figure."""
    title = page_title(paths)
    page = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>" + html.escape(title) +
            f"</title><style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1><h2>Answer</h2>"
            f"<p id='no-report'>No report yet: {html.escape(problem)}.</p><p class='note'>Written "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')} by makd report. Rerun it once a trial has finished.</p>"
            "</body></html>\n")
    atomic_write_bytes(Path(out), page.encode())
    return Path(out)
