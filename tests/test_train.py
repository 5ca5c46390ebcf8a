"""The training loop on tiny models: learning, callbacks, checkpoint/resume, and the Taylor = CE fact end to end."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from makd.checkpoints import CHECKPOINT_NAME
from makd.errors import UsageError
from makd.train import TrainConfig, make_optimizer, train, train_step
from tests.helpers import sentiment, similarity


def config(student, **kw) -> TrainConfig:
    base = dict(task="sst2", student=str(student), teacher="unused-teacher-id", loss="taylor", lam=0.5, epochs=2,
                batch_size=8, lr=2e-3, max_length=32, seed=0)
    base.update(kw)
    return TrainConfig(**base)


def teacher_for(ds, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 2, size=(len(ds), 2)).astype(np.float32)


def final_weights(student_dir, ds, dev, logits, **kw) -> dict[str, torch.Tensor]:
    captured = {}

    def grab(result, ckpt_dir):
        state = torch.load(ckpt_dir / CHECKPOINT_NAME, weights_only=False)
        captured.update(state["model"])

    import tempfile

    with tempfile.TemporaryDirectory() as d:
        train(config(student_dir, **kw), ds, {"": dev}, logits, checkpoint_dir=d, on_epoch_end=grab, progress=False)
    return captured


def test_training_learns_a_separable_toy_task(tiny_bert_dir):
    ds, dev = sentiment(96), sentiment(48, "validation", seed=1)
    result = train(config(tiny_bert_dir, loss="ce", lam=1.0, epochs=6), ds, {"": dev}, None, progress=False)
    assert [h.epoch for h in result.history] == [1, 2, 3, 4, 5, 6]
    assert result.last.metrics["accuracy"] >= 0.9
    assert result.history[-1].train_loss < result.history[0].train_loss
    assert result.last.train_examples_per_s > 0


def test_callback_gets_every_epoch_after_its_checkpoint(tiny_bert_dir, tmp_path):
    ds, dev = sentiment(32), sentiment(16, "validation", seed=1)
    seen = []

    def on_epoch_end(result, ckpt_dir):
        state = torch.load(ckpt_dir / CHECKPOINT_NAME, weights_only=False)
        seen.append((result.epoch, state["epoch"], sorted(result.metrics)))
        assert result.checkpoint_seconds > 0  # the time of the writes just made, reported with the epoch

    train(config(tiny_bert_dir, epochs=3), ds, {"": dev}, teacher_for(ds, 0), checkpoint_dir=tmp_path,
          on_epoch_end=on_epoch_end, progress=False)
    assert seen == [(1, 1, ["accuracy"]), (2, 2, ["accuracy"]), (3, 3, ["accuracy"])]


def test_killed_run_resumes_at_its_epoch_and_matches_an_uninterrupted_run(tiny_bert_dir, tmp_path):
    ds, dev = sentiment(40), sentiment(16, "validation", seed=1)
    logits = teacher_for(ds, 0)
    cfg = config(tiny_bert_dir, loss="vanilla", epochs=3)

    class Killed(Exception):
        pass

    def kill_after_two(result, ckpt_dir):
        if result.epoch == 2:
            raise Killed

    with pytest.raises(Killed):
        train(cfg, ds, {"": dev}, logits, checkpoint_dir=tmp_path, on_epoch_end=kill_after_two, progress=False)
    epochs_run = []
    resumed = train(cfg, ds, {"": dev}, logits, checkpoint_dir=tmp_path, progress=False,
                    on_epoch_end=lambda r, d: epochs_run.append(r.epoch))
    assert resumed.resumed_from_epoch == 2 and epochs_run == [3]
    assert [h.epoch for h in resumed.history] == [1, 2, 3]

    straight = train(cfg, ds, {"": dev}, logits, progress=False)
    assert resumed.last.score == straight.last.score
    assert resumed.last.train_loss == pytest.approx(straight.last.train_loss, rel=1e-5)
    # the fingerprints of every epoch survive the checkpoint and the resumed epoch trains the same weights
    assert [h.weights_fingerprint for h in resumed.history] == [h.weights_fingerprint for h in straight.history]
    assert [h.predictions_fingerprint for h in resumed.history] == [h.predictions_fingerprint for h in straight.history]
    assert len(set(h.weights_fingerprint for h in straight.history)) == 3  # every epoch moved the weights


def test_a_run_killed_mid_epoch_resumes_at_its_batch_and_trains_the_identical_student(tiny_bert_dir, tmp_path,
                                                                                       monkeypatch):
    import makd.train as loop
    from makd.checkpoints import IN_EPOCH_NAME

    ds, dev = sentiment(40), sentiment(16, "validation", seed=1)  # 5 batches an epoch
    logits = teacher_for(ds, 0)
    cfg = config(tiny_bert_dir, loss="vanilla", epochs=2)

    class Killed(Exception):
        pass

    steps = []
    real_step = loop.train_step

    def killed_at_step_8(*args, **kw):  # the third batch of epoch 2, after the in-epoch save of its second
        steps.append(1)
        if len(steps) == 8:
            raise Killed
        return real_step(*args, **kw)

    monkeypatch.setattr(loop, "train_step", killed_at_step_8)
    with pytest.raises(Killed):
        train(cfg, ds, {"": dev}, logits, checkpoint_dir=tmp_path, progress=False, in_epoch_checkpoint_seconds=0)
    saved = torch.load(tmp_path / IN_EPOCH_NAME, weights_only=False)["progress"]
    assert (saved["epoch"], saved["steps"], saved["seen"]) == (1, 2, 16)
    monkeypatch.setattr(loop, "train_step", real_step)

    resumed_steps = []
    monkeypatch.setattr(loop, "train_step", lambda *a, **k: resumed_steps.append(1) or real_step(*a, **k))
    resumed = train(cfg, ds, {"": dev}, logits, checkpoint_dir=tmp_path, progress=False, in_epoch_checkpoint_seconds=0)
    monkeypatch.setattr(loop, "train_step", real_step)
    assert resumed.resumed_from_epoch == 1 and len(resumed_steps) == 3  # only the batches not yet trained
    assert not (tmp_path / IN_EPOCH_NAME).exists()  # the finished epoch's checkpoint replaces it

    straight = train(cfg, ds, {"": dev}, logits, progress=False)
    assert [h.weights_fingerprint for h in resumed.history] == [h.weights_fingerprint for h in straight.history]
    assert resumed.last.train_loss == straight.last.train_loss  # the running loss survives the kill, bit for bit
    # the epoch's throughput counts its 40 examples over the time of both parts
    assert resumed.last.train_examples_per_s == pytest.approx(40 / resumed.last.train_seconds)


def test_a_checkpoint_of_another_run_is_refused(tiny_bert_dir, tmp_path):
    ds, dev = sentiment(16), sentiment(8, "validation", seed=1)
    train(config(tiny_bert_dir, epochs=1), ds, {"": dev}, teacher_for(ds, 0), checkpoint_dir=tmp_path,
          progress=False)
    with pytest.raises(UsageError, match="lam"):
        train(config(tiny_bert_dir, epochs=1, lam=0.2), ds, {"": dev}, teacher_for(ds, 0), checkpoint_dir=tmp_path,
              progress=False)


def test_a_run_goes_on_from_a_checkpoint_with_a_changed_setting_as_pbt_and_its_replay_do(tiny_bert_dir, tmp_path,
                                                                                          monkeypatch):
    """PBT's exploit (another trial's checkpoint, the donor's setting perturbed) and the final stage's replay of a
    schedule (makd_sweep/schedule.py) both go on from a checkpoint with lr, weight decay, λ or τ changed: the weights,
    optimizer moments, schedule position and RNG carry over, the new lr is scaled by the schedule from where it is."""
    import shutil

    from transformers import get_linear_schedule_with_warmup

    import makd.train as loop

    ds, dev = sentiment(32), sentiment(16, "validation", seed=1)  # 4 batches an epoch
    logits = teacher_for(ds, 0)
    first = config(tiny_bert_dir, loss="vanilla", tau=2.0, epochs=3, lr=2e-3, weight_decay=0.01)
    donor = tmp_path / "donor"
    stopped = train(first, ds, {"": dev}, logits, checkpoint_dir=donor, progress=False, stop_after_epoch=1)
    assert [h.epoch for h in stopped.history] == [1] and "optimizer" in torch.load(donor / CHECKPOINT_NAME,
                                                                                   weights_only=False)
    # a segment is only a pause: going on with the same setting trains the student of an unbroken run
    shutil.copytree(donor, tmp_path / "same")
    same = train(first, ds, {"": dev}, logits, checkpoint_dir=tmp_path / "same", progress=False)
    straight = train(first, ds, {"": dev}, logits, progress=False)
    assert [h.weights_fingerprint for h in same.history] == [h.weights_fingerprint for h in straight.history]

    explored = config(tiny_bert_dir, loss="vanilla", tau=2.4, epochs=3, lr=1e-3, weight_decay=0.05)
    with pytest.raises(UsageError, match="lr, tau, weight_decay"):  # unless told, another setting is another run
        train(explored, ds, {"": dev}, logits, checkpoint_dir=donor, progress=False)
    with pytest.raises(UsageError, match="batch_size"):  # the schedule the checkpoint is partway along
        train(explored, ds, {"": dev}, logits, checkpoint_dir=donor, progress=False, changed=frozenset({"batch_size"}))

    seen = []
    real_step = loop.train_step

    def step(model, encoded, idx, targets, teacher, cfg, optimizer, *args, **kw):
        seen.append(([g["lr"] for g in optimizer.param_groups], [g["weight_decay"] for g in optimizer.param_groups],
                     cfg.tau))
        return real_step(model, encoded, idx, targets, teacher, cfg, optimizer, *args, **kw)

    monkeypatch.setattr(loop, "train_step", step)
    went_on = train(explored, ds, {"": dev}, logits, checkpoint_dir=donor, progress=False,
                    changed=frozenset({"lr", "tau", "weight_decay"}))
    monkeypatch.setattr(loop, "train_step", real_step)
    assert went_on.resumed_from_epoch == 1 and [h.epoch for h in went_on.history] == [1, 2, 3]
    assert went_on.history[0].weights_fingerprint == stopped.history[0].weights_fingerprint  # the donor's past
    reference = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    schedule = get_linear_schedule_with_warmup(reference, int(0.1 * 12), 12)  # 3 epochs x 4 batches, 10% warm-up
    for _ in range(4):  # where the donor's schedule stood after its epoch
        reference.step()
        schedule.step()
    assert len(seen) == 8 and seen[0][0] == pytest.approx([reference.param_groups[0]["lr"]] * 2, rel=1e-9)
    assert seen[0][1] == [0.05, 0.0] and seen[0][2] == 2.4  # decay on the decay group only; τ read every step
    assert went_on.history[-1].weights_fingerprint != straight.history[-1].weights_fingerprint

    # the replay of that schedule (the final stage's) from scratch: the same two segments, the identical student
    replay = tmp_path / "replay"
    train(first, ds, {"": dev}, logits, checkpoint_dir=replay, progress=False, stop_after_epoch=1)
    replayed = train(explored, ds, {"": dev}, logits, checkpoint_dir=replay, progress=False,
                     changed=frozenset({"lr", "tau", "weight_decay"}))
    assert [h.weights_fingerprint for h in replayed.history] == [h.weights_fingerprint for h in went_on.history]


def max_diff(a: dict, b: dict) -> float:
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def test_taylor_at_tau_one_ignores_the_teacher_in_training(tiny_bert_dir):
    """Two very different teachers give the same student under taylor; under vanilla they do not."""
    ds, dev = sentiment(24), sentiment(8, "validation", seed=1)
    t1, t2 = teacher_for(ds, 1), teacher_for(ds, 2) * 3
    taylor_1 = final_weights(tiny_bert_dir, ds, dev, t1, loss="taylor", lam=0.3, epochs=1)
    taylor_2 = final_weights(tiny_bert_dir, ds, dev, t2, loss="taylor", lam=0.3, epochs=1)
    ce = final_weights(tiny_bert_dir, ds, dev, None, loss="ce", lam=0.3, epochs=1)
    vanilla_1 = final_weights(tiny_bert_dir, ds, dev, t1, loss="vanilla", lam=0.3, epochs=1)
    vanilla_2 = final_weights(tiny_bert_dir, ds, dev, t2, loss="vanilla", lam=0.3, epochs=1)
    assert max_diff(taylor_1, taylor_2) < 1e-5
    assert max_diff(taylor_1, ce) < 1e-5
    assert max_diff(vanilla_1, vanilla_2) > 1e-3


@pytest.mark.parametrize("lam", [0.0, 0.5])
def test_taylor_at_tau_one_trains_the_bit_identical_student_of_ce(tiny_bert_dir, lam):
    """Eq. 8 is computed as CE(y, f_tau) - H(p_tau): at tau = 1 its gradient is ce's, bit for bit, whatever the
    teacher, so a sweep's taylor and ce rows at the same seed are equal (lam 0 and 0.5 scale g by powers of 2)."""
    ds, dev = sentiment(24), sentiment(8, "validation", seed=1)
    taylor = final_weights(tiny_bert_dir, ds, dev, teacher_for(ds, 3) * 5, loss="taylor", lam=lam, epochs=2)
    ce = final_weights(tiny_bert_dir, ds, dev, None, loss="ce", lam=1.0, epochs=2)
    assert max_diff(taylor, ce) == 0.0


