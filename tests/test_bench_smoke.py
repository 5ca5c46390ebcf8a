"""`make bench` end to end at toy scale: every benchmark script runs and writes its CSV (tiny models, toy data,
one repeat). The numbers mean nothing here; results/bench/ holds the real ones."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.docs import shown_commands
from tests.helpers import sentiment

pytestmark = [pytest.mark.sweep, pytest.mark.slow]


# Runs in a child process: the benchmarks start sweeps and clusters and attach Ray's log handlers to the current
# stderr, which must not leak into the other tests of this pytest process. Every benchmark runs its own main() at the
# smallest sizes (2-3 trials a sweep, one repeat, one micro-batch setting, two memory probes); the sweeps share one
# local Ray (run_sweep uses the Ray the process is connected to), and scaling, which starts clusters of its own,
# runs after it is shut down. results/bench/ holds the real runs (`make bench`).
CHILD = """
import sys
from bench import asha, cache_vs_loop, common, pack, profile_trial, scaling, throughput
from makd_sweep.cluster import init_ray
glue, model, out = sys.argv[1:4]
common.GLUE_DIR, common.RESULTS_DIR = glue, __import__("pathlib").Path(out)
for module in (asha, cache_vs_loop, common, pack, scaling, throughput):
    for name, value in (("TEACHER", model), ("STUDENT_2L", model), ("STUDENT_6L", model), ("REPEATS", 1),
                        ("GLUE_DIR", glue)):
        if hasattr(module, name):
            setattr(module, name, value)
common.GRID = {"losses": ["vanilla"], "lams": [0.0], "seeds": [0]}  # ce + vanilla: 2 trials a sweep
cache_vs_loop.BATCH_SIZE, cache_vs_loop.STEPS = 8, 2
cache_vs_loop.SWEEP = {**cache_vs_loop.SWEEP, "n_train": 32, "n_eval": 16, "epochs": 1, "lams": [0.0], "seeds": [0]}
asha.EPOCHS = 2  # toy numbers mean nothing: the fewest epochs at which ASHA (grace 1) still stops trials
asha.GRID = {"losses": ["ce", "vanilla", "taylor"], "lams": [0.0]}
pack.PACK_SIZE = 2
throughput.MICRO_BATCHES = [None]
profile_trial.MEMORY_VARIANTS = profile_trial.MEMORY_VARIANTS[:2]
init_ray(None, num_cpus=2)
for module in (cache_vs_loop, throughput, asha, pack, profile_trial):
    module.main()
