"""Ray Tune's MLflowLoggerCallback, made resumable (imported only when `tracking.mlflow` is set: it needs Ray)."""

from __future__ import annotations

from ray.air.integrations.mlflow import MLflowLoggerCallback

from makd.fingerprints import FINGERPRINT_COLUMNS


class ResumableMLflowCallback(MLflowLoggerCallback):
    """Ray's callback, plus: a trial that `--resume` restarts logs into its earlier run (found by the trial name,
    experiment dir and stage tags) instead of opening a second one, metrics are logged at step = epoch and an epoch
    already in the run is not logged again (a resumed trial that had ended re-reports its last epoch); the run's
    params include task and stage, and the selected student's fingerprints (makd/fingerprints.py): tags that follow
    the best epoch so far while the trial runs, params once it has ended."""

    def __init__(self, *, extra_params: dict, experiment_tag: str, **kwargs):
        """`experiment_tag`: the tag (among `tags`) naming the experiment dir, which a resumed trial's run shares
        (makd_sweep.tracking.EXPERIMENT_TAG; passed in, as makd_sweep/tracking.py imports this module)."""
        super().__init__(**kwargs)
        self.extra_params = extra_params
        self.experiment_tag = experiment_tag
        self._last_epoch: dict = {}
        self._best_score: dict = {}  # trial -> the best epoch's score so far (its first best: as trials.csv selects)

    def _client(self):
        return self.mlflow_util._mlflow.tracking.MlflowClient(tracking_uri=self.tracking_uri)

    def _track_selected(self, trial, result: dict) -> None:
        score = result.get("score")
        if score is None or score <= self._best_score.get(trial, float("-inf")):
            return
        self._best_score[trial] = score
        client = self._client()
        for key in FINGERPRINT_COLUMNS:  # of the epoch trials.csv selects
            if result.get(key):
                client.set_tag(self._trial_runs[trial], key, result[key])

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        epoch = result.get("epoch")
        if epoch is None:
            return super().log_trial_result(iteration, trial, result)
        if epoch <= self._last_epoch.get(trial, 0):
            return None
        self._last_epoch[trial] = epoch
        self._track_selected(trial, result)
        self.mlflow_util.log_metrics(run_id=self._trial_runs[trial], metrics_to_log=result, step=int(epoch))
        return None

    def log_trial_start(self, trial) -> None:
        if trial not in self._trial_runs:
            client = self._client()
            tag = self.experiment_tag
            query = (f"tags.trial_name = '{trial}' and tags.`{tag}` = '{self.tags[tag]}' "
                     f"and tags.stage = '{self.tags['stage']}'")
            found = client.search_runs([self.mlflow_util.experiment_id], query, max_results=1)
            if found:
                run_id = found[0].info.run_id
                self._trial_runs[trial] = run_id
                self._last_epoch[trial] = max((m.value for m in client.get_metric_history(run_id, "epoch")), default=0)
                self._best_score[trial] = max((m.value for m in client.get_metric_history(run_id, "score")),
                                              default=float("-inf"))
                client.update_run(run_id, status="RUNNING")
        super().log_trial_start(trial)
        self.mlflow_util.log_params(run_id=self._trial_runs[trial], params_to_log=self.extra_params)

    def log_trial_end(self, trial, failed: bool = False) -> None:
        if trial in self._trial_runs:  # the selected student is final now: its fingerprints become params
            tags = self._client().get_run(self._trial_runs[trial]).data.tags
            selected = {key: tags[key] for key in FINGERPRINT_COLUMNS if key in tags}
            if selected:
                self.mlflow_util.log_params(run_id=self._trial_runs[trial], params_to_log=selected)
        super().log_trial_end(trial, failed)
