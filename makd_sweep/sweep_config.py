"""The validated sweep as data: SweepConfig and its sections' dataclasses, parsed by makd_sweep/config.py.

Below makd_sweep/config.py and makd_sweep/search/ in the layers: the search kinds read a SweepConfig (and parse their
`search:` section into a SearchConfig), and makd_sweep/config.py (which needs the kinds to check a sweep) builds one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from makd.config import TrainOptions, option
from makd.file_tasks import FileTask
from makd.teacher_finetune import FinetuneOptions
from makd_sweep.pack import PackConfig
from makd_sweep.search_space import SpaceDimension
from makd_sweep.tracking import TrackingConfig


@dataclass(frozen=True)
class SearchConfig:
    """The `search:` section, parsed by its kind. Fields a kind does not use keep their defaults."""

    kind: str = option("grid", "a search kind of makd_sweep/search/: grid (every combination of the listed values), random "
                       "(num_samples settings drawn from search_space, the same for every method) or optuna "
                       "(Optuna's TPE, or NSGA-II, over the ranges below and search_space)")
    n_trials: int = option(0, "optuna: trials per task; one TPE study per (student, loss, seed) category, each "
                           "the same number of trials (a multiple of the categories; NSGA-II: at least one each)",
                           low=1)
    num_samples: int = option(1, "random: settings drawn from search_space (times each combination of its grid "
                              "keys), each trained by every (student, loss, seed)", low=1)
    seed: int = option(0, "optuna, random: the sampler's seed")
    lam: tuple[float, float] = option((0.0, 1.0), "optuna: the λ range [low, high]", low=0.0, high=1.0)
    lr: tuple[float, float] | None = option(None, "optuna: a log-uniform lr range [low, high] (null: the sweep's lr, "
                                            "fixed)", low=0.0, low_open=True)
    tau: tuple[float, float] | None = option(None, "optuna: a uniform τ range [low, high] (null: the taus list as "
                                             "a category)", low=0.0, low_open=True)
    objectives: tuple[str, ...] = option(("score",), "optuna: [score] or [score, COST], COST one of params, latency, "
                                         "device_hours (NSGA-II: a Pareto set; scheduler none)")


@dataclass(frozen=True)
class AdaptiveSeeds:
    """`final.seeds: {min, max, step}`: seeds added in rounds until every comparison is decided
    (makd_sweep/report/sequential.py), instead of a fixed list."""

    min: int = option(3, "seeds every chosen setting runs in the first round", low=2)
    max: int = option(10, "seeds a comparison may take at most (seeds 0 .. max-1)", low=2)
    step: int = option(1, "seeds added per round to the undecided comparisons' settings", low=1)


@dataclass(frozen=True)
class FinalConfig:
    """The `final:` section: which seeds every chosen setting reruns with (a list, or {min, max, step}: in rounds
    until decided), and how many settings per cell."""

    seeds: tuple[int, ...] = option(None, "seeds every chosen setting reruns with: a list, or {min, max, step} to add "
                                    "seeds in rounds only where a comparison is undecided (final.seeds.*)", low=0,
                                    required=True, default_text="the sweep's seeds")
    top_k: int = option(1, "settings per (student, method) carried from the search, ranked by selection score",
                        low=1)
    tolerance: float = option(1.0, "adaptive seeds: a comparison whose corrected 95% interval (in points, ×100) is "
                              "at most this wide is decided even when it contains 0", low=0.0)
    adaptive: AdaptiveSeeds | None = None  # from a seeds mapping; seeds is then 0 .. max-1



@dataclass(frozen=True)
class SchedulerConfig:
    """`scheduler:`: early stopping of weak trials (ASHA or HyperBand on the epoch), Population Based Training, or
    none."""

    kind: str = option("none", "none: every trial runs every epoch; asha: stop weak trials early (asynchronous "
                       "successive halving); hyperband: HyperBand's brackets (synchronous: trials pause at each "
                       "rung and resume from their checkpoint); pbt: Population Based Training (a weak trial goes on "
                       "from a strong one's checkpoint of the same student, loss and seed, its searched lam, tau, "
                       "lr, weight_decay and max_grad_norm perturbed; search.kind random or grid)",
                       choices=("none", "asha", "hyperband", "pbt"))
    grace_period: int = option(1, "asha: epochs every trial runs before ASHA may stop it", low=1)
    reduction_factor: int = option(2, "asha, hyperband: 1 in reduction_factor trials goes on at each rung", low=2)
    perturbation_interval: int = option(1, "pbt: epochs between a trial's exploit-and-explore steps", low=1)
    quantile_fraction: float = option(0.25, "pbt: the share of a population at the bottom that copies one at the top",
                                      low=0.0, low_open=True, high=0.5)
    resample_probability: float = option(0.25, "pbt: the chance a perturbed key is drawn anew from search_space "
                                         "instead of multiplied by 0.8 or 1.2", low=0.0, high=1.0)
    max_epochs: int | None = option(None, "the budget ASHA schedules against (null: the epochs key; another value "
                                    "is refused)", low=1)


@dataclass(frozen=True)
class WaitFor:
    """`wait_for: {gpus, cpus, timeout_s}`: before its first trial, the sweep waits until the Ray cluster holds this
    many GPUs and CPUs in all (an autoscaled cluster's workers are still joining), else fails in one line."""

    gpus: float = option(0.0, "GPUs the cluster must hold in all", low=0.0)
    cpus: float = option(0.0, "CPUs the cluster must hold in all", low=0.0)
    timeout_s: float = option(600.0, "seconds to wait before failing", low=0.0, low_open=True)


@dataclass(frozen=True)
class Selection:
    """`selection:`: where epochs and settings are chosen (the sweep's spelling of `holdout_fraction`)."""

    split: str = option("train_holdout", "train_holdout: a seeded hold-out of train, dev reported untouched; dev: "
                        "choose on the dev set that is reported (optimistic; every table says so)",
                        choices=("train_holdout", "dev"))
    fraction: float = option(0.1, "the hold-out's share of train (train_holdout only)", low=0.0, low_open=True,
                             high=0.5)


@dataclass(frozen=True)
class Transfer:
    """`transfer:`: training examples the student sees without their label (makd/transfer.py); the sweep's spelling
    of the training options `transfer_labeled` and `transfer_file`."""

    labeled: int | None = option(None, "keep the labels of this many seeded examples of each task's training split "
                                 "(the hold-out is taken from them); every other example is a transfer example",
                                 low=1)
    file: str | None = option(None, "a csv/tsv/jsonl/parquet file of unlabeled texts in the task's text columns, "
                              "added as transfer examples")


@dataclass(frozen=True)
class Resources:
    """`resources_per_trial:`: what Ray reserves for one trial (or one pack)."""

    cpu: float = option(1.0, "CPUs per trial (its torch threads)", low=0.0, low_open=True)
    gpu: float = option(0.0, "a GPU fraction (0.25: four trials per GPU), a whole number of GPUs, or auto "
                        "(sized from a measured training step)", low=0.0)


@dataclass(frozen=True)
class DataSection:
    """`data:`: where the GLUE files come from."""

    glue_dir: str | None = option(None, "a local GLUE folder in GLUE's tsv layout (null: $MAKD_GLUE_DIR, else the "
                                  "hub's nyu-mll/glue; also `makd sweep --glue-dir`)")


@dataclass(frozen=True)
class SweepConfig:
    """A validated sweep. The fields declared with `option(...)` are top-level YAML keys (type, default, bounds and
    meaning in one place: parse_config and docs/sweep-config.md read them); the others are parsed from a section."""

    name: str = option(None, "the experiment dir's name under `storage` (no '/')", required=True)
    tasks: tuple[str, ...] = option(None, "GLUE task names (cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli), or "
                                    "your own task as a mapping {name, train_file, eval_file, text_columns, "
                                    "label_column, type: classification | regression, labels, metric} "
                                    "(makd/file_tasks.py)", required=True)
    students: tuple[str, ...] = option(None, "student specs: LxH shapes (2x128), a pretrained id/path/zoo name, or "
                                       "MODEL@LAYERS (zoo:minilm-l6@0,5)", required=True)
    losses: tuple[str, ...] = option(("ce", "vanilla", "taylor"), "losses from makd/losses.py; ce (the CE-only "
                                     "baseline) is always added")
    lams: tuple[float, ...] = option((0.5,), "λ, the weight of CE in λ·CE + (1 − λ)·L_KD (λ = 1 is ce)", low=0.0,
                                     high=1.0)
    taus: tuple[float, ...] = option((1.0,), "temperatures τ of the KD term (each listed τ is its own method in the "
                                     "final stage and the paper table)", low=0.0, low_open=True)
    seeds: tuple[int, ...] = option((0,), "training seeds of the search stage", low=0)
    train: TrainOptions = field(default_factory=TrainOptions)  # the top-level training keys: shared by every trial
    final: FinalConfig | None = None  # the final stage (makd_sweep/search/final.py); None: the search is the result
    glue_dir: str | None = None
    search: SearchConfig = field(default_factory=SearchConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    cpu: float = 1.0
    gpu: float = 0.0  # with gpu_auto, 0 until the driver measured a training step (makd_sweep.gpu_sizing)
    gpu_auto: bool = False
    max_concurrent_trials: int | None = option(None, "at most this many trials at once (null: as many as the "
                                               "resources allow)", low=1)
    max_failures: int = option(1, "retries of a failed trial, from its last checkpoint", low=0)
    storage: str = option("runs", "where experiment dirs live, a path or an s3:// / gs:// URI (shared by every node)")
    address: str | None = option(None, "an existing Ray cluster (also --address, $RAY_ADDRESS); null: a private Ray "
                                 "on this machine, on 127.0.0.1")
    tracking: TrackingConfig | None = None  # makd_sweep/tracking.py: MLflow / W&B / TensorBoard through Tune callbacks
    file_tasks: tuple[FileTask, ...] = ()  # the `tasks:` entries defined by the user's files, by name in `tasks`
    teacher_finetune: FinetuneOptions | None = None  # fine-tune the teacher per task first (cached); None: paper's
    wait_for: WaitFor | None = None  # wait for an autoscaled cluster's GPUs/CPUs before the first trial
    pack: PackConfig = field(default_factory=PackConfig)  # makd_sweep/pack.py: trial configs trained by one Ray trial
    search_space: tuple[SpaceDimension, ...] = ()  # makd_sweep/search_space.py: the searched keys and their distributions

    @property
    def searched_keys(self) -> tuple[str, ...]:
        return tuple(dim.key for dim in self.search_space)

    @property
    def teacher_fine_tuned(self) -> bool:
        """The logits come from a teacher with a trained head: given so (fine_tuned) or fine-tuned by the sweep."""
        return self.train.fine_tuned or self.teacher_finetune is not None

    def file_task(self, task: str) -> FileTask | None:
        return next((t for t in self.file_tasks if t.name == task), None)

    @property
    def max_epochs(self) -> int:
        return self.scheduler.max_epochs or self.train.epochs

    def as_dict(self) -> dict:
        return asdict(self)
