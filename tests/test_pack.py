"""Packs (makd_sweep/pack.py): trial configs of one student trained by one Ray trial, one after another; each member is
still one row of trials.csv, with the result it would have had alone, and a killed pack retrains no finished member."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter

import pandas as pd
import pytest

from makd.errors import UsageError
from makd_sweep import experiment_dir as layout
from makd_sweep import pack
from makd_sweep.config import load_config
from makd_sweep.driver import run_sweep
from makd_sweep.export import export_winner
from makd_sweep.report.build import build
from makd_sweep.report.trials import read_trial_folders
from makd_sweep.search import get_search_kind
from makd_sweep.search.final import FinalStage
from tests.helpers import stderr_ends
from tests.test_sweep import events, quiet_ray, write_config  # noqa: F401 (quiet_ray: autouse)

SAME_RUN = ["student", "loss", "lam", "tau", "seed"]
RESULT = ["best_score", "dev_score", "best_epoch", "weights_fingerprint", "predictions_fingerprint"]


@pytest.mark.parametrize("raw, field", [({"size": 0}, "pack.size"), ({"size": 2.5}, "pack.size"),
                                        ({"size": 2, "mode": "vmap"}, "pack.mode"), ({"size": 2, "k": 1}, "pack.k"), ({"mode": "fused"}, "pack.size"),
                                        ({"size": "many"}, "pack.size"), ({"size": "auto", "mode": "x"}, "pack.mode"),
                                        (4, "pack")])
def test_a_bad_pack_section_names_its_field(raw, field):
    with pytest.raises(UsageError) as err:
        pack.parse_pack(raw)
    assert err.value.field == field


def test_packs_never_mix_students_or_stages_and_keep_the_order():
    points = [{"student": s, "loss": loss, "seed": seed, "stage": "final"}
              for s in ("2x128", "zoo:minilm-l6@0,5") for loss in ("ce", "vanilla", "taylor") for seed in (0, 1)]
    packs = pack.pack_points(points + [{"student": "2x128", "loss": "ce", "seed": 9}], pack.PackConfig(size=4))
    assert [len(layout.members(p)) for p in packs] == [4, 2, 4, 2, 1]
    for p in packs:
        assert {m["student"] for m in layout.members(p)} == {p["student"]}
        assert {m.get("stage") for m in layout.members(p)} == {p.get("stage")}
    assert [m for p in packs for m in layout.members(p)] == [p for p in points if p["student"] == "2x128"] + \
        [p for p in points if p["student"] != "2x128"] + [{"student": "2x128", "loss": "ce", "seed": 9}]


def test_a_packs_history_splits_into_its_members_once_each():
    params = pack.pack_points([{"student": "s", "loss": "ce", "seed": 0}, {"student": "s", "loss": "vanilla", "seed": 0},
                               {"student": "s", "loss": "taylor", "seed": 0}], pack.PackConfig(size=3))[0]
    history = [{"member": 0, "epoch": 1, "score": 0.5}, {"member": 0, "epoch": 2, "score": 0.6},
               {"member": 0, "epoch": 2, "score": 0.6, "resumed_from_epoch": 2},  # re-reported after a restore
               {"member": 1, "member_error": "RuntimeError: boom", "score": float("nan")},
               {"member": 2, "epoch": 1, "score": 0.7}]
    trials = layout.unpack(params, history, "abcde_00001")
    assert [t.trial_id for t in trials] == ["abcde_00001/0", "abcde_00001/1", "abcde_00001/2"]
    assert [[h["epoch"] for h in t.history] for t in trials] == [[1, 2], [], [1]]
    assert [t.error for t in trials] == [None, "RuntimeError: boom", None]
    assert [t.params["loss"] for t in trials] == ["ce", "vanilla", "taylor"]
    assert layout.split_trial_id("abcde_00001/2") == ("abcde_00001", 2)
    assert layout.split_trial_id("abcde_00001") == ("abcde_00001", None)
    single = layout.unpack({"loss": "ce"}, history[:1], "x")
    assert len(single) == 1 and not single[0].packed and single[0].history == history[:1]


def test_fused_packs_hold_one_seed_and_lr_each():
    points = [{"student": "s", "loss": loss, "seed": seed, "lr": lr} for lr in (1e-3, 2e-3) for seed in (0, 1)
              for loss in ("ce", "vanilla", "taylor")]
    packs = pack.pack_points(points, pack.PackConfig(size=2, mode="fused"))
    assert [len(layout.members(p)) for p in packs] == [2, 1] * 4 and all(p["fused"] for p in packs)
    for p in packs:
        assert len({(m["seed"], m["lr"]) for m in layout.members(p)}) == 1


@pytest.mark.parametrize("configs, slots, cap, sizes", [
    (12, 2, 0, [6, 6]),  # 12 final trials, 2 at a time: 2 packs, no round added (packs of 4 would make 3 rounds)
    (9, 2, 0, [5, 4]), (3, 8, 0, [1, 1, 1]),  # fewer configs than slots: one each, every slot busy
    (40, 1, 16, [16, 16, 8]),  # fused on a measured GPU: at most the members that fit it
])
def test_size_auto_splits_a_group_into_as_many_packs_as_the_cluster_runs_trials_at_once(configs, slots, cap, sizes):
    auto = pack.parse_pack({"size": "auto"})
    assert auto.on and auto.auto and auto.mode == "sequential"
    points = [{"student": "s", "loss": "vanilla", "lam": i / configs, "seed": 0, "lr": 1e-3} for i in range(configs)]
    resolved = dataclasses.replace(auto, slots=slots, members_cap=cap)
    packs = pack.pack_points(points, resolved)
    assert [len(layout.members(p)) for p in packs] == sizes
    assert [m for p in packs for m in layout.members(p)] == points


def test_size_auto_counts_the_clusters_slots_once_and_resume_keeps_them(tmp_path):
    """The driver's count (every node's CPUs and GPUs over one trial's request, at most max_concurrent_trials) is
    stored beside the trials: a resumed sweep packs as it started, on whatever cluster it resumes."""
    from makd_sweep.cluster import trial_slots
    from makd_sweep.config import parse_config

    raw = {"name": "x", "tasks": ["rte"], "teacher": "t", "students": ["2x128"], "pack": {"size": "auto"}}

    def node(cpus, gpus=0.0):
        return {"Alive": True, "Resources": {"CPU": cpus, "GPU": gpus}}

    assert trial_slots(parse_config({**raw, "resources_per_trial": {"cpu": 1}}), [node(2)]) == 2
    assert trial_slots(parse_config({**raw, "resources_per_trial": {"cpu": 2, "gpu": 0.125}}),
                       [node(16, 1), node(64, 0)]) == 8  # the GPU node's CPUs: 8 trials of 2; the CPU node: none
    assert trial_slots(parse_config({**raw, "max_concurrent_trials": 3, "resources_per_trial": {"cpu": 1}}),
                       [node(8)]) == 3
    auto = pack.parse_pack({"size": "auto", "mode": "fused"})
    first = pack.resolve_auto(auto, str(tmp_path), 4, 16, resume=False)
    assert (first.slots, first.members_cap) == (4, 16) and "ceil(G / 4) members" in first.describe()
    resumed = pack.resolve_auto(auto, str(tmp_path), 1, 0, resume=True)  # another cluster now
    assert (resumed.slots, resumed.members_cap) == (4, 16)
    again = pack.resolve_auto(auto, str(tmp_path), 2, 0, resume=False)  # a new sweep counts again
    assert (again.slots, again.members_cap) == (2, 0)


def test_size_auto_with_gpu_auto_gives_a_fused_pack_a_whole_gpu_and_the_members_that_fit():
    from makd.gpu import StepMemory
    from makd_sweep.config import parse_config
    from makd_sweep.gpu_sizing import size_gpu_fraction

    raw = {"name": "x", "tasks": ["rte"], "teacher": "t", "students": ["6x384"],
           "resources_per_trial": {"cpu": 2, "gpu": "auto"}, "pack": {"size": "auto", "mode": "fused"}}
    step = StepMemory(student="6x384", peak_mb=7_000, context_mb=500, total_mb=81_000, device_name="Fake GPU",
                      batch="32 x 128 tokens")
    sizing = size_gpu_fraction(parse_config(raw), [], [{"Alive": True, "Resources": {"CPU": 16, "GPU": 1}}],
                               measure=lambda probes: [step])
    assert (sizing.gpu, sizing.trials_per_gpu, sizing.members) == (1.0, 1, 9)  # (81,000 / 1.2 - 500) // 7,000


def test_the_final_stage_and_a_grid_without_a_scheduler_pack_but_asha_does_not(tiny_bert_dir, tmp_path):
    def kinds(**overrides):
        cfg = load_config(write_config(tmp_path, tiny_bert_dir, pack={"size": 3}, seeds=[0, 1], **overrides))
        cells = [{"student": "1x64", "loss": "ce", "lam": 1.0, "tau": 1.0, "seed": s, "lr": 1e-3, "stage": "final"}
                 for s in range(5)]
        return get_search_kind("grid").trial_points(cfg), FinalStage(cells).trial_points(cfg)

    grid, final = kinds()
    assert [len(layout.members(p)) for p in grid] == [3, 3, 3, 1]  # ce x2, vanilla and taylor x lam x seed: 10
    assert [len(layout.members(p)) for p in final] == [3, 2] and {p["stage"] for p in final} == {"final"}
    grid, final = kinds(scheduler={"kind": "asha"})
    assert all(layout.members(p) is None for p in grid) and len(grid) == 10  # ASHA stops trials one by one
    assert [len(layout.members(p)) for p in final] == [3, 2]


@pytest.mark.sweep
def test_a_packed_sweep_gives_every_member_its_unpacked_result_and_a_killed_pack_retrains_no_member(module_ray,
        tiny_bert_dir, tmp_path, monkeypatch):
    """The same grid twice: one trial per config, then packs of 4 with every pack failing once after its first
    member's last epoch. Each member's scores, epochs and weight fingerprints equal its unpacked run's; taylor (tau
    1) is still ce's student inside a pack; the retried pack skips its finished member."""
    (tmp_path / "alone").mkdir()
    (tmp_path / "packed").mkdir()
    overrides = {"losses": ["ce", "taylor", "vanilla"], "lams": [0.0], "seeds": [0, 1], "epochs": 2}
    alone = run_sweep(load_config(write_config(tmp_path / "alone", tiny_bert_dir, **overrides)), quiet=True,
                      num_cpus=2, cache_dir=str(tmp_path / "cache"))
    monkeypatch.setenv("MAKD_FAULT_ONCE", f"{tmp_path / 'faults'}:2")
    packed = run_sweep(load_config(write_config(tmp_path / "packed", tiny_bert_dir, pack={"size": 4},
                                                **overrides)), quiet=True, num_cpus=2,
                       cache_dir=str(tmp_path / "cache"))
    trials = packed.trials
    assert len(trials) == 6 and set(trials["status"]) == {"TERMINATED"} and (trials["epochs_run"] == 2).all()
    assert Counter(trials["pack_size"]) == {4: 4, 2: 2} and trials["pack_id"].nunique() == 2
    assert all(t.startswith(p + "/") for t, p in zip(trials["trial_id"], trials["pack_id"], strict=True))
    mine, theirs = trials.set_index(SAME_RUN)[RESULT].sort_index(), alone.trials.set_index(SAME_RUN)[RESULT].sort_index()
    pd.testing.assert_frame_equal(mine, theirs)
    by_loss = trials.set_index(["seed", "loss"])["weights_fingerprint"]
    assert all(by_loss[(seed, "taylor")] == by_loss[(seed, "ce")] for seed in (0, 1))

    log = events(packed.root)
    trained = Counter((e["trial_id"], e["epoch"]) for e in log if e["event"] == "epoch")
    assert set(trained.values()) == {1} and len(trained) == 6 * 2  # no member epoch trained twice
    restored = {e["trial_id"] for e in log if e["event"] == "already-done"}
    assert restored == {f"{p}/0" for p in trials["pack_id"].unique()}  # each pack failed after its first member

    on_disk = pd.read_csv(f"{packed.root}/trials.csv")
    assert json.dumps(sorted(on_disk["trial_id"])) == json.dumps(sorted(trials["trial_id"]))
    report = build([packed.root])
    assert report.leaderboard.set_index("loss").loc["taylor", "identical_to_ce"]
    folders = read_trial_folders(packed.root)  # what a running sweep's live report and `makd report DIR` read
    assert sorted(folders["trial_id"]) == sorted(trials["trial_id"]) and set(folders["status"]) == {"TERMINATED"}
    pd.testing.assert_frame_equal(folders.set_index(SAME_RUN)[RESULT].sort_index(), theirs)
    target, score = export_winner(packed.root, "rte", "1x64", "vanilla", out=tmp_path / "export")
    best = trials[trials["loss"] == "vanilla"].sort_values("best_score", ascending=False).iloc[0]
    assert (target / "config.json").is_file() and score == pytest.approx(best["dev_score"])

    # fused packs (makd/fused.py): one per seed, failing once after the first member's first epoch: resumed at
    # epoch 2 from the pack's state, every member's epoch 1 reported again, no epoch trained twice
    (tmp_path / "fused").mkdir()
    monkeypatch.setenv("MAKD_FAULT_ONCE", f"{tmp_path / 'faults-fused'}:1")
    fused = run_sweep(load_config(write_config(tmp_path / "fused", tiny_bert_dir, pack={"size": 4, "mode": "fused"},
                                               **overrides)), quiet=True, num_cpus=2, cache_dir=str(tmp_path / "cache"))
    trials = fused.trials
    assert len(trials) == 6 and set(trials["status"]) == {"TERMINATED"} and (trials["pack_size"] == 3).all()
    assert trials.groupby("pack_id")["seed"].nunique().eq(1).all()  # one seed per fused pack
    same = [c for c in RESULT if c != "weights_fingerprint"]  # weights equal to 1e-4, not bit for bit
    pd.testing.assert_frame_equal(trials.set_index(SAME_RUN)[same].sort_index(), theirs[same])
    by_loss = trials.set_index(["seed", "loss"])["weights_fingerprint"]
    assert all(by_loss[(seed, "taylor")] == by_loss[(seed, "ce")] for seed in (0, 1))
    log = events(fused.root)
    trained = Counter((e["trial_id"], e["epoch"]) for e in log if e["event"] == "epoch")
    assert set(trained.values()) == {1}  # a restarted pack would train (and log) member 0's epoch 1 twice
    again = {(e["trial_id"], e["epoch"]) for e in log if e["event"] == "reported-again"}
    assert again == {(t, 1) for t in trials["trial_id"]}  # each pack failed after its first member's epoch 1
    assert set(trained) | again == {(t, e) for t in trials["trial_id"] for e in (1, 2)}
    target, score = export_winner(fused.root, "rte", "1x64", "taylor", out=tmp_path / "export-fused")
    assert (target / "config.json").is_file()


