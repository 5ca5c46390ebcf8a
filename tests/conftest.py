"""Shared fixtures: tiny random models saved to disk (fast), the real GLUE folder (skipped when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_GLUE = Path(os.environ.get("MAKD_TEST_GLUE_DIR", REPO.parent / "shared" / "glue"))
FIXTURES = Path(__file__).resolve().parent / "fixtures"

# Every Ray of the test run uses token auth, Ray's default for a new local cluster, set before anything imports ray
# (Ray reads the mode into its C++ config on import): a process that starts a Ray with RAY_AUTH_MODE unset switches
# itself to token for good, so a later in-process Ray with RAY_AUTH_MODE=disabled had every trial actor cancelled
# before it started ('Missing authorization header'), as CI saw after test_tracking's in-process sweep.
os.environ["RAY_AUTH_MODE"] = "token"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
# A process the tests start (makd sweeps, Ray's workers) that dies of a native signal (SIGABRT, SIGSEGV) prints every
# Python thread's stack, so a rare crash names the thread and the call that crashed, not only C++ frames.
os.environ["PYTHONFAULTHANDLER"] = "1"


@pytest.fixture(scope="session", autouse=True)
def isolated_makd_home(tmp_path_factory) -> Path:
    """Tests never write into the user's ~/.cache/makd (zoo extraction, logit cache) unless MAKD_HOME is set."""
    if "MAKD_HOME" not in os.environ:
        os.environ["MAKD_HOME"] = str(tmp_path_factory.mktemp("makd-home"))
    return Path(os.environ["MAKD_HOME"])


@pytest.fixture(autouse=True)
def restored_task_registry():
    """A test that registers its own file task (makd/file_tasks.py) leaves the registry as it found it: later tests
    (the registry's own, `unknown task` messages) see only the GLUE tasks."""
    from makd.tasks import TASKS

    before = dict(TASKS)
    yield
    TASKS.clear()
    TASKS.update(before)


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 dir (vocab/tokenizer source for tiny models); on a machine without the zoo
    (the offline GPU box), $MAKD_TEST_TOKENIZER_DIR names a dir with the same bert-base-uncased tokenizer."""
    if os.environ.get("MAKD_TEST_TOKENIZER_DIR"):
        return Path(os.environ["MAKD_TEST_TOKENIZER_DIR"])
    from makd import zoo

    return zoo.resolve("zoo:minilm-l6")


def save_tiny_model(path: Path, tokenizer_dir: Path, *, arch: str = "bert", layers: int = 2, hidden: int = 32,
                    seed: int = 0) -> Path:
    """Save a tiny random encoder with a real tokenizer: loads in milliseconds, runs on a laptop core."""
    import torch
    from transformers import AutoModel, AutoTokenizer, BertConfig, MPNetConfig

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    common = dict(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                  intermediate_size=hidden * 2, max_position_embeddings=130)
    if arch == "bert":
        config = BertConfig(**common)
    elif arch == "mpnet":
        config = MPNetConfig(**common)
    else:
        raise ValueError(arch)
    model = AutoModel.from_config(config)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return path


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory, minilm_dir) -> Path:
    """A 2-layer, 32-wide random BERT with the MiniLM (bert-base-uncased) WordPiece tokenizer."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny-bert"), minilm_dir, arch="bert", layers=2)


@pytest.fixture(scope="session")
def tiny_bert4_dir(tmp_path_factory, minilm_dir) -> Path:
    """A 4-layer tiny BERT, for truncation tests."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny-bert4"), minilm_dir, arch="bert", layers=4, seed=1)


@pytest.fixture(scope="session")
def tiny_mpnet_dir(tmp_path_factory) -> Path:
    """A 4-layer tiny random MPNet with the real all-mpnet-base-v2 tokenizer (needs the mpnet zoo parts)."""
    from makd import zoo

    return save_tiny_model(tmp_path_factory.mktemp("tiny-mpnet"), zoo.resolve("zoo:mpnet-base"), arch="mpnet",
                           layers=4, seed=2)


@pytest.fixture(scope="session")
def glue_dir() -> Path:
    if not SHARED_GLUE.is_dir():
        pytest.skip(f"real GLUE folder not found at {SHARED_GLUE} (set MAKD_TEST_GLUE_DIR)")
    return SHARED_GLUE


def save_tiny_llama(path: Path, *, positions: int = 64, init_range: float = 0.02) -> Path:
    """A 4-layer, 32-wide random llama with the MiniLM tokenizer (its 30,522 ids): loads in milliseconds. At the
    default init it answers every prompt with the same token; init_range 0.2 gives each prompt its own response."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    from makd import zoo

    tok = AutoTokenizer.from_pretrained(os.environ.get("MAKD_TEST_TOKENIZER_DIR") or str(zoo.resolve("zoo:minilm-l6")))
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=positions,
                         tie_word_embeddings=True, initializer_range=init_range)
    LlamaForCausalLM(config).save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return path


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def talking_llama_dir(tmp_path_factory) -> Path:
    """A tiny random llama teacher whose greedy responses differ from prompt to prompt (128 positions: room for
    the SST-2 instruction prompt and a response)."""
    return save_tiny_llama(tmp_path_factory.mktemp("talking-llama"), positions=128, init_range=0.2)


@pytest.fixture
def module_ray():
    """A local Ray for a test module's in-process sweeps, started by the first test that asks and shut down when the
    module ends (or before a test that needs a Ray of its own: `own_ray`): `run_sweep` uses a Ray this process is
    connected to (makd_sweep/cluster.py init_ray), so a module pays Ray's start and stop once instead of once per sweep."""
    import ray

    from makd_sweep.cluster import init_ray

    if not ray.is_initialized():
        init_ray(None, num_cpus=2)


@pytest.fixture
def own_ray():
    """A test that starts its own cluster (two nodes, fake GPUs, a sweep's own processes watched): no module Ray."""
    _shutdown_ray()


@pytest.fixture(scope="module", autouse=True)
def _module_ray_ends_with_its_module():
    yield
    _shutdown_ray()


def _shutdown_ray() -> None:
    import sys

    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
