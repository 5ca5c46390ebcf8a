"""THE reader of a sweep's experiment dir as Ray Tune and makd lay it out; every other module asks here.

    <experiment>/                 sweep.json, trials.csv, trials.jsonl, events.jsonl, report files (makd's)
      <task>/                     the task's search-stage Tuner: experiment_state-*.json (Ray's), and per trial
        <trainable>_<id>_<n>_…/   params.json, result.json (one JSON line per epoch), error.txt,
          checkpoint_NNNNNN/      checkpoint.pt and best_model.pt (makd's, in Ray's checkpoint folders)
      <task>-final/               the task's final-stage Tuner, laid out the same
      <task>-final-r2/, -r3/ ...  adaptive seeds: the final stage's later rounds, one Tuner each

Paths and JSON only (no pandas, no Ray): a dir copied off a cluster reads the same as a live one."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from makd.errors import UsageError

SWEPT = ("student", "loss", "lam", "tau", "seed", "lr")  # the keys of every trial's config (params.json)
# training options a trial's config holds only where the sweep searches them (makd_sweep/search_space.py)
SEARCHED_OPTIONS = ("weight_decay", "warmup_ratio", "max_grad_norm", "batch_size")
SETTING_KEYS = ("lam", "tau", "lr", *SEARCHED_OPTIONS)  # what a search_space may search: a method's whole setting
SCHEDULE = "schedule"  # PBT (makd_sweep/schedule.py): a trial's setting from each epoch on, JSON (trials.csv, a config)
FINISHED = ("TERMINATED", "STOPPED")  # Ray statuses of a trial that has a score: ran to the end, or ASHA stopped it
MEMBERS = "members"  # the pack's trial config key: its members' configs as a JSON list
MEMBER = "member"  # every result a pack reports carries the index of the member it is about
MEMBER_ERROR = "member_error"  # the result a pack reports for a member that failed (its neighbours go on)
MEMBER_DIR = "member-{}"  # a member's checkpoint.pt and best_model.pt inside the pack's checkpoint
SEPARATOR = "/"  # a member's trial_id: <pack trial id>/<member index>
FINAL_DIR_SUFFIX = "-final"  # a task's final-stage Tuner lives in <experiment>/<task>-final
TRIAL_ID = re.compile(r"_([0-9a-f]{5}_\d{5})(?:_|$)")  # in a trial folder's name: <trainable>_<id>_<n>_<params>


@dataclass(frozen=True)
class TrialFolder:
    """One trial's folder in a stage dir."""

    path: Path

    @property
    def trial_id(self) -> str:
        match = TRIAL_ID.search(self.path.name)
        return match.group(1) if match else self.path.name

    def params(self) -> dict:
        try:
            return json.loads((self.path / "params.json").read_text())
        except (ValueError, AttributeError) as err:
            raise UsageError(str(self.path / "params.json"), f"not a Ray Tune params.json ({err})") from None

    def history(self) -> list[dict]:
        """result.json: one JSON object per reported epoch; a half-written last line (running trial) is skipped."""
        return read_history(self.path / "result.json")

    def error_line(self) -> str | None:
        path = self.path / "error.txt"
        if not path.is_file():
            return None
        lines = [line for line in path.read_text(errors="replace").strip().splitlines() if line.strip()]
        return lines[-1].strip()[:300] if lines else "error"

    def checkpoints(self) -> list[Path]:
        """Ray's checkpoint folders of this trial, oldest first."""
        return sorted((c for c in self.path.glob("checkpoint_*") if c.is_dir()),
                      key=lambda c: int(re.sub(r"\D", "", c.name) or 0))


