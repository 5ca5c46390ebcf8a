"""Packs: several trial configs of one student shape trained by one Ray trial, one member after another.

A short trial pays Ray's fixed costs (scheduling, an actor's reset, a result and a checkpoint handed to Tune) for
seconds of compute; a pack pays them once for `size` members that share the task, the student and every training
option, and differ only in loss, λ, τ, seed and lr (on CPU with actor reuse those costs are under a second of a 6 s
trial, so packs gain little there: results/bench, benchmark 6). A sequential pack trains its members one after
another in its process, so a member's result is the result of the same config trained alone, bit for bit; a fused
pack (makd/fused.py, for GPUs) trains the members of one seed and lr as one vmapped model.

A pack's trial config is {"student", "stage", "members": JSON list of member configs}; its rows in trials.csv are one
per member, with the pack's id and size, and a member's trial_id is `<pack trial id>/<member>`: how a
pack's configs, results and checkpoints are read back lives in makd_sweep/experiment_dir.py (`members`, `unpack`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from makd.config import option, parse_section
from makd.errors import UsageError
from makd_sweep.experiment_dir import MEMBERS, SEARCHED_OPTIONS

FUSED = "fused"  # a fused pack's trial config carries fused: true
MODES = ("sequential", "fused")


@dataclass(frozen=True)
class PackConfig:
    """`pack: {size: K, mode}`: trials of the final stage, and of a grid search without a scheduler, in packs of K;
    sequential (members one after another) or fused (makd/fused.py: one vmapped model, members of one seed).

    `size: auto`: each group of configs that may share a pack is split into as many packs as the cluster runs
    trials at once (`slots`, counted by the driver when the sweep starts and kept for --resume), so that packing
    never adds a round of trials, a pack pays Ray's per-trial costs once per slot, and a fused pack holds as many
    members as it can; with `gpu: auto`, a fused pack gets a whole GPU and at most the members that fit it
    (`members_cap`, from the measured step)."""

    size: int = option(1, "trial configs per pack (1: packs off), or auto: a group of configs split into as many "
                       "packs as the cluster runs trials at once", low=1)
    mode: str = option("sequential", "sequential: members one after another, each as alone; fused: one vmapped "
                       "model (members of one seed and lr)", choices=MODES)
    auto: bool = False  # size: auto (parse_pack); a plain field is derived, not a key
    slots: int = 0  # with auto: the trials the cluster runs at once (set by the driver, kept for --resume)
    members_cap: int = 0  # with auto: the most members per pack (a fused pack on a measured GPU); 0: no cap

    @property
    def on(self) -> bool:
        return self.auto or self.size > 1

    def members_per_pack(self, configs: int) -> int:
        """Members per pack for a group of `configs` configs that may share one."""
        if not self.auto:
            return self.size
        members = -(-configs // max(self.slots, 1))
        return max(min(members, self.members_cap) if self.members_cap else members, 1)

    def describe(self) -> str:
        cap = f", at most {self.members_cap} members (what fits a GPU)" if self.members_cap else ""
        return (f"pack: auto -> {self.mode} packs, a group of G configs in packs of ceil(G / {self.slots}) members "
                f"({self.slots} slot(s): the trials the cluster runs at once{cap})")


def parse_pack(raw: Any) -> PackConfig:
    """`pack:` -> PackConfig (null or absent: off); the size must be given."""
    if raw is None:
        return PackConfig()
    example = "{size: 4, mode: sequential}"
    if isinstance(raw, dict) and "size" not in raw:
        raise UsageError("pack.size", f"required, e.g. {example}")
    if isinstance(raw, dict) and raw.get("size") == "auto":
        return replace(parse_section(PackConfig, {**raw, "size": 1}, "pack", example), auto=True)
    return parse_section(PackConfig, raw, "pack", example)


PACK_FILE = "pack.json"  # size: auto as resolved when the sweep started: --resume packs the same way


def resolve_auto(pack: PackConfig, root: str, slots: int, members_cap: int = 0, *, resume: bool) -> PackConfig:
    """`size: auto` -> the packs' slots and member cap: on --resume those the sweep started with (stored in root,
    so that a resumed stage rebuilds the packs its Tuner holds, whatever the cluster now), else the given ones,
    stored."""
    from makd_sweep.storage import read_bytes, write_bytes

    stored = read_bytes(root, PACK_FILE) if resume else None
    if stored is not None:
        saved = json.loads(stored)
        slots, members_cap = int(saved["slots"]), int(saved["members_cap"])
    else:
        write_bytes(root, PACK_FILE, json.dumps({"slots": slots, "members_cap": members_cap}).encode())
    return replace(pack, slots=slots, members_cap=members_cap)


def pack_points(points: list[dict], config: PackConfig) -> list[dict]:
    """Trial configs -> pack configs of at most `config.members_per_pack` members, in order. Only configs of one
    student (and one stage) share a pack: they must run the same shape with the same options; a fused pack's
    members also share the seed and lr (one initialisation, batch order and optimizer: makd.fused.check_fusable)."""
    fused = config.mode == "fused"
    by_shape: dict[tuple, list[dict]] = {}
    for point in points:
        # a fused pack's members also share every searched training option (one optimizer, one batch order)
        shared = (point["seed"], point["lr"], *(point.get(k) for k in SEARCHED_OPTIONS)) if fused else ()
        key = (point["student"], point.get("stage"), *shared)
        by_shape.setdefault(key, []).append(point)
    packs = []
    for (student, stage, *_), members in by_shape.items():
        size = config.members_per_pack(len(members))
        for start in range(0, len(members), size):
            pack = {"student": student, MEMBERS: json.dumps(members[start:start + size], sort_keys=True)}
            pack = pack if stage is None else {**pack, "stage": stage}
            packs.append({**pack, FUSED: True} if fused else pack)
    return packs
