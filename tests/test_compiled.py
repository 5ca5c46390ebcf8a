"""`compile:` on CPU (Inductor's C++ backend): a compiled student trains, ce and taylor at tau 1 stay identical, and
a second process on the node loads the compiled graphs from the shared cache instead of compiling them again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from makd.config import parse_option
from makd.errors import UsageError

# torch.compile's first compile of each graph takes minutes on 2 cores: the full suite's, not the quick tier's
pytestmark = pytest.mark.slow

CHILD = r"""
import json, sys
import numpy as np
from torch._dynamo.utils import counters
from makd.fused import train_fused
from makd.train import TrainConfig, train
from tests.helpers import sentiment

student, way = sys.argv[1], sys.argv[2]
pack = way == "pack"
ds, dev = sentiment(24), sentiment(8, "validation", seed=1)
teacher = np.random.default_rng(3).normal(0, 2, size=(len(ds), 2)).astype(np.float32)
def cfg(mode, **kw):
    base = dict(task="sst2", student=student, teacher="unused", epochs=1, batch_size=8, lr=2e-3, max_length=32,
                seed=0, pad_to_multiple_of=16, compile=mode)
    return TrainConfig(**{**base, **kw})
out = {}
if pack:
    members = [cfg("default", loss="ce", lam=1.0), cfg("default", loss="taylor", lam=0.5),
               cfg("default", loss="vanilla", lam=0.5, tau=2.0)]
    results = train_fused(members, ds, {"": dev}, teacher, device="cpu")
    out["fingerprints"] = [r.last.weights_fingerprint for r in results]
    out["scores"] = [r.last.score for r in results]
elif way == "again":  # the node's next trial process: one compiled run, from the cache
    out["fingerprints"] = [train(cfg("default", loss="ce", lam=1.0), ds, {"": dev}, None, progress=False).last
                           .weights_fingerprint]
else:
    ce = train(cfg("default", loss="ce", lam=1.0), ds, {"": dev}, None, progress=False)
    taylor = train(cfg("default", loss="taylor", lam=0.5), ds, {"": dev}, teacher, progress=False)
    eager = train(cfg(None, loss="ce", lam=1.0), ds, {"": dev}, None, progress=False)
    out["fingerprints"] = [ce.last.weights_fingerprint, taylor.last.weights_fingerprint]
    out["scores"] = [ce.last.score, eager.last.score]
    out["eager_fingerprint"] = eager.last.weights_fingerprint
out["hits"], out["misses"] = counters["inductor"]["fxgraph_cache_hit"], counters["inductor"]["fxgraph_cache_miss"]
print(json.dumps(out))
"""


def run_script(script: str, home: Path, *args) -> dict:
    """`script` in a fresh Python process (as a trial runs) with $MAKD_HOME = home: the JSON line it prints last."""
    env = {**os.environ, "MAKD_HOME": str(home)}
    env.pop("TORCHINDUCTOR_CACHE_DIR", None)
    proc = subprocess.run([sys.executable, "-c", script, *map(str, args)], env=env, capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_child(student: Path, home: Path, way: str) -> dict:
    return run_script(CHILD, home, student, way)


@pytest.fixture(scope="module")
def compile_home(tmp_path_factory) -> Path:
    """One $MAKD_HOME for the module, as a node's trials share one: its first test compiles the tiny student's graphs
    (and checks that it did); the later tests' processes load them instead of compiling them again."""
    return tmp_path_factory.mktemp("compile-home")


def test_a_compiled_student_trains_keeps_taylor_equal_to_ce_and_a_second_process_compiles_nothing(tiny_bert_dir,
                                                                                                  compile_home):
    first = run_child(tiny_bert_dir, compile_home, "trial")
    ce, taylor = first["fingerprints"]
    assert ce == taylor  # at tau 1 taylor's gradient is ce's, compiled or not
    assert ce != first["eager_fingerprint"]  # compiled kernels round differently: compare methods compiled alike
    assert abs(first["scores"][0] - first["scores"][1]) <= 0.25  # but it is the same training (8 dev examples)
    assert first["misses"] > 0 and (compile_home / "compile").is_dir()  # compiled once, into $MAKD_HOME/compile
    second = run_child(tiny_bert_dir, compile_home, "again")  # the node's next trial process
    assert second["misses"] == 0 and second["hits"] > 0
    assert second["fingerprints"] == [ce]  # the cached graphs are the same computation


def test_a_compiled_fused_pack_trains_its_members(tiny_bert_dir, compile_home):
    out = run_child(tiny_bert_dir, compile_home, "pack")  # the stacked (vmapped) forward: graphs of its own
    ce, taylor, vanilla = out["fingerprints"]
    assert ce == taylor and vanilla != ce and out["misses"] > 0


def test_compile_takes_only_its_modes():
    assert parse_option("compile", "reduce-overhead") == "reduce-overhead"
    with pytest.raises(UsageError) as err:
        parse_option("compile", "fast")
    assert err.value.field == "compile" and "max-autotune" in err.value.problem


SWEEP_CHILD = r"""
import json, sys
from makd_sweep.config import parse_config
from makd_sweep.driver import run_sweep
student, glue, root = sys.argv[1:4]
cfg = parse_config({"name": "compiled", "tasks": ["sst2"], "teacher": student, "students": [student],
                    "losses": ["ce", "taylor"], "lams": [0.5], "epochs": 1, "batch_size": 8, "max_length": 32,
                    "pad_to_multiple_of": 16, "compile": "default", "data": {"glue_dir": glue},
                    "selection": {"split": "dev"},
                    "search": {"kind": "grid"}, "scheduler": {"kind": "none"}, "max_concurrent_trials": 1,
                    "resources_per_trial": {"cpu": 1, "gpu": 0}, "storage": root + "/runs"})
trials = run_sweep(cfg, quiet=True, num_cpus=2, cache_dir=root + "/cache").trials
print(json.dumps({"compile": cfg.train.compile, "status": list(trials["status"]),
                  "fingerprints": list(trials["weights_fingerprint"])}))
"""


def test_a_sweep_with_compile_trains_compiled_trials_that_keep_the_leaderboards_equal_sign(tiny_bert_dir,
                                                                                          compile_home, tmp_path):
    """`compile: default` in a sweep reaches every trial; ce and taylor (tau 1) stay one student, bit for bit. The
    student and the data (as SST-2 files; dev selects) are the first test's, so the trials load its graphs from the
    node's cache instead of compiling new shapes. In a process of its own: in this test process, a later test's
    sweep could not start its trials after it (Ray cancelled their actors; not reproduced with two sweeps in one
    plain Python process)."""
    from tests.helpers import sentiment

    glue = tmp_path / "glue"
    (glue / "SST-2").mkdir(parents=True)
    for name, ds in (("train.tsv", sentiment(24)), ("dev.tsv", sentiment(8, "validation", seed=1))):
        rows = ["sentence\tlabel"] + [f"{t}\t{int(y)}" for t, y in zip(ds.text_a, ds.labels, strict=True)]
        (glue / "SST-2" / name).write_text("\n".join(rows) + "\n")
    out = run_script(SWEEP_CHILD, compile_home, tiny_bert_dir, glue, tmp_path)
    assert out["compile"] == "default" and out["status"] == ["TERMINATED", "TERMINATED"]
    assert len(set(out["fingerprints"])) == 1  # taylor's row is ce's student: the table's `=`
    assert any((compile_home / "compile").iterdir())  # the node's cache
