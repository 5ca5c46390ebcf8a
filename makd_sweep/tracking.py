"""Experiment trackers through Ray Tune's own logger callbacks: MLflow, Weights & Biases, TensorBoard.

`tracking:` in the sweep config turns them on. Every trial becomes a run with its parameters (task, student, loss,
λ, τ, seed, lr, stage), its per-epoch metrics (what makd_sweep/trial.py reports: score, glue_*, train_loss,
train_examples_per_s, ...) and the sweep's tags (teacher, fine-tuned or not, sweep name). For MLflow the driver also
keeps one parent run per experiment (trial runs are nested under it) holding the leaderboard, trials and report as
artifacts. A resumed sweep finds its runs again by tag, so no run is duplicated.
"""

from __future__ import annotations

import importlib.util
import os
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from makd.config import option, parse_field, parse_section
from makd.errors import UsageError
from makd_sweep.fields import mapping
from makd_sweep.storage import is_remote_uri

EXAMPLE = "{mlflow: {tracking_uri: http://127.0.0.1:5000, experiment: makd}, wandb: {project: makd, mode: offline}, " \
          "tensorboard: true}"
WANDB_MODES = ("online", "offline", "disabled")
EXTRA = {"mlflow": ("mlflow", "makd[mlflow]"), "wandb": ("wandb", "makd[wandb]"), "tensorboard": ("tensorboardX", "tensorboardX")}
EXPERIMENT_TAG = "makd.experiment"  # the experiment dir: which runs belong to this sweep (and to its resumes)
PARENT_TAG = "makd.parent"


@dataclass(frozen=True)
class MlflowTracking:
    """`tracking.mlflow:`: an MLflow server (or file store) that gets a parent run per sweep and a run per trial."""

    tracking_uri: str = option(None, "http://host:5000, file:///path, sqlite:///file.db or databricks",
                               required=True)
    experiment: str = option("makd", "the MLflow experiment's name")


@dataclass(frozen=True)
class WandbTracking:
    """`tracking.wandb:`: a W&B project that gets a run per trial."""

    project: str = option(None, "the W&B project", required=True)
    mode: str = option("online", "online needs an API key (wandb login); offline syncs later", choices=WANDB_MODES)
    entity: str | None = option(None, "the W&B team or user (null: the key's default)")


@dataclass(frozen=True)
class TrackingConfig:
    """`tracking:`: the trackers Ray Tune's callbacks feed."""

    mlflow: MlflowTracking | None = option(None, "see tracking.mlflow.*")
    wandb: WandbTracking | None = option(None, "see tracking.wandb.*")
    tensorboard: bool = option(False, "TensorBoard event files in each trial's folder")


def parse_tracking(raw: Any) -> TrackingConfig | None:
    """`tracking:` -> TrackingConfig (None: no tracker); a bad value names its field."""
    if raw is None:
        return None
    section = mapping(raw, "tracking", {f.name for f in fields(TrackingConfig)}, EXAMPLE)
    mlflow = wandb = None
    if section.get("mlflow") is not None:
        mlflow = parse_section(MlflowTracking, section["mlflow"], "tracking.mlflow",
                               "{tracking_uri: http://127.0.0.1:5000, experiment: makd}")
        uri = mlflow.tracking_uri
        if "://" not in uri and not uri.startswith(("file:", "sqlite:", "databricks")):
            raise UsageError("tracking.mlflow.tracking_uri", f"expected a URI like http://host:5000 or file:///path, "
                                                             f"got {uri!r}")
    if section.get("wandb") is not None:
        wandb = parse_section(WandbTracking, section["wandb"], "tracking.wandb", "{project: makd, mode: offline}")
    tensorboard = parse_field(TrackingConfig, "tensorboard", section.get("tensorboard", False), "tracking.tensorboard")
    return TrackingConfig(mlflow, wandb, tensorboard) if (mlflow or wandb or tensorboard) else None