def by_seed_frame(results: list) -> pd.DataFrame:
    """What the leaderboard pairs: a trial's selected epoch per seed (here: seed i = results[i], its best epoch)."""
    best = [r.best for r in results]
    return pd.DataFrame({"dev_score": [b.dev_score for b in best],
                         "weights_fingerprint": [b.weights_fingerprint for b in best],
                         "predictions_fingerprint": [b.predictions_fingerprint for b in best]})


def test_fingerprints_tell_the_identical_student_from_a_tie(tiny_bert_dir, tmp_path):
    """taylor (tau 1) vs ce: the same weights, so `identical`; two constant predictors trained with different losses:
    the same dev predictions (one class everywhere) from different weights, so `same predictions`, never identical."""
    from makd_sweep.report.paired import paired_difference

    ds, dev = sentiment(24), sentiment(12, "validation", seed=1)
    runs = {loss: [train(config(tiny_bert_dir, loss=loss, lam=lam, seed=seed), ds, {"": dev}, teacher_for(ds, 3),
                         progress=False) for seed in (0, 1)] for loss, lam in (("ce", 1.0), ("taylor", 0.5))}
    assert all(h.weights_fingerprint and h.predictions_fingerprint for r in runs["ce"] for h in r.history)
    assert paired_difference(by_seed_frame(runs["taylor"]), by_seed_frame(runs["ce"])).agreement == "identical"

    ones = sentiment(24)
    ones.labels[:] = 1  # every training label "positive": a student that answers it for all of dev
    constant = {loss: [train(config(tiny_bert_dir, loss=loss, lam=0.0 if loss != "ce" else 1.0, lr=5e-3, seed=seed),
                             ones, {"": dev}, np.tile([[-4.0, 4.0]], (len(ones), 1)).astype(np.float32),
                             progress=False) for seed in (0, 1)] for loss in ("ce", "vanilla")}
    assert all(r.best.predicted_classes == 1 for rs in constant.values() for r in rs)
    d = paired_difference(by_seed_frame(constant["vanilla"]), by_seed_frame(constant["ce"]))
    assert d.agreement == "same predictions" and not d.identical


