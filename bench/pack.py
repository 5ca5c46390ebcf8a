"""Benchmark 6: the short-trial sweep of benchmark 4 (8 trials, RTE 128 examples x 1 epoch, 2x384 student, 1 CPU per
trial, 2 at a time on one local node) run one trial per config and in packs (`pack: {size: 4}`: two Ray trials of
four members each), back to back in every repeat, each way first in every other repeat.

Reports trials/hour of each way, the packed/unpacked ratio within each repeat, the per-trial overheads as
benchmark 5 defines them, and whether every member's scores and weight fingerprints equal its unpacked trial's.

    python -m bench.pack
"""

from __future__ import annotations

import pandas as pd

from bench import common
from bench.common import REPEATS, print_table, stats, write_csv
from bench.scaling import trial_compute

TRAIN_EXAMPLES = 128
EPOCHS = 1
PACK_SIZE = 4
SAME_RUN = ["student", "loss", "lam", "tau", "seed"]
RESULT = ["best_score", "dev_score", "weights_fingerprint", "predictions_fingerprint"]


def run(pack_size: int) -> tuple[dict, pd.DataFrame]:
    overrides = {"pack": {"size": pack_size}} if pack_size > 1 else {}
    with common.bench_sweep("bench-pack", num_cpus=2, epochs=EPOCHS, max_train_samples=TRAIN_EXAMPLES,
                            max_concurrent_trials=2, **overrides) as (outcome, wall, root):
        frame, ray_trials = outcome.trials, trial_compute(root)
    n = len(frame)
    return ({"way": f"packs of {pack_size}" if pack_size > 1 else "one trial per config", "pack_size": pack_size,
             "trials": n, "ray_trials": len(ray_trials), "finished": int((frame["status"] == "TERMINATED").sum()),
             "wall_s": wall, "trials_per_hour": 3600 * n / wall,
             # a trial's (member's) own seconds, and Ray's seconds per Ray trial (a pack's whole time)
             "trial_s_mean": float(frame["wall_seconds"].mean()),
             "ray_trial_s_mean": sum(t["ray_trial_s"] for t in ray_trials) / max(len(ray_trials), 1)},
            frame.set_index(SAME_RUN)[RESULT].sort_index())


def main() -> None:
    common.warm_bench_sweep(epochs=EPOCHS, max_train_samples=TRAIN_EXAMPLES)  # every run starts with a warm cache
    rows = []
    for repeat in range(REPEATS):
        # each way goes first in every other repeat: the first sweep of a process pays cold starts
        order = (1, PACK_SIZE) if repeat % 2 == 0 else (PACK_SIZE, 1)
        measured = {size: run(size) for size in order}
        (alone, alone_results), (packed, packed_results) = measured[1], measured[PACK_SIZE]
        same = alone_results.equals(packed_results)
        for row in (alone, packed):
            rows.append({"repeat": repeat, **row, "results_equal_unpacked": same})
            common.progress(rows[-1])
    frame = pd.DataFrame(rows)
    write_csv(frame, "pack.csv")
    wide = frame.pivot(index="repeat", columns="pack_size", values="trials_per_hour")
    ratio = stats(wide[PACK_SIZE] / wide[1])
    summary = []
    for size in (1, PACK_SIZE):
        part = frame[frame["pack_size"] == size]
        s = stats(part["trials_per_hour"])
        summary.append({"way": part["way"].iloc[0], "trials_per_hour_median": s["median"], "min": s["min"],
                        "max": s["max"], "wall_s_median": stats(part["wall_s"])["median"], "repeats": s["n"]})
    summary.append({"way": f"packs of {PACK_SIZE} / one per config", "trials_per_hour_median": ratio["median"],
                    "min": ratio["min"], "max": ratio["max"], "wall_s_median": None, "repeats": ratio["n"]})
    print_table(f"Benchmark 6: packs of {PACK_SIZE} vs one trial per config, 8 trials, RTE {TRAIN_EXAMPLES} examples "
                f"x {EPOCHS} epoch(s), 2x384, 1 CPU per Ray trial, 2 at a time; every member's scores and weights "
                f"equal its unpacked trial's in every repeat: {bool(frame['results_equal_unpacked'].all())}",
                pd.DataFrame(summary))


if __name__ == "__main__":
    main()