__import__("ray").shutdown()
scaling.main()
"""


@pytest.fixture
def toy_glue(tmp_path) -> Path:
    """A toy GLUE folder with RTE (sentence pairs) and SST-2."""
    glue = tmp_path / "glue"
    for task, pairs in (("RTE", True), ("SST-2", False)):
        (glue / task).mkdir(parents=True)
        for name, ds in (("train.tsv", sentiment(160)), ("dev.tsv", sentiment(32, "validation", seed=1))):
            if pairs:
                rows = ["index\tsentence1\tsentence2\tlabel"] + [
                    f"{i}\t{t}\tit is {'good' if y else 'bad'}\t{'entailment' if y else 'not_entailment'}"
                    for i, (t, y) in enumerate(zip(ds.text_a, ds.labels, strict=True))]
            else:
                rows = ["sentence\tlabel"] + [f"{t}\t{int(y)}" for t, y in zip(ds.text_a, ds.labels, strict=True)]
            (glue / task / name).write_text("\n".join(rows) + "\n")
    return glue


def test_every_benchmark_runs_and_writes_its_csv(toy_glue, tiny_bert_dir, tmp_path):
    from bench import profile_trial

    out = tmp_path / "out"
    repo = Path(__file__).resolve().parents[1]  # bench/ importable in the child and in its Ray workers
    env = {**os.environ, "MAKD_HOME": str(tmp_path / "home"), "PYTHONPATH": str(repo)}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(toy_glue), str(tiny_bert_dir), str(out)], env=env,
                          cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    toy_bench = out
    steps = pd.read_csv(toy_bench / "cache_vs_loop_steps.csv")
    assert set(steps["mode"]) == {"ce", "kd_cached", "kd_teacher_in_loop"} and (steps["median_step_s"] > 0).all()
    sweeps = pd.read_csv(toy_bench / "cache_vs_loop_sweeps.csv")
    assert len(sweeps) == 2 and (sweeps["trials"] == 2).all() and (sweeps["finished"] == 2).all()
    runs = pd.read_csv(toy_bench / "throughput.csv")
    assert len(runs) == 3 and (runs["examples_per_s"] > 0).all()
    memory = pd.read_csv(toy_bench / "trial_memory.csv")
    assert len(memory) == 2 and (memory["peak_rss_mb"] > 100).all() and set(memory["micro_batch_size"]) == {32}
    runs = pd.read_csv(toy_bench / "asha.csv")
    assert set(runs["scheduler"]) == {"ASHA", "no early stopping"}
    full = runs[runs["scheduler"] == "no early stopping"].iloc[0]
    assert full["trial_epochs"] == full["trials"] * 2 == 6
    runs = pd.read_csv(toy_bench / "scaling.csv")
    assert list(runs["nodes"]) == [1, 2] and list(runs["nodes_used"]) == [1, 2] and (runs["finished"] == 2).all()
    runs = pd.read_csv(toy_bench / "pack.csv")
    assert list(runs["pack_size"]) == [1, 2] and list(runs["ray_trials"]) == [2, 1] and (runs["finished"] == 2).all()
    assert runs["results_equal_unpacked"].all()
    profile = (toy_bench / "profile_trial.md").read_text()
    assert "distill_trial" in profile and "save_checkpoint" in profile and "_fused_adamw" in profile
    assert all(variant in profile for variant in profile_trial.MEMORY_VARIANTS[:2])
    out = proc.stdout
    for title in ("Benchmark 1a", "Benchmark 1b", "Benchmark 2a", "Benchmark 2b", "Benchmark 3", "Benchmark 4",
                  "Benchmark 5", "Benchmark 6"):
        assert title in out


GPU_BENCH_CPU = ".venv/bin/python -m bench.gpu --device cpu --out /tmp/makd-bench-gpu-cpu"  # docs/performance.md


def test_gpu_benchmark_runs_at_toy_size_on_cpu_exactly_as_the_docs_show(toy_glue, tiny_bert_dir, tmp_path):
    """bench/gpu.py's every section on CPU (fake GPU fractions) at toy sizes, as docs/performance.md shows it. The
    teacher is the tiny random BERT and the data toy SST-2 ($MAKD_DEVICE_TEACHER, $MAKD_GLUE_DIR): the real MPNet
    teacher and GLUE made this one test 400-540 s of every CI run, and measured nothing a toy run does not."""
    import shlex
    import shutil

    repo = Path(__file__).resolve().parents[1]
    assert GPU_BENCH_CPU in shown_commands("docs/performance.md")
    out = Path("/tmp/makd-bench-gpu-cpu")
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "MAKD_HOME": str(tmp_path / "home"), "MAKD_GLUE_DIR": str(toy_glue),
           "MAKD_DEVICE_TEACHER": str(tiny_bert_dir)}
    proc = subprocess.run(shlex.split(GPU_BENCH_CPU), cwd=repo, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    epochs = pd.read_csv(out / "epochs.csv")
    assert len(epochs) == 3 and (epochs["epoch2_examples_per_s"] > 0).all()
    assert epochs["warmup_s"].tolist()[:2] == [0.0, 0.0] and epochs["warmup_s"].iloc[2] > 0  # only the last warms up
    packing = pd.read_csv(out / "packing.csv")
    assert list(packing["way"]) == ["fused pack of 2", "2 per GPU"] and (packing["finished"] == packing["trials"]).all()
    assert list(packing["gpu_fraction"]) == [1.0, 0.5] and list(packing["pack_size"]) == [2, 1]
    assert (packing["trials"] == 2).all()  # the same sweep both ways: ce + vanilla at one lambda, one seed
    # the sweep's wall = its fixed cost before the first trial + the trials' span + its fixed cost after the last
    parts = packing["before_first_trial_s"] + packing["trials_span_s"] + packing["after_last_trial_s"]
    assert (packing["before_first_trial_s"] > 0).all() and (packing["after_last_trial_s"] > 0).all()
    assert (parts >= packing["sweep_wall_s"] - 0.5).all() and (parts <= packing["bench_wall_s"] + 0.5).all()
    trials = pd.read_csv(out / "packing_trials.csv")  # the process trials' epochs (a pack's members share one)
    assert len(trials) == 2 and trials["epoch2_examples_per_s"].notna().all()
    # where a trial's time goes: checkpoint writes, the first report (Ray's copy to storage), the trial's wall
    assert (trials["ckpt1_s"] > 0).all() and (trials["report1_s"] > 0).all()
    assert (trials["trial_s"] > trials["ckpt1_s"] + trials["report1_s"]).all()
    loop = pd.read_csv(out / "loop.csv")
    assert sorted(set(loop["way"])) == sorted(["makd loop", "HF Trainer, cached logits",  # --before-masks: one more
                                               "HF Trainer, teacher in the loop"])
    syncs = pd.read_csv(out / "syncs.csv")  # on CPU nothing synchronises: the section runs, every count is 0
    assert len(syncs) > 0 and (syncs["syncs"] == 0).all() and syncs["way"].nunique() == 2
    assert pd.read_csv(out / "teacher.csv")["examples_per_s"].iloc[0] > 0
    fused = pd.read_csv(out / "fused.csv")
    assert list(fused["members"]) == [1, 2] and (fused["examples_per_s"] > 0).all()
    assert not (out / "compile.csv").exists()  # not on CPU by default: tests/test_compiled.py compiles there
    summary = (out / "summary.md").read_text()
    assert "## Targets" in summary and "## Packing" in summary and "## Fused packs" in summary
    assert not [line for line in summary.splitlines() if line.startswith(("{", "["))]  # tables only, no progress
    # the committed GPU results rebuild with the committed code
    rebuilt = tmp_path / "bench-gpu"
    shutil.copytree(repo / "results" / "bench-gpu", rebuilt)
    for run in ("", "run-6e217fd"):  # this run and the earlier one kept beside it
        subprocess.run([sys.executable, "-m", "bench.gpu", "--summarize", str(rebuilt / run)], cwd=repo, check=True,
                       capture_output=True)
        assert (rebuilt / run / "summary.md").read_text() == (repo / "results/bench-gpu" / run / "summary.md").read_text()


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_the_gpu_benchmarks_compile_section_gives_each_cold_way_a_fresh_cache_and_its_warm_way_that_one(
        device, monkeypatch):
    """bench.gpu's compile section without compiling (tests/test_compiled.py compiles, cold then warm, on CPU): each
    way is a fresh process; a cold way gets an empty Inductor cache of its own, its warm way the one it filled, eager
    none; each repeat starts cold again; the summary divides by eager (a fused pack's ways by the fused pack's)."""
    from bench import gpu

    calls = []

    def child(argv, flag, name, env=None):
        calls.append((flag, name, (env or {}).get("TORCHINDUCTOR_CACHE_DIR")))
        mode, students, cache = gpu.COMPILE_WAYS[name]
        return {"way": name, "compile": mode, "members": 1 if students == 1 else 16, "warmup_s": 1.0,
                "epoch2_examples_per_s": 100.0 if mode is None else 150.0, "fxgraph_cache_hits": int(cache == "warm"),
                "fxgraph_cache_misses": int(cache == "cold")}

    monkeypatch.setattr(gpu, "child_result", child)
    monkeypatch.setattr(gpu, "load", lambda *args, **kwargs: (None, None))
    monkeypatch.setattr(gpu, "cached_logits", lambda *args, **kwargs: None)
    args = gpu.parse_args(["--device", device, "--repeats", "2"])
    assert ("compile" in args.sections) == (device == "cuda")  # on CPU only when asked for
    frame = gpu.compile_section(args, ["--device", device])
    ways = list(gpu.COMPILE_WAYS) if device == "cuda" else list(gpu.CPU_COMPILE_WAYS)
    assert [name for _, name, _ in calls] == ways * 2 and {flag for flag, _, _ in calls} == {"--compile-child"}
    for repeat in range(2):
        caches = {name: cache for _, name, cache in calls[repeat * len(ways):(repeat + 1) * len(ways)]}
        for name in ways:
            mode, students, cache = gpu.COMPILE_WAYS[name]
            if cache is None:
                assert caches[name] is None
            elif cache == "warm":
                assert caches[name] == caches[name.replace("warm", "cold")]
    colds = [cache for _, name, cache in calls if "cold" in name]
    assert len(set(colds)) == len(colds)  # a fresh one every time
    summary = gpu.compile_summary(frame).set_index("way")
    assert list(summary.index) == ways and (summary["repeats"] == 2).all()
    assert summary.loc["compiled, warm cache", "x_eager_median"] == pytest.approx(1.5)
    assert summary.loc["eager", "x_eager_median"] == pytest.approx(1.0)


def test_the_lm_cache_bench_runs_as_its_docstring_shows(toy_glue, tmp_path):
    """bench/lm_cache.py at toy size on a tiny random llama (results/bench-lm/ holds the SmolLM2 numbers)."""
    import shlex

    from bench import lm_cache
    from tests.conftest import save_tiny_llama

    teacher = save_tiny_llama(tmp_path / "llama")
    shown = next(line for line in lm_cache.__doc__.splitlines() if "# toy size" in line).split("#")[0]
    args = shlex.split(shown.replace("DIR", str(teacher)).replace("OUT", str(tmp_path / "out")))
    assert args[:3] == ["python", "-m", "bench.lm_cache"]
    done = subprocess.run([sys.executable, *args[1:], "--glue-dir", str(toy_glue)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "MAKD_HOME": str(tmp_path / "home")})
    assert done.returncode == 0, done.stderr[-2000:]
    frame = pd.read_csv(tmp_path / "out" / "lm_cache.csv")
    assert list(frame["k"]) == [1, 4] and (frame["taylor_rel_error"] < 1e-5).all()
    assert (frame["bytes_per_token"] == [1 * 6 + 8, 4 * 6 + 8]).all() and (frame["tokens"] > 0).all()
    assert "## Top-k teacher cache vs full logits" in done.stdout


def test_a_cpu_run_of_the_gpu_benchmark_never_defaults_to_the_committed_gpu_results():
    from bench.gpu import default_out

    assert default_out("cuda") == Path("results/bench-gpu")
    toy = default_out("cpu")
    assert toy.is_dir() and "results" not in toy.parts and not any(toy.iterdir())
    toy.rmdir()


def test_the_gpu_benchmarks_packing_sweep_is_one_fused_pack_and_is_compared_in_trials_per_hour(tmp_path):
    """bench.gpu's packing sweeps: N trials of one seed (ce + vanilla at N-1 lambdas) that one fused pack holds,
    and the issue's target (a pack of 16 >= 6x the trials/hour of one trial per GPU) as rates, not walls: the
    pack's sweep has 16 trials, the baseline's 8."""
    from bench import common
    from bench.gpu import packing_configs, targets
    from makd_sweep.config import parse_config
    from makd_sweep.search.grid import GridSearch

    for n in (2, 8, 16):
        cfg = parse_config(common.sweep_config("p", tmp_path, **packing_configs(n), pack={"size": n, "mode": "fused"}))
        points = GridSearch().points(cfg)
        assert len(points) == n and len({(p["seed"], p["lr"]) for p in points}) == 1
        assert len(GridSearch().trial_points(cfg)) == 1  # one Ray trial
    packing = pd.DataFrame([
        {"way": "1 per GPU", "trials_per_gpu": 1, "finished": 8, "sweep_wall_s": 100.0, "trials_span_s": 80.0,
         "trials_per_hour": 288.0},
        {"way": "fused pack of 16", "trials_per_gpu": 16, "finished": 16, "sweep_wall_s": 30.0, "trials_span_s": 20.0,
         "trials_per_hour": 1920.0}])
    measured = targets({"packing": packing}).set_index("target")["measured"]
    assert measured["a pack of 16 >= 6x the trials/hour of 1 trial per GPU (over the whole sweep wall)"] == \
        pytest.approx((16 / 30) / (8 / 100))
    assert measured["a pack of 16 >= 6x the trials/hour of 1 trial per GPU (while trials run)"] == pytest.approx(8.0)


@pytest.mark.sweep
def test_the_packed_grid_bench_runs_as_its_docstring_shows(tiny_bert_dir, tmp_path):
    """bench/pack_grid.py at toy size: a tiny ASHA search + final stage, unpacked and with pack: {size: auto}, each
    its own `makd sweep` process; the final stage packs and every shared trial's result is the same."""
    import shlex

    from bench import pack_grid
    from tests.test_sweep import FIXTURE_GLUE, write_config

    config = write_config(tmp_path, tiny_bert_dir, losses=["ce", "vanilla"], lams=[0.0], seeds=[0], epochs=2,
                          scheduler={"kind": "asha", "grace_period": 1, "reduction_factor": 2},
                          final={"seeds": [0, 1], "top_k": 1})
    shown = next(line for line in pack_grid.__doc__.splitlines() if "# toy size" in line).split("#")[0]
    args = shlex.split(shown.replace("CONFIG", str(config)).replace("DIR", str(FIXTURE_GLUE))
                       .replace("OUT", str(tmp_path / "out")))
    assert args[:3] == ["python", "-m", "bench.pack_grid"]
    done = subprocess.run([sys.executable, *args[1:]], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "MAKD_HOME": str(tmp_path / "home")})
    assert done.returncode == 0, done.stderr[-3000:]
    frame = pd.read_csv(tmp_path / "out" / "pack_grid.csv").set_index(["way", "stage"])
    assert (frame["finished"] == frame["trials"]).all()
    final = frame.xs("final", level="stage")
    # 2 methods x 2 seeds = 4 final trials; 2 slots: unpacked 4 Ray trials, auto-packed 2 packs of 2
    assert final.loc["packs off", "ray_trials"] == 4 and final.loc["pack: {size: auto}", "ray_trials"] == 2
    assert (final["trials"] == 4).all() and (frame["seconds"] > 0).all()
    assert "Benchmark 7" in done.stdout and "speed-up (unpacked s / packed s)" in done.stdout
    same = pd.read_csv(tmp_path / "out" / "pack_grid_results.csv").iloc[0]
    assert same["final_in_both"] == 4 and same["final_equal"] == 4  # sequential packs: every member as alone
