"""makd_sweep/progress.py without Ray running: the lines, the counts (also after --resume) and the stage's ETA."""

from __future__ import annotations

import io
from types import SimpleNamespace

from makd_sweep.progress import ProgressLines


def fake(trial_id: str, status: str = "RUNNING", seed: int = 0) -> SimpleNamespace:
    return SimpleNamespace(trial_id=trial_id, status=status, local_path=None, error_file=None,
                           config={"student": "2x128", "loss": "vanilla", "lam": 0.5, "tau": 1.0, "seed": seed,
                                   "lr": 1e-4})


def test_lines_name_the_setting_score_epoch_and_eta():
    out = io.StringIO()
    lines = ProgressLines("rte search", total=3, concurrent=1, max_epochs=2, stream=out)
    a, b = fake("a"), fake("b", seed=1)
    lines.on_trial_start(0, [a, b], a)
    lines.on_trial_result(0, [a, b], a, {"score": 0.55, "epoch": 1, "metric": "accuracy"})
    lines.on_trial_result(0, [a, b], a, {"score": 0.50, "epoch": 2, "metric": "accuracy"})
    lines.on_trial_complete(0, [a, b], a)
    lines.on_trial_start(0, [a, b], b)
    lines.on_trial_result(0, [a, b], b, {"score": 0.40, "epoch": 1, "metric": "accuracy"})
    lines.on_trial_complete(0, [a, b], b)
    text = out.getvalue().splitlines()
    assert text[0] == "makd: [rte search] start 1/3: vanilla λ=0.5 τ=1 lr=0.0001 seed 0 2x128"
    assert text[1].startswith("makd: [rte search] done 1/3 in ")
    assert text[1].endswith(": vanilla λ=0.5 τ=1 lr=0.0001 seed 0 2x128: accuracy 55.0 at epoch 1 of 2; "
                            "stage ETA 0 s")
    assert "accuracy 40.0 at epoch 1 of 1 (stopped early)" in text[3] and "done 2/3" in text[3]


def test_after_a_resume_the_trials_that_ended_before_count():
    out = io.StringIO()
    lines = ProgressLines("rte search", total=3, concurrent=2, max_epochs=1, stream=out)
    done = [fake("a", "TERMINATED"), fake("b", "TERMINATED")]
    c = fake("c")
    lines.on_trial_start(0, [*done, c], c)
    lines.on_trial_result(0, [*done, c], c, {"score": 0.6, "epoch": 1, "metric": "accuracy"})
    lines.on_trial_complete(0, [*done, c], c)
    assert "done 3/3" in out.getvalue() and out.getvalue().rstrip().endswith("stage done")


def test_the_callback_tune_restores_on_resume_prints_to_stderr(capsys):
    """Tune pickles the callback with the experiment state and `--resume` runs the unpickled one (an interrupted
    sweep resumed without --quiet crashed at its first trial start: the stream was not pickled, nor restored)."""
    import pickle

    lines = pickle.loads(pickle.dumps(ProgressLines("rte final", total=2, concurrent=1, max_epochs=3,
                                                    stream=io.StringIO())))
    a = fake("a")
    lines.on_trial_start(0, [a], a)
    assert capsys.readouterr().err.startswith("makd: [rte final] start 1/2: vanilla")


def test_a_resumed_trial_s_line_names_its_best_epoch_from_before_the_resume_too():
    """After --resume the callback sees only the epochs trained since; the trial reports its best so far."""
    out = io.StringIO()
    lines = ProgressLines("stsb final", total=1, concurrent=1, max_epochs=3, stream=out)
    a = fake("a")
    lines.on_trial_start(0, [a], a)
    lines.on_trial_result(0, [a], a, {"score": 0.29, "epoch": 3, "metric": "pearson", "best_score_so_far": 0.318,
                                      "best_epoch_so_far": 2})
    lines.on_trial_complete(0, [a], a)
    assert "pearson 31.8 at epoch 2 of 3" in out.getvalue()