def test_the_weights_fingerprint_is_the_same_in_another_process(tiny_bert_dir, tmp_path):
    import subprocess
    import sys

    ds, dev = sentiment(16), sentiment(8, "validation", seed=1)
    result = train(config(tiny_bert_dir, loss="ce", lam=1.0, epochs=1), ds, {"": dev}, None, checkpoint_dir=tmp_path,
                   progress=False)
    code = ("import sys, torch; from makd.fingerprints import weights_fingerprint; "
            "print(weights_fingerprint(torch.load(sys.argv[1], weights_only=False)['model']))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / CHECKPOINT_NAME)], capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == result.last.weights_fingerprint


def test_stsb_reports_pearson_and_spearman_on_the_score_scale(tiny_bert_dir):
    ds, dev = similarity(48), similarity(24, "validation", seed=1)
    cfg = config(tiny_bert_dir, task="stsb", loss="taylor", epochs=6)
    logits = np.random.default_rng(0).normal(size=(len(ds), 2)).astype(np.float32)
    result = train(cfg, ds, {"": dev}, logits, progress=False)
    assert set(result.last.metrics) == {"pearson", "spearman"}
    assert result.metric == "pearson"
    assert result.last.metrics["pearson"] > 0.5


@pytest.mark.parametrize("field, kw", [("loss", dict(loss="kl")), ("lam", dict(lam=2.0)), ("tau", dict(tau=0)),
                                       ("epochs", dict(epochs=0)), ("task", dict(task="squad")),
                                       ("teacher", dict(teacher=None)),
                                       ("micro-batch-size", dict(micro_batch_size=9)),
                                       ("micro-batch-size", dict(micro_batch_size=0)),
                                       ("pad-to-multiple-of", dict(pad_to_multiple_of=0))])
def test_bad_config_names_the_field(tiny_bert_dir, field, kw):
    with pytest.raises(UsageError) as err:
        config(tiny_bert_dir, **kw).validate()
    assert err.value.field == field


def step_gradients(student_dir, ds, logits, pad_to_multiple_of=None, **kw) -> tuple[float, dict[str, torch.Tensor]]:
    """One train_step on the first 8 examples, dropout off (eval mode): its loss and the gradients it left."""
    from makd.batching import encode
    from makd.models import build_student

    cfg = config(student_dir, loss="vanilla", **kw)
    model, tok = build_student(cfg.student, 2, seed=0)
    model.eval()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    idx = np.arange(8)
    loss = train_step(model, encode(tok, ds, 32), idx, torch.tensor(np.array(ds.labels))[idx],
                      torch.tensor(logits[idx]), cfg, optimizer, torch.amp.GradScaler("cuda", enabled=False),
                      device=torch.device("cpu"), amp=None, pad_to_multiple_of=pad_to_multiple_of)
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_micro_batches_give_the_whole_batch_gradient(tiny_bert_dir):
    ds = sentiment(8)
    logits = teacher_for(ds, 0)
    loss, grads = step_gradients(tiny_bert_dir, ds, logits)
    for micro in (1, 3, 4):  # 3: unequal chunks (3, 3, 2) must be weighted by size
        micro_loss, micro_grads = step_gradients(tiny_bert_dir, ds, logits, micro_batch_size=micro)
        assert micro_loss == pytest.approx(loss, rel=1e-5)
        assert max_diff(micro_grads, grads) < 1e-5
    other_loss, _ = step_gradients(tiny_bert_dir, ds, teacher_for(ds, 1))
    assert other_loss != pytest.approx(loss, rel=1e-3)  # the comparison can tell batches apart


def test_micro_batched_training_runs_end_to_end(tiny_bert_dir):
    ds, dev = sentiment(32), sentiment(16, "validation", seed=1)
    result = train(config(tiny_bert_dir, epochs=1, micro_batch_size=3), ds, {"": dev}, teacher_for(ds, 0),
                   progress=False)
    assert np.isfinite(result.last.train_loss) and result.last.epoch == 1


def test_only_an_unfinished_run_checkpoints_the_optimizer(tiny_bert_dir, tmp_path):
    """The last epoch's checkpoint skips AdamW's moments (2x the model): nothing resumes from it."""
    ds, dev = sentiment(16), sentiment(8, "validation", seed=1)
    states = {}

    def keep(result, ckpt_dir):
        states[result.epoch] = (torch.load(ckpt_dir / CHECKPOINT_NAME, weights_only=False),
                                (ckpt_dir / CHECKPOINT_NAME).stat().st_size)

    cfg = config(tiny_bert_dir, epochs=2)
    first = train(cfg, ds, {"": dev}, teacher_for(ds, 0), checkpoint_dir=tmp_path, on_epoch_end=keep,
                  progress=False)
    assert {"optimizer", "scheduler", "scaler"} <= set(states[1][0])
    assert not {"optimizer", "scheduler", "scaler"} & set(states[2][0])
    assert states[2][1] < 0.6 * states[1][1]
    again = train(cfg, ds, {"": dev}, teacher_for(ds, 0), checkpoint_dir=tmp_path, progress=False)
    assert again.resumed_from_epoch == 2 and again.last.score == first.last.score


def test_adamw_is_fused_on_cpu(tiny_bert_dir):
    from makd.models import build_student

    model, _ = build_student(str(tiny_bert_dir), 2)
    assert make_optimizer(model, config(tiny_bert_dir)).defaults["fused"] is True


def test_warm_up_runs_every_shape_and_leaves_training_unchanged(tiny_bert_dir):
    """The warm-up (forward/backward of every batch width, no optimizer step, every RNG restored) must not change
    what is trained: forced on CPU, the student is bit-for-bit the one trained without it."""
    ds, dev = sentiment(40), sentiment(16, "validation", seed=1)
    logits = teacher_for(ds, 0)
    plain = final_weights(tiny_bert_dir, ds, dev, logits, loss="vanilla", warm_up=False)
    warmed = final_weights(tiny_bert_dir, ds, dev, logits, loss="vanilla", warm_up=True)
    assert max_diff(plain, warmed) == 0.0
    result = train(config(tiny_bert_dir, loss="vanilla", warm_up=True, pad_to_multiple_of=4), ds, {"": dev}, logits,
                   progress=False)
    assert result.history[0].warmup_seconds > 0 and result.history[1].warmup_seconds == 0
    assert result.history[0].peak_gpu_mb is None  # CPU: no GPU memory to report


def test_shape_batches_cover_every_width_once(tiny_bert_dir):
    from transformers import AutoTokenizer

    from makd.batching import bucket_lengths, encode, padded_length
    from makd.train import shape_batches

    enc = encode(AutoTokenizer.from_pretrained(str(tiny_bert_dir)), sentiment(60), 32)
    for multiple in (None, 4):
        batches = shape_batches(enc, 8, multiple)
        widths = [padded_length(int(enc.lengths[b].max()), multiple, 32) for b in batches]
        assert widths == bucket_lengths(enc, multiple) and all(1 <= len(b) <= 8 for b in batches)


def test_length_buckets_give_the_same_gradient_up_to_float_noise(tiny_bert_dir):
    """Padding is masked: rounding a batch's width up to a bucket changes only float rounding (with dropout on,
    the dropout draws also land differently, so runs are equivalent, not identical)."""
    ds = sentiment(8)
    logits = teacher_for(ds, 0)
    loss, grads = step_gradients(tiny_bert_dir, ds, logits)
    for multiple in (16, 32):
        bucket_loss, bucket_grads = step_gradients(tiny_bert_dir, ds, logits, pad_to_multiple_of=multiple)
        assert bucket_loss == pytest.approx(loss, rel=1e-5)
        assert max_diff(bucket_grads, grads) < 1e-5


def test_pre_tokenised_splits_give_the_identical_run(tiny_bert_dir):
    from makd.models import build_student
    from makd.train import encode_splits

    ds, dev = sentiment(32), sentiment(16, "validation", seed=1)
    cfg = config(tiny_bert_dir, loss="vanilla")
    _, tok = build_student(cfg.student, 2)
    own = train(cfg, ds, {"": dev}, teacher_for(ds, 0), progress=False)
    given = train(cfg, ds, {"": dev}, teacher_for(ds, 0), progress=False,
                  encoded=encode_splits(tok, cfg, ds, {"": dev}))
    assert [h.train_loss for h in own.history] == [h.train_loss for h in given.history]
    assert [h.metrics for h in own.history] == [h.metrics for h in given.history]
    with pytest.raises(ValueError, match="encoded splits"):
        train(cfg, ds, {"": dev}, teacher_for(ds, 0), progress=False,
              encoded=encode_splits(tok, cfg, sentiment(8), {"": dev}))


def test_a_train_holdout_chooses_the_epoch_and_dev_is_only_reported(tiny_bert_dir):
    from makd.epoch import HOLDOUT
    from makd.pipeline import split_holdout

    ds, dev = sentiment(60), sentiment(16, "validation", seed=1)
    rest, held = split_holdout(ds, 0.25, seed=0)
    assert (len(rest), len(held)) == (45, 15) and not set(rest.text_a) & set(held.text_a)
    again, held_again = split_holdout(ds, 0.25, seed=0)
    assert list(held_again.text_a) == list(held.text_a) and list(again.text_a) == list(rest.text_a)
    assert list(split_holdout(ds, 0.25, seed=1)[1].text_a) != list(held.text_a)
    result = train(config(tiny_bert_dir, loss="ce", lam=1.0, epochs=2), rest, {"": dev, HOLDOUT: held}, None,
                   progress=False)
    for epoch in result.history:
        assert epoch.score == epoch.metrics["holdout_accuracy"] and epoch.dev_score == epoch.metrics["accuracy"]
    assert result.best.score == max(e.metrics["holdout_accuracy"] for e in result.history)


def test_a_run_whose_loss_turns_nan_stops_with_one_line_and_keeps_its_last_finite_checkpoint(tiny_bert_dir,
                                                                                             monkeypatch, tmp_path):
    """The same line a fused pack gives a diverged member (makd/fused.py); the epoch's checkpoint is not written."""
    import makd.train as train_module

    ds, dev = sentiment(32), sentiment(16, "validation", seed=1)
    real_step, steps = train_module.train_step, []

    def nan_in_epoch_2(*args, **kw):
        loss = real_step(*args, **kw)
        steps.append(1)
        return loss * float("nan") if len(steps) > 4 else loss  # 4 steps of 8 examples per epoch

    monkeypatch.setattr(train_module, "train_step", nan_in_epoch_2)
    with pytest.raises(train_module.TrainingDiverged, match=r"^diverged in epoch 2: the mean train loss is nan"):
        train(config(tiny_bert_dir, loss="ce", lam=1.0), ds, {"": dev}, None, checkpoint_dir=tmp_path, progress=False)
    assert torch.load(tmp_path / CHECKPOINT_NAME, weights_only=False)["epoch"] == 1
