"""`search_space:`: a distribution per training key, spelled as Ray Tune's (`{loguniform: [1e-5, 1e-3]}`), parsed
once into SpaceDimension and translated to Ray Tune's sampling objects (`ray.tune.loguniform`, ...), which Ray's
OptunaSearch turns into Optuna's distributions. Students, losses and seeds stay the categorical axes of the
comparison: every method gets the same space and, in a random search, the very same sampled settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from makd.config import parse_option, typed_number
from makd.errors import UsageError
from makd_sweep.experiment_dir import SETTING_KEYS

# The keys a space may search: λ, τ, and the training options that change how a student trains but not the data,
# the teacher's cached logits or the budget every method is given.
SEARCHABLE = SETTING_KEYS
INTEGER_KEYS = frozenset({"batch_size"})
# keys a user may expect to search, and why a sweep refuses them
NOT_SEARCHABLE = {
    "epochs": "the budget every method gets the same of (ASHA schedules against it, the final stage reruns it)",
    "max_length": "it changes the tokenized data and the teacher's cached logits, shared by every trial",
    "max_train_samples": "it changes the data every method is compared on",
    "seed": "seeds are the comparison's own axis: list them in `seeds`",
    "student": "students are the comparison's own axis: list them in `students`",
    "loss": "losses are the comparison's own axis: list them in `losses`",
}
# a key searched here must not also be fixed: the space's key -> the sweep key that fixes it
FIXED_BY = {"lam": "lams", "tau": "taus", **{key: key for key in SEARCHABLE[2:]}}

# Ray Tune's distribution -> (arguments, whether it draws integers); choice and grid take a list of values
DISTRIBUTIONS = {
    "uniform": (("low", "high"), False), "quniform": (("low", "high", "q"), False),
    "loguniform": (("low", "high"), False), "qloguniform": (("low", "high", "q"), False),
    "randint": (("low", "high"), True), "qrandint": (("low", "high", "q"), True),
    "lograndint": (("low", "high"), True), "qlograndint": (("low", "high", "q"), True),
    "choice": ((), None), "grid": ((), None),
}


@dataclass(frozen=True)
class SpaceDimension:
    """One searched key: its distribution's name (Ray Tune's) and arguments ([low, high(, q)] or the values)."""

    key: str
    distribution: str
    args: tuple

    @property
    def is_grid(self) -> bool:
        return self.distribution == "grid"

    def to_ray(self):
        """Ray Tune's sampling object (`grid`: a grid_search, which only the grid and random kinds enumerate)."""
        from ray import tune as ray_tune

        if self.distribution == "grid":
            return ray_tune.grid_search(list(self.args))
        if self.distribution == "choice":
            return ray_tune.choice(list(self.args))
        return getattr(ray_tune, self.distribution)(*self.args)

    def start_value(self) -> Any:
        """A deterministic first value inside the space (Optuna's first trial of every category): the first listed
        value, the low bound of an integer range, the (geometric) middle of a float range, on its q grid."""
        if self.distribution in ("choice", "grid"):
            return self.args[0]
        low, high = self.args[0], self.args[1]
        if DISTRIBUTIONS[self.distribution][1]:
            return int(low)
        value = (low * high) ** 0.5 if self.distribution.endswith("loguniform") else (low + high) / 2
        if self.distribution.startswith("q"):
            q = self.args[2]
            value = min(max(round(value / q) * q, low), high)
        return float(value)

    def as_yaml(self) -> dict:
        return {self.distribution: list(self.args)}


def parse_space(raw: Any) -> tuple[SpaceDimension, ...]:
    """The `search_space:` mapping (missing or null: nothing searched) -> its dimensions, in the YAML's order.
    Every error names `search_space.<key>` and says what is wrong, before Ray starts."""
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise UsageError("search_space", "expected a mapping like {lr: {loguniform: [1.0e-5, 1.0e-3]}, "
                                         "batch_size: {choice: [16, 32]}}")
    return tuple(_dimension(str(key), value) for key, value in raw.items())