def check_tracking(tracking: TrackingConfig | None, *, timeout: float = 5.0) -> None:
    """Before Ray starts: each tracker's package is installed and an MLflow server answers, else one line."""
    if tracking is None:
        return
    for name, wanted in (("mlflow", tracking.mlflow), ("wandb", tracking.wandb), ("tensorboard", tracking.tensorboard)):
        module, package = EXTRA[name]
        if wanted and importlib.util.find_spec(module) is None:
            raise UsageError(f"tracking.{name}", f"needs the {module} package: pip install '{package}'")
    if tracking.wandb and tracking.wandb.mode == "online" and not _wandb_key_known():
        raise UsageError("tracking.wandb", "no W&B API key: run `wandb login` or set WANDB_API_KEY (or use mode: "
                                           "offline)")
    uri = tracking.mlflow.tracking_uri if tracking.mlflow else ""
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as response:
                response.read()
        except (urllib.error.URLError, OSError, ValueError) as err:
            reason = getattr(err, "reason", err)
            raise UsageError("tracking.mlflow.tracking_uri",
                             f"no MLflow server answers at {uri} ({reason}); start one or fix the URI") from None


def _wandb_key_known() -> bool:
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return bool(os.environ.get("WANDB_API_KEY")) or (netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="replace"))


def sweep_tags(cfg, root: str) -> dict[str, str]:
    return {"makd.sweep": cfg.name, EXPERIMENT_TAG: root if is_remote_uri(root) else str(Path(root).resolve()),
            "teacher": str(cfg.train.teacher), "teacher_fine_tuned": str(bool(cfg.train.fine_tuned))}


def parent_run_id(tracking: TrackingConfig | None, cfg, root: str) -> str | None:
    """The experiment's MLflow parent run: found again on --resume, else created (before any trial starts)."""
    if tracking is None or tracking.mlflow is None:
        return None
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking.mlflow.tracking_uri)
    experiment = client.get_experiment_by_name(tracking.mlflow.experiment)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(tracking.mlflow.experiment)
    tags = sweep_tags(cfg, root)
    found = client.search_runs([experiment_id], f"tags.`{PARENT_TAG}` = '1' and tags.`{EXPERIMENT_TAG}` = "
                                                 f"'{tags[EXPERIMENT_TAG]}'", max_results=1)
    if found:
        return found[0].info.run_id
    return client.create_run(experiment_id, run_name=f"sweep {cfg.name}", tags={**tags, PARENT_TAG: "1"}).info.run_id


def callbacks(tracking: TrackingConfig | None, cfg, root: str, *, task: str, stage: str, parent: str | None) -> list:
    """The Ray Tune callbacks of one Tuner (one task and stage)."""
    if tracking is None:
        return []
    tags = {**sweep_tags(cfg, root), "task": task, "stage": stage}
    out: list = []
    if tracking.mlflow:
        from makd_sweep.mlflow_callback import ResumableMLflowCallback

        out.append(ResumableMLflowCallback(tracking_uri=tracking.mlflow.tracking_uri,
                                           experiment_name=tracking.mlflow.experiment,
                                           tags={**tags, **({"mlflow.parentRunId": parent} if parent else {})},
                                           extra_params={"task": task, "stage": stage},
                                           experiment_tag=EXPERIMENT_TAG))
    if tracking.wandb:
        from ray.air.integrations.wandb import WandbLoggerCallback

        # Ray's callback insists on an API key even for runs that never upload: offline/disabled runs get a placeholder
        key = None if tracking.wandb.mode == "online" or os.environ.get("WANDB_API_KEY") else "0" * 40
        out.append(WandbLoggerCallback(project=tracking.wandb.project, entity=tracking.wandb.entity, api_key=key,
                                       group=f"{cfg.name}/{task}/{stage}", mode=tracking.wandb.mode,
                                       tags=[cfg.name, task, stage], dir=_local_dir(root)))
    if tracking.tensorboard:
        from ray.tune.logger import TBXLoggerCallback

        out.append(TBXLoggerCallback())
    return out


def _local_dir(root: str) -> str | None:
    """W&B writes its run files (offline runs included) under the experiment dir when that is local."""
    if is_remote_uri(root):
        return None
    Path(root).mkdir(parents=True, exist_ok=True)
    return str(Path(root).resolve())


def log_sweep_artifacts(tracking: TrackingConfig | None, parent: str | None, root: str, names: Iterable[str]) -> None:
    """The leaderboard, trials and report files as artifacts of the parent run (re-logged after a resume)."""
    if tracking is None or tracking.mlflow is None or parent is None:
        return
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking.mlflow.tracking_uri)
    for name in names:
        path = Path(root) / name
        if path.is_file():
            client.log_artifact(parent, str(path))
    client.set_terminated(parent)