def read_history(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    history = []
    for line in path.read_text(errors="replace").splitlines():
        if line.strip():
            try:
                history.append(json.loads(line))
            except ValueError:
                continue
    return history


def is_trial_dir(path: Path) -> bool:
    return path.is_dir() and (path / "params.json").is_file()


def is_stage_dir(path: Path) -> bool:
    if not path.is_dir():
        return False
    return any(path.glob("experiment_state-*.json")) or any(is_trial_dir(p) for p in path.iterdir())


FINAL_STAGE_DIR = re.compile(r"^(?P<task>.+?)" + re.escape(FINAL_DIR_SUFFIX) + r"(?:-r\d+)?$")


def final_stage_name(task: str, round_index: int = 0) -> str:
    """A task's final-stage Tuner dir: <task>-final, and with adaptive seeds <task>-final-r2, -r3, ... for the
    later rounds (each round is its own Tuner: Ray cannot add trials to a finished experiment)."""
    return task + FINAL_DIR_SUFFIX + (f"-r{round_index + 1}" if round_index else "")


def task_and_stage(dir_name: str) -> tuple[str, str]:
    """A stage dir's name -> (task, "search" | "final"): <task>, <task>-final, <task>-final-r2 (a later round)."""
    final = FINAL_STAGE_DIR.match(dir_name)
    return (final["task"], "final") if final else (dir_name, "search")


def stage_dirs(root: str | Path) -> list[tuple[str, Path]]:
    """(task, dir) of every Ray Tune experiment under ROOT (a task's search stage in <task>/, its final stage in
    <task>-final/ and its later rounds), or ROOT itself when it is one."""
    root = Path(root)
    if not root.is_dir():
        return []
    if is_stage_dir(root):
        return [(task_and_stage(root.name)[0], root)]
    return [(task_and_stage(p.name)[0], p) for p in sorted(root.iterdir()) if is_stage_dir(p)]


def trial_folders(stage: Path) -> list[TrialFolder]:
    return [TrialFolder(p) for p in sorted(stage.iterdir()) if is_trial_dir(p)]


def ray_states(stage: Path) -> dict[str, dict]:
    """trial_id -> {status, relative_logdir, config} from the newest experiment_state-*.json (Ray's own JSON)."""
    states = sorted(stage.glob("experiment_state-*.json"), key=lambda p: (p.stat().st_mtime, p.name))
    for path in reversed(states):
        try:
            data = json.loads(path.read_text())
            out = {}
            for entry in data["trial_data"]:
                trial = json.loads(entry[0] if isinstance(entry, (list, tuple)) else entry)
                out[str(trial["trial_id"])] = {"status": trial.get("status"),
                                               "relative_logdir": trial.get("relative_logdir"),
                                               "config": trial.get("config") or {}}
            return out
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            continue  # being rewritten, or another Ray version's layout: fall back to the folders alone
    return {}


def sweep_config(root: Path) -> dict | None:
    """The config sweep.json recorded (None: a running sweep, or a copied dir without it)."""
    path = Path(root) / "sweep.json"
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text()).get("config")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as err:
        raise UsageError(str(path), f"not a sweep.json written by makd sweep ({err})") from None
    return config if isinstance(config, dict) else None


EVENTS = "events.jsonl"  # makd's audit line per trial start, epoch and end (makd_sweep/trial.py appends them)


def events(root: Path) -> list[dict]:
    """The experiment's events.jsonl, oldest first; a line being appended is skipped."""
    path = Path(root) / EVENTS
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            out.append(event)
    return out


def ended_trials(root: Path) -> set[str]:
    """Trial ids whose training loop returned ("done"/"already-done" events)."""
    return {str(e.get("trial_id")) for e in events(root) if e.get("event") in ("done", "already-done")}


def newest_result_mtime(root: Path) -> float:
    """When a trial last reported or failed (what tells a resumed sweep's folders from an older trials.csv)."""
    newest = 0.0
    for _, stage in stage_dirs(root):
        for folder in stage.iterdir():
            for name in ("result.json", "error.txt"):
                try:
                    newest = max(newest, (folder / name).stat().st_mtime)
                except OSError:
                    pass
    return newest


def weights_path(trial_id: str, name: str) -> str:
    """Where a trial's weights file `name` lies inside one of its checkpoints: a member of a pack
    (`<pack id>/<member>`) keeps its files in the member's folder."""
    _, member = split_trial_id(trial_id)
    return name if member is None else f"{MEMBER_DIR.format(member)}/{name}"


