"""`resources_per_trial: {gpu: auto}` and the GPU memory pieces that can be checked without a GPU: the trials-per-GPU rule,
the sizing decision from measured steps, config parsing, and a sweep on a cluster without (usable) GPUs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from makd.errors import UsageError
from makd.gpu import StepMemory, trials_that_fit
from makd_sweep.config import parse_config
from makd_sweep.gpu_sizing import size_gpu_fraction


def sweep_raw(**overrides) -> dict:
    base = {"name": "x", "tasks": ["rte"], "teacher": "t", "students": ["2x128"],
            "resources_per_trial": {"cpu": 2, "gpu": "auto"}}
    return {**base, **overrides}


def node(cpus: float, gpus: float) -> dict:
    return {"Alive": True, "Resources": {"CPU": cpus, "GPU": gpus}}


def step(student: str, peak: float, context: float = 500.0, total: float = 81_000.0) -> StepMemory:
    return StepMemory(student=student, peak_mb=peak, context_mb=context, total_mb=total, device_name="Fake GPU",
                      batch="32 x 128 tokens")


def test_trials_that_fit_is_the_largest_power_of_two_that_fits_with_the_margin():
    assert trials_that_fit(10_000, 80_000, margin=0.2) == 4  # 4 x 12,000 fits 80,000; 8 x 12,000 does not
    assert trials_that_fit(8_000, 80_000, margin=0.2) == 8  # 8 x 9,600 = 76,800
    assert trials_that_fit(8_400, 80_000, margin=0.2) == 4  # 8 x 10,080 = 80,640 > 80,000
    assert trials_that_fit(100, 80_000, margin=0.2) == 64  # capped
    assert trials_that_fit(70_000, 80_000, margin=0.2) == 0  # not even one trial with its margin


def test_gpu_auto_parses_and_starts_at_zero():
    cfg = parse_config(sweep_raw())
    assert cfg.gpu_auto and cfg.gpu == 0.0
    assert not parse_config(sweep_raw(resources_per_trial={"gpu": 0.5})).gpu_auto


def test_sizing_takes_the_widest_student_and_the_gpu_nodes_cpus():
    cfg = parse_config(sweep_raw(students=["2x128", "6x384"]))
    measured = [step("2x128", 1_000), step("6x384", 7_000)]
    sizing = size_gpu_fraction(cfg, ["probe-a", "probe-b"], [node(64, 1)], measure=lambda probes: measured)
    # 6x384 needs 7,500 MiB with its context: 8 x 9,000 = 72,000 fits 81,000, 16 x 9,000 does not
    assert sizing.trials_per_gpu == 8 and sizing.gpu == 0.125 and sizing.widest.student == "6x384"
    assert not sizing.cpu_bound
    text = sizing.describe()
    assert "0.125 GPU per trial (8 per GPU)" in text and "6x384" in text and "7,000 MiB" in text
    # the same GPU on a node with 8 CPUs holds only 4 trials of 2 CPUs
    small = size_gpu_fraction(cfg, [], [node(8, 1), node(96, 0)], measure=lambda probes: measured)
    assert small.trials_per_gpu == 4 and small.cpu_bound and "CPUs" in small.describe()
    assert json.loads(json.dumps(small.as_dict()))["trials_per_gpu"] == 4


def test_sizing_refuses_a_step_larger_than_the_gpu_in_one_line():
    cfg = parse_config(sweep_raw())
    with pytest.raises(UsageError) as err:
        size_gpu_fraction(cfg, [], [node(16, 1)], measure=lambda probes: [step("2x128", 79_000)])
    assert err.value.field == "resources_per_trial.gpu" and "micro_batch_size" in err.value.problem
    assert "\n" not in str(err.value)


def test_no_gpu_in_the_cluster_means_cpu_trials():
    def never(probes):
        raise AssertionError("nothing to measure without a GPU")

    sizing = size_gpu_fraction(parse_config(sweep_raw()), [], [node(2, 0)], measure=never)
    assert sizing.gpu == 0.0 and "no GPU" in sizing.describe()


@pytest.mark.sweep
def test_gpu_auto_sweeps_on_cpus_without_a_gpu_and_refuses_a_gpu_torch_cannot_see(tiny_bert_dir, tmp_path,
                                                                                    monkeypatch, capsys):
    """A laptop config with gpu: auto runs on CPUs; a cluster that lists a GPU torch cannot use is refused in one
    line (here: Ray told of one fake GPU) before any trial starts."""
    import yaml

    from makd_sweep.main import main

    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    fixture_glue = Path(__file__).resolve().parent / "fixtures" / "glue"
    raw = sweep_raw(teacher=str(tiny_bert_dir), students=["1x64"], student_tokenizer=str(tiny_bert_dir),
                    losses=["ce"], epochs=1, batch_size=8, max_length=32, data={"glue_dir": str(fixture_glue)},
                    resources_per_trial={"cpu": 1, "gpu": "auto"}, storage=str(tmp_path / "runs"))
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump(raw))
    assert main(["sweep", str(config), "--num-cpus", "2"]) == 0
    captured = capsys.readouterr()
    assert "gpu: auto -> 0: no GPU in the Ray cluster" in captured.err
    summary = json.loads((tmp_path / "runs" / "x" / "sweep.json").read_text())
    assert summary["gpu_sizing"]["gpu"] == 0.0 and summary["config"]["gpu_auto"] is True
    trials = json.loads((tmp_path / "runs" / "x" / "trials.jsonl").read_text().splitlines()[0])
    assert trials["device"] == "cpu" and trials["peak_gpu_mb"] is None

    config.write_text(yaml.safe_dump({**raw, "name": "y"}))
    assert main(["sweep", str(config), "--num-cpus", "2", "--num-gpus", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("makd: error: resources_per_trial.gpu: auto: the Ray cluster lists a GPU")


def test_a_warm_teacher_cache_sends_no_teacher_pass_to_a_gpu_node(tiny_bert_dir, tmp_path, monkeypatch):
    """On a cache hit the driver reads the logits itself: no Ray task (a GPU worker that imports torch and starts
    CUDA only to read a file cost ~8 s per task and sweep)."""
    import ray

    from makd_sweep.task_prep import prepare_task

    fixture_glue = Path(__file__).resolve().parent / "fixtures" / "glue"
    cfg = parse_config(sweep_raw(teacher=str(tiny_bert_dir), students=["1x64"], student_tokenizer=str(tiny_bert_dir),
                                 losses=["vanilla"], lams=[0.5], max_length=32, data={"glue_dir": str(fixture_glue)},
                                 resources_per_trial={"cpu": 1, "gpu": 0.5}))
    cache = str(tmp_path / "cache")
    data, report = prepare_task(cfg, "rte", cache, progress=False)  # cold, no GPU: computed on the driver's CPU
    assert report.status == "miss" and data.teacher_logits is not None

    def no_ray(*args, **kwargs):
        raise AssertionError("a cache hit must not start a Ray task")

    monkeypatch.setattr(ray, "remote", no_ray)
    again, report = prepare_task(cfg, "rte", cache, progress=False, teacher_on_gpu=True)
    assert report.status == "hit"
    assert (again.teacher_logits == data.teacher_logits).all()
    assert set(again.encoded) == {str(tiny_bert_dir)}  # tokenised once for the student's tokenizer


def test_a_fused_pack_is_sized_as_its_members_and_a_pack_too_large_for_the_gpu_names_one_that_fits():
    """pack: {mode: fused, size: K} holds K stacked students in one trial: K step peaks and one CUDA context."""
    measured = [step("6x384", 7_000)]
    cfg = parse_config(sweep_raw(pack={"size": 8, "mode": "fused"}))
    sizing = size_gpu_fraction(cfg, [], [node(64, 1)], measure=lambda probes: measured)
    # 8 x 7,000 + 500 = 56,500 MiB, x 1.2 = 67,800: one pack per GPU (two would need 135,600)
    assert sizing.members == 8 and sizing.need_mb == 56_500 and sizing.trials_per_gpu == 1 and sizing.gpu == 1.0
    assert "x 8 members of a fused pack" in sizing.describe() and sizing.as_dict()["members_per_trial"] == 8
    sequential = size_gpu_fraction(parse_config(sweep_raw(pack={"size": 8})), [], [node(64, 1)],
                                   measure=lambda probes: measured)
    assert sequential.members == 1 and sequential.trials_per_gpu == 8  # one student at a time per trial
    with pytest.raises(UsageError) as err:
        size_gpu_fraction(parse_config(sweep_raw(pack={"size": 16, "mode": "fused"})), [], [node(64, 1)],
                          measure=lambda probes: measured)
    # (81,000 / 1.2 - 500) // 7,000 = 9 members
    assert err.value.field == "pack.size" and "a pack of 9 fits" in err.value.problem and "\n" not in str(err.value)


def test_an_auto_fused_pack_is_capped_at_what_fits_even_one_member_and_other_packs_are_not_capped():
    """pack: {size: auto}: a fused pack takes at most the members measured to fit a GPU, even when that is one
    (a cap of 1, not "no cap"); sequential packs and CPU-only clusters have no GPU memory to fit (0: no cap)."""
    auto_fused = parse_config(sweep_raw(pack={"size": "auto", "mode": "fused"}))
    roomy = size_gpu_fraction(auto_fused, [], [node(64, 1)], measure=lambda probes: [step("6x384", 7_000)])
    assert roomy.members_cap("fused") == 9  # (81,000 / 1.2 - 500) // 7,000
    tight = size_gpu_fraction(auto_fused, [], [node(64, 1)], measure=lambda probes: [step("6x384", 40_000)])
    assert tight.members == 1 and tight.members_cap("fused") == 1
    sequential = size_gpu_fraction(parse_config(sweep_raw(pack={"size": "auto"})), [], [node(64, 1)],
                                   measure=lambda probes: [step("6x384", 7_000)])
    assert sequential.members_cap("sequential") == 0
    no_gpu = size_gpu_fraction(auto_fused, [], [node(64, 0)], measure=lambda probes: [])
    assert no_gpu.members_cap("fused") == 0
