"""Benchmark 7: a real sweep packed vs unpacked, the issue-23 target "the results/glue-cpu grid never slower".

The same sweep config runs twice, each as its own `makd sweep` process (what a user runs, so neither inherits the
other's warm process): as written, with packs off, and with `pack: {size: auto}`, which runs its final stage (and a
grid without a scheduler) in as many packs per student as trials run at once (docs/sweeps.md). The teacher cache
is filled before either, so both start warm. Reported per run: the sweep's wall, each stage's seconds (the sum
over tasks of the stage's span, first trial start to last trial end, from events.jsonl), trials per hour, the Ray
trials each stage ran, and whether every trial both runs share has the same scores and weight fingerprints
(sequential packs train each member as alone).

    python -m bench.pack_grid results/glue-cpu/configs/2x128.yaml --repeats 3   # 45 min on 2 cores
    python -m bench.pack_grid CONFIG --glue-dir DIR --out OUT                   # toy size: any small sweep config

Writes OUT/pack_grid.csv (one row per repeat, way and stage) and OUT/pack_grid_results.csv (per repeat: trials
both ways ran, how many equal) and prints the tables; OUT defaults to results/bench.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

from bench import common
from bench.common import progress

WAYS = {"packs off": None, "pack: {size: auto}": {"size": "auto"}}
SAME_TRIAL = ["task", "student", "stage", "loss", "lam", "tau", "seed"]
RESULT = ["best_score", "dev_score", "best_epoch", "weights_fingerprint", "predictions_fingerprint"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.pack_grid", description=__doc__.split("\n\n")[0])
    p.add_argument("config", type=Path, help="a sweep config (its own pack: key is replaced)")
    p.add_argument("--glue-dir", default=common.GLUE_DIR)
    p.add_argument("--out", type=Path, default=common.RESULTS_DIR)
    p.add_argument("--repeats", type=int, default=1, help="runs of each way, each way first in every other repeat")
    return p.parse_args(argv)


def sweep(raw: dict, way: str, root: Path, glue_dir: str) -> tuple[float, pd.DataFrame, list[dict]]:
    """One `makd sweep` process: (wall seconds, its trials.csv, its events)."""
    from makd_sweep.experiment_dir import events

    raw = {**raw, "name": f"{raw['name']}-{'packed' if WAYS[way] else 'unpacked'}", "storage": str(root)}
    raw.pop("pack", None)
    if WAYS[way]:
        raw["pack"] = WAYS[way]
    config = root / f"{raw['name']}.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "makd_sweep.main", "sweep", str(config), "--glue-dir", glue_dir, "--quiet"],
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"bench.pack_grid: the {way} sweep failed (exit {done.returncode}): {done.stderr[-2000:]}")
    experiment = root / raw["name"]
    return wall, pd.read_csv(experiment / "trials.csv"), events(experiment)


def stage_rows(way: str, wall: float, trials: pd.DataFrame, log: list[dict]) -> list[dict]:
    """One row per stage (and one for the whole sweep): trials, Ray trials, seconds, trials/hour. A stage's
    seconds are the sum over tasks of that task's stage span (first trial start to last trial end): the tasks run
    one after another, each its search then its final stage."""
    starts, ends = {}, {}
    for e in log:  # a trial ends with its last event: "done", or the epoch at which ASHA stopped it
        if e.get("trial_id") is None or e.get("time") is None:
            continue
        if e.get("event") == "start":
            starts.setdefault(str(e["trial_id"]), e["time"])
        ends[str(e["trial_id"])] = max(e["time"], ends.get(str(e["trial_id"]), e["time"]))
    ray_ids = trials["trial_id"].where(trials["pack_id"].isna(), trials["pack_id"]) if "pack_id" in trials \
        else trials["trial_id"]

    def span(part: pd.DataFrame) -> float | None:
        ids = [str(t) for t in part["trial_id"]]
        first = min((starts[t] for t in ids if t in starts), default=None)
        last = max((ends[t] for t in ids if t in ends), default=None)
        return last - first if first is not None and last is not None else None

    rows = []
    for stage, part in [*trials.groupby("stage", sort=False), ("whole sweep", trials)]:
        spans = [span(task_part) for _, task_part in part.groupby("task", sort=False)]
        seconds = wall if stage == "whole sweep" else (sum(spans) if all(x is not None for x in spans) else None)
        rows.append({"way": way, "stage": stage, "trials": len(part), "ray_trials": ray_ids[part.index].nunique(),
                     "finished": int((part["status"] == "TERMINATED").sum()), "seconds": seconds,
                     "trials_per_hour": len(part) / seconds * 3600 if seconds else None})
    return rows


def compare(runs: dict[str, pd.DataFrame]) -> dict:
    """The trials both runs trained (ASHA's stops depend on timing, so the search stages may differ), and whether
    each one's scores and weight fingerprints are the same in both."""
    (_, a), (_, b) = runs.items()
    keys = [k for k in SAME_TRIAL if k in a and k in b]
    a, b = a[a["status"] == "TERMINATED"], b[b["status"] == "TERMINATED"]
    joined = a.set_index(keys)[RESULT].join(b.set_index(keys)[RESULT], how="inner", lsuffix="_a", rsuffix="_b")
    equal = pd.concat([joined[f"{c}_a"].astype(str) == joined[f"{c}_b"].astype(str) for c in RESULT], axis=1).all(axis=1)
    final = joined.index.get_level_values("stage") == "final" if "stage" in keys else equal.index.notna()
    return {"trials_in_both": len(joined), "equal": int(equal.sum()), "final_in_both": int(final.sum()),
            "final_equal": int(equal[final].sum())}


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per stage: each way's median seconds and the unpacked/packed ratio within each repeat (median, min-max)."""
    off, auto = WAYS
    rows = []
    for stage in dict.fromkeys(frame["stage"]):
        part = frame[frame["stage"] == stage].pivot(index="repeat", columns="way", values="seconds")
        ratio = common.stats(part[off] / part[auto])
        rows.append({"stage": stage, f"{off} s": part[off].median(), f"{auto} s": part[auto].median(),
                     "speed-up (unpacked s / packed s)": ratio["median"], "min": ratio["min"], "max": ratio["max"],
                     "repeats": ratio["n"]})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    raw = yaml.safe_load(args.config.read_text())
    common.warm_teacher_cache({**raw, "data": {"glue_dir": args.glue_dir}})  # neither timed run pays the teacher
    rows, sameness = [], []
    for repeat in range(args.repeats):
        order = list(WAYS) if repeat % 2 == 0 else list(WAYS)[::-1]  # each way first in every other repeat
        trials = {}
        with tempfile.TemporaryDirectory(prefix="makd-bench-pack-grid-") as tmp:
            for way in order:
                wall, frame, log = sweep(raw, way, Path(tmp), args.glue_dir)
                trials[way] = frame
                rows += [{"repeat": repeat, **row} for row in stage_rows(way, wall, frame, log)]
                progress(rows[-1])
        sameness.append({"repeat": repeat, **compare({way: trials[way] for way in WAYS})})
    frame = pd.DataFrame(rows)
    common.RESULTS_DIR = args.out
    common.write_csv(frame.assign(config=str(args.config)), "pack_grid.csv")
    same = pd.DataFrame(sameness)
    common.write_csv(same, "pack_grid_results.csv")
    common.print_table(f"Benchmark 7: `{args.config}` as written (packs off) and with pack: {{size: auto}}, each its "
                       f"own `makd sweep` process, {args.repeats} repeat(s), each way first in every other repeat",
                       summary(frame))
    common.print_table("Every run, stage by stage (a stage's seconds: the sum over tasks of its span)", frame)
    common.print_table("Trials both ways ran to the end in a repeat, and how many have equal scores and weight "
                       "fingerprints (ASHA's stops depend on timing, so a search stage may differ by a trial)", same)


if __name__ == "__main__":
    main()