def is_best_weights(relative: str, task: str, stage: str, trial_id: str) -> bool:
    """Whether a path in an experiment dir (`<stage dir>/<trial folder>/<checkpoint>/...`) is this trial's
    best-epoch weights file (a pack member's: inside its member folder), in a dir of the trial's task and stage."""
    from makd.checkpoints import BEST_NAME

    parts = relative.split("/")
    return len(parts) >= 4 and task_and_stage(parts[0]) == (task, stage) and split_trial_id(trial_id)[0] in parts[1] \
        and "/".join(parts[3:]) == weights_path(trial_id, BEST_NAME)


def best_weights(root: str | Path, task: str, stage: str, trial_id: str, name: str) -> Path:
    """A trial's best-epoch weights file `name` in its newest checkpoint that has one."""
    dirs = [d for t, d in stage_dirs(root) if t == task and task_and_stage(d.name)[1] == stage]
    folder_dir = dirs[0] if dirs else Path(root) / task
    ray_id, inside = split_trial_id(trial_id)[0], weights_path(trial_id, name)
    found = [c for d in dirs for f in trial_folders(d) if ray_id in f.path.name for c in f.checkpoints()
             if (c / inside).is_file()]
    found = [c / inside for c in sorted(found, key=lambda c: int(re.sub(r"\D", "", c.name) or 0))]  # restored: 2
    if not found:
        raise UsageError(str(folder_dir), f"no {name} for trial {trial_id}: its checkpoints are gone "
                                          "(or the sweep predates best-epoch checkpoints)")
    return found[-1]


def trial_params(config: dict) -> dict:
    """Every trial's config is flat (student, loss, lam, tau, seed, lr); older experiment dirs nested a grid
    trial's under "cell": read either as one flat dict."""
    return {**config.get("cell", {}), **{k: v for k, v in config.items() if k != "cell"}}


# ----------------------------------------------------------------- a pack's members (makd_sweep/pack.py makes packs)


def members(params: dict) -> list[dict] | None:
    """A pack's member configs; None for a config of one trial."""
    raw = params.get(MEMBERS)
    return None if raw is None else json.loads(raw)


def member_trial_id(pack_id: str, index: int) -> str:
    return f"{pack_id}{SEPARATOR}{index}"


def split_trial_id(trial_id: str) -> tuple[str, int | None]:
    """A trials.csv trial_id -> (Ray's trial id, member index or None)."""
    pack_id, sep, index = trial_id.partition(SEPARATOR)
    return (pack_id, int(index)) if sep and index.isdigit() else (trial_id, None)


@dataclass(frozen=True)
class Unpacked:
    """One trial as trials.csv counts them: a Ray trial of one config, or one member of a pack."""

    params: dict
    history: list[dict]
    trial_id: str
    error: str | None = None  # the member's own error (a pack goes on after a member fails)
    packed: bool = False


def unpack(params: dict, history: list[dict], trial_id: str) -> list[Unpacked]:
    """The trials inside one Ray trial, each with the epochs it reported (oldest first). A member reported again
    after a restore (its last epoch, so that Tune's record ends with it) counts once."""
    configs = members(params)
    if configs is None:
        return [Unpacked(params, history, trial_id)]
    epochs: list[dict[int, dict]] = [{} for _ in configs]
    errors: list[str | None] = [None for _ in configs]
    for result in history:
        index = result.get(MEMBER)
        if index is None or not 0 <= int(index) < len(configs):
            continue
        if result.get(MEMBER_ERROR):
            errors[int(index)] = str(result[MEMBER_ERROR])
        elif result.get("epoch") is not None:
            epochs[int(index)][int(result["epoch"])] = result
    return [Unpacked({**config, "stage": config.get("stage") or params.get("stage")},
                     [mine[e] for e in sorted(mine)], member_trial_id(trial_id, i), errors[i], packed=True)
            for i, (config, mine) in enumerate(zip(configs, epochs, strict=True))]