@pytest.mark.sweep
def test_a_killed_driver_resumes_a_packed_sweep_without_retraining_a_finished_member(tiny_bert_dir, tmp_path):
    """With pack: {size: auto} and one trial at a time, the whole grid is one pack of 6; the resumed driver packs
    it the same way (the slots stored when the sweep started), so the restored Tuner's pack is the one it rebuilds.
    Members wait after epoch 2 for the test's release (one per release), and the driver is killed once a member is
    done, the next one waits and Tune's saved state names a checkpoint of the pack, whatever the machine's speed: a
    state that named none yet would have Tune start the pack afresh, retraining the finished member (the CI of
    a8cbd30 lost this test once so, when it killed the driver as soon as a member was done)."""
    import time

    from tests.test_sweep import checkpoints_named_by_state, kill_driver, resume_driver, start_driver

    config = write_config(tmp_path, tiny_bert_dir, losses=["ce", "taylor", "vanilla"], lams=[0.0], seeds=[0, 1],
                          epochs=2, pack={"size": "auto"}, max_concurrent_trials=1)
    root = tmp_path / "runs" / "exp"
    release = tmp_path / "release.once"
    driver, env = start_driver(config, tmp_path, hold=f"{release}:2")

    def done_ids() -> set[str]:
        return {e["trial_id"] for e in events(root) if e["event"] == "done"}

    def holding() -> set[str]:  # members that reported epoch 2 and have not finished
        return {e["trial_id"] for e in events(root) if e["event"] == "epoch" and e["epoch"] == 2} - done_ids()

    deadline = time.time() + 180
    while time.time() < deadline and not holding():
        time.sleep(0.1)
    release.touch()  # the first member goes on to its end; the next one waits at its epoch 2
    while time.time() < deadline and not (done_ids() and holding() and checkpoints_named_by_state(root / "rte")):
        time.sleep(0.1)
    kill_driver(driver)
    finished = {e["trial_id"] for e in events(root) if e["event"] == "done"}
    assert finished, "the driver must be killed once a member has finished"
    time.sleep(2)
    resumed = resume_driver(config, env)
    assert resumed.returncode == 0, stderr_ends(resumed)
    frame = pd.read_csv(root / "trials.csv")
    assert len(frame) == 6 and set(frame["status"]) == {"TERMINATED"} and (frame["epochs_run"] == 2).all()
    assert (frame["pack_size"] == 6).all() and frame["pack_id"].nunique() == 1
    assert json.loads((root / pack.PACK_FILE).read_text()) == {"slots": 1, "members_cap": 0}
    trained = Counter((e["trial_id"], e["epoch"]) for e in events(root) if e["event"] == "epoch")
    retrained = {(member, epoch): trained[(member, epoch)] for member in finished for epoch in (1, 2)
                 if trained[(member, epoch)] != 1}
    assert not retrained, (retrained, [e for e in events(root) if e["trial_id"] in {m for m, _ in retrained}])
    assert set(frame["trial_id"]) == {t for t, _ in trained}


