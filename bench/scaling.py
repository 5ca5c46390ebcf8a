"""Benchmarks 4 and 5: the same sweep on a 1-node and on a 2-node Ray cluster (1 CPU per node, 1 CPU per trial),
and Ray's per-trial overhead against the trial's own compute.

Both nodes run on this one machine (ray.cluster_utils.Cluster: separate raylets and object stores), so they share
its cores: with 2 cores, 2 one-CPU nodes get one core each, as 2 real one-core machines would, but network transfer
(the teacher logits and the datasets shipped through the object store) costs nothing here.

Per trial (from Ray's result.json): compute = sum over epochs of train + eval seconds; in-trial overhead = Ray's
time_total_s - compute (process start, imports, student build, tokenisation, checkpoint writes); scheduling overhead
= (sweep wall x nodes - sum of time_total_s) / trials (Ray start, driver-side data preparation, placement, idle
slots at the end of the sweep).

    python -m bench.scaling
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from bench import common
from bench.common import REPEATS, print_table, stats, write_csv
from makd_sweep.loopback import loopback_cluster

TRAIN_EXAMPLES = 128
EPOCHS = 1


def trial_compute(root: Path) -> list[dict]:
    out = []
    for result in sorted(Path(root).glob("*/*/result.json")):
        epochs = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        if epochs:
            out.append({"compute_s": sum(e["train_seconds"] + e["eval_seconds"] for e in epochs),
                        "ray_trial_s": epochs[-1]["time_total_s"], "node_id": epochs[-1]["node_id"]})
    return out


def run(nodes: int) -> tuple[dict, list[dict]]:
    cluster = loopback_cluster(nodes)  # every node on 127.0.0.1, every server on loopback (makd_sweep/loopback.py)
    try:
        with common.bench_sweep("bench-scaling", address=cluster.address, epochs=EPOCHS,
                                max_train_samples=TRAIN_EXAMPLES) as (outcome, wall, root):
            frame, trials = outcome.trials, trial_compute(root)
    finally:
        cluster.shutdown()
    n = len(frame)
    ray_total = sum(t["ray_trial_s"] for t in trials)
    compute = sum(t["compute_s"] for t in trials)
    return ({"nodes": nodes, "trials": n, "finished": int((frame["status"] == "TERMINATED").sum()),
             "nodes_used": len({t["node_id"] for t in trials}), "wall_s": wall, "trials_per_hour": 3600 * n / wall,
             "compute_s_per_trial": compute / n, "in_trial_overhead_s": (ray_total - compute) / n,
             "scheduling_overhead_s": (wall * nodes - ray_total) / n}, trials)


def main() -> None:
    common.warm_bench_sweep(epochs=EPOCHS, max_train_samples=TRAIN_EXAMPLES)  # every run starts with a warm cache
    rows = []
    for repeat in range(REPEATS):
        for nodes in (1, 2):
            row, _ = run(nodes)
            rows.append({"repeat": repeat, **row})
            common.progress(rows[-1])
    frame = pd.DataFrame(rows)
    write_csv(frame, "scaling.csv")
    wide = frame.pivot(index="repeat", columns="nodes", values="trials_per_hour")
    ratio = stats(wide[2] / wide[1])
    summary = []
    for nodes in (1, 2):
        part = frame[frame["nodes"] == nodes]
        s = stats(part["trials_per_hour"])
        summary.append({"nodes": nodes, "trials_per_hour_median": s["median"], "min": s["min"], "max": s["max"],
                        "wall_s_median": stats(part["wall_s"])["median"], "repeats": s["n"]})
    summary.append({"nodes": "2 / 1", "trials_per_hour_median": ratio["median"], "min": ratio["min"],
                    "max": ratio["max"], "wall_s_median": None, "repeats": ratio["n"]})
    print_table(f"Benchmark 4: 1 vs 2 nodes (1 CPU each), 8 trials, RTE {TRAIN_EXAMPLES} examples x {EPOCHS} epoch(s), 2x384",
                pd.DataFrame(summary))
    overhead = []
    for column in ("compute_s_per_trial", "in_trial_overhead_s", "scheduling_overhead_s"):
        for nodes in (1, 2):
            s = stats(frame[frame["nodes"] == nodes][column])
            overhead.append({"seconds per trial": column, "nodes": nodes, "median": s["median"], "min": s["min"],
                             "max": s["max"]})
    print_table("Benchmark 5: Ray overhead per trial vs the trial's own compute", pd.DataFrame(overhead))


if __name__ == "__main__":
    main()