def _dimension(key: str, raw: Any) -> SpaceDimension:
    path = f"search_space.{key}"
    if key not in SEARCHABLE:
        why = NOT_SEARCHABLE.get(key)
        raise UsageError(path, f"not searchable: {why}" if why else
                         f"unknown key (searchable: {', '.join(SEARCHABLE)})")
    if not isinstance(raw, dict) or len(raw) != 1:
        raise UsageError(path, f"expected one distribution, like {{loguniform: [1.0e-5, 1.0e-3]}}, got {raw!r}")
    (name, args), = raw.items()
    if name not in DISTRIBUTIONS:
        raise UsageError(path, f"unknown distribution {name!r} (Ray Tune's: {', '.join(DISTRIBUTIONS)})")
    names, integers = DISTRIBUTIONS[name]
    if key in INTEGER_KEYS and integers is False:
        raise UsageError(path, f"{key} is an integer: use randint, qrandint, lograndint, choice or grid, not {name}")
    if integers is None:  # choice, grid: the listed values, each a valid value of the key
        if not isinstance(args, (list, tuple)) or not args:
            raise UsageError(f"{path}.{name}", f"expected a non-empty list of values, got {args!r}")
        values = tuple(_value(key, v, f"{path}.{name}[{i}]") for i, v in enumerate(args))
        if len(set(values)) != len(values):
            raise UsageError(f"{path}.{name}", f"lists a value twice: {list(args)!r}")
        return SpaceDimension(key, name, values)
    if not isinstance(args, (list, tuple)) or len(args) != len(names):
        raise UsageError(f"{path}.{name}", f"expected [{', '.join(names)}], got {args!r}")
    kind = int if integers else float
    numbers = [typed_number(v, f"{path}.{name}[{i}]", kind) for i, v in enumerate(args)]
    low, high = numbers[0], numbers[1]
    if low >= high:
        raise UsageError(f"{path}.{name}", f"low must be below high, got {list(args)!r}")
    if name.startswith(("log", "qlog")) and low <= 0:
        raise UsageError(f"{path}.{name}", f"a log scale needs low > 0, got {low}")
    if len(numbers) == 3 and numbers[2] <= 0:
        raise UsageError(f"{path}.{name}", f"q must be > 0, got {numbers[2]}")
    # randint's high is exclusive (Ray's and numpy's convention): the largest value drawn is high - 1
    last = high - 1 if name in ("randint", "lograndint") else high
    _value(key, low, f"{path}.{name}[0]")
    _value(key, last, f"{path}.{name}[1]")
    return SpaceDimension(key, name, tuple(numbers))


def _value(key: str, value: Any, path: str) -> Any:
    """One value of `key`, typed and bounded as the training option (or λ, τ) is."""
    if key in INTEGER_KEYS:
        value = typed_number(value, path, int)
    value = parse_option(key, value, path)
    if key == "lam" and not 0.0 <= value <= 1.0:  # the bounds of the sweep's lams list (makd_sweep/sweep_config.py)
        raise UsageError(path, f"must be >= 0 and <= 1, got {value}")
    if key == "tau" and value <= 0:
        raise UsageError(path, f"must be > 0, got {value}")
    return value


def check_not_fixed(space: tuple[SpaceDimension, ...], raw: dict) -> None:
    """A key is either fixed (at the top level, or as the lams/taus list) or searched, never both."""
    for dim in space:
        fixed = FIXED_BY[dim.key]
        if fixed in raw:
            raise UsageError(f"search_space.{dim.key}", f"also fixed by the top-level `{fixed}`: drop one of them")


def grid_settings(space: tuple[SpaceDimension, ...]) -> list[dict]:
    """Every combination of the grid dimensions' values (one empty setting when there are none)."""
    settings: list[dict] = [{}]
    for dim in space:
        if dim.is_grid:
            settings = [{**s, dim.key: v} for s in settings for v in dim.args]
    return settings


def sampled_settings(space: tuple[SpaceDimension, ...], num_samples: int, seed: int) -> list[dict]:
    """Random search's settings, as Ray's BasicVariantGenerator draws them (every grid combination num_samples
    times, every other key sampled by its Ray Tune domain), but seeded and drawn once for the whole sweep, so that a
    resumed sweep draws the same ones and every (student, loss, seed) trains the very same settings."""
    import numpy as np

    rng = np.random.RandomState(seed)
    sampled = [dim for dim in space if not dim.is_grid]
    settings = []
    for _ in range(num_samples):
        for grid in grid_settings(space):
            setting = dict(grid)
            for dim in sampled:
                value = dim.to_ray().sample(random_state=rng)
                setting[dim.key] = config_value(dim.key, value)
            settings.append(setting)
    return settings


def config_value(key: str, value: Any) -> int | float:
    """A searched key's value as a trial config holds it (JSON: batch_size an int, every other key a float), from a
    Ray domain's numpy scalar or a pandas column alike."""
    return int(value) if key in INTEGER_KEYS else float(value)