def test_a_remote_export_fetches_only_the_members_own_best_weights():
    from makd_sweep.experiment_dir import is_best_weights

    single, member = "ab12c_00003", "ab12c_00003/2"
    folder = "rte-final/distill_trial_ab12c_00003_3_lam=0.5/checkpoint_000002"
    final = ("rte", "final")
    assert is_best_weights(f"{folder}/best_model.pt", *final, single)
    assert is_best_weights(f"rte-final-r3/{folder.partition('/')[2]}/best_model.pt", *final, single)  # a later round
    assert not is_best_weights(f"{folder}/member-2/best_model.pt", *final, single)
    assert is_best_weights(f"{folder}/member-2/best_model.pt", *final, member)
    assert not is_best_weights(f"{folder}/member-1/best_model.pt", *final, member)
    assert not is_best_weights(f"{folder}/member-2/checkpoint.pt", *final, member)
    assert not is_best_weights(f"{folder}/best_model.pt", "rte", "search", single)  # another stage
    assert not is_best_weights(f"{folder}/best_model.pt", "rte-final", "search", single)
    assert not is_best_weights("sweep.json", *final, single) and not is_best_weights("rte-final/x", *final, single)


@pytest.mark.parametrize("written", [{"size": "auto"}, {"size": 4, "mode": "fused"}])
def test_the_reports_sweep_yaml_reruns_a_packed_sweep_as_written(written, tmp_path):
    """sweep.json keeps the resolved pack (slots, member cap); the YAML the report shows must parse back to the
    pack the user wrote (auto stays auto, resolved again on the next cluster)."""
    import yaml

    from makd_sweep.config import parse_config, sweep_yaml

    raw = {"name": "x", "tasks": ["rte"], "teacher": "t", "students": ["2x128"], "pack": written}
    resolved = parse_config(raw)
    if resolved.pack.auto:
        resolved = dataclasses.replace(resolved, pack=pack.resolve_auto(resolved.pack, str(tmp_path), 4, resume=False))
    again = parse_config(yaml.safe_load(sweep_yaml(json.loads(json.dumps(resolved.as_dict())))))
    assert again.pack == parse_config(raw).pack
