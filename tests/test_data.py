"""Loading GLUE splits: hand-written fixtures in the original layouts, the real GLUE folder, user files, the hub."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from makd import data
from makd.data import TextDataset, glue_file, load_file, load_glue_dir, load_hub, load_split, subsample
from makd.errors import UsageError
from makd.tasks import get_task
from tests.conftest import FIXTURES

FIXTURE_GLUE = FIXTURES / "glue"

# task, split -> (number of rows, first text_a, first text_b or None, label column as loaded)
FIXTURE_EXPECTED = {
    ("cola", "train"): (6, "Our friends won't buy this analysis, let alone the next one we propose.", None,
                        [1, 0, 1, 0, 1, 0]),
    ("cola", "validation"): (5, "The book was written by John.", None, [1, 0, 1, 0, 1]),
    ("sst2", "train"): (6, "a gorgeous , witty , seductive movie . ", None, [1, 0, 0, 1, 0, 1]),
    ("sst2", "validation"): (5, "it 's a charming journey . ", None, [1, 0, 1, 0, 1]),
    ("mrpc", "train"): (5, "The witness said he saw \" nothing unusual \" that night .",
                        "According to the witness , nothing unusual happened that night .", [1, 0, 1, 0, 1]),
    ("mrpc", "validation"): (4, "He said the pie business doesn 't fit the strategy .",
                             "\" The pie business does not fit our strategy . \"", [1, 0, 0, 1]),
    ("qqp", "train"): (6, "How is the life of a math student? Could you describe your own experiences?",
                       "Which level of prepration is enough for the exam jlpt5?", [0, 1, 0, 1, 0, 1]),
    ("qqp", "validation"): (5, "Why are African-Americans so beautiful?", "Why are hispanics so beautiful?",
                            [0, 0, 1, 0, 1]),
    ("stsb", "train"): (5, "A plane is taking off.", "An air plane is taking off.", [5.0, 3.8, 0.0, 4.2, 2.6]),
    ("stsb", "validation"): (4, "A man with a hard hat is dancing.", "A man wearing a hard hat is dancing.",
                             [5.0, 4.75, 0.2, 3.4]),
    ("mnli", "train"): (6, "Conceptually cream skimming has two basic dimensions - product and geography.",
                        "Product and geography are what make cream skimming work.", [1, 0, 0, 0, 1, 2]),
    ("mnli", "validation_matched"): (4, "The new rights are nice enough", "Everyone really likes the newest benefits",
                                     [1, 2, 0, 2]),
    ("mnli", "validation_mismatched"): (
        3, "Your contribution helped make it possible for us to provide our students with a quality education.",
        "Your contributions were of no help with our students' education.", [2, 0, 1]),
    ("qnli", "train"): (5, "When did the third Digimon series begin?",
                        "Unlike the two seasons before it and most of the seasons that followed, Digimon Tamers "
                        "takes a darker approach.", [1, 1, 0, 0, 0]),
    ("qnli", "validation"): (4, "What came into force after the new constitution was herald?",
                             "As of that day, the new constitution heralding the Second Republic came into force.",
                             [0, 1, 1, 0]),
    ("rte", "train"): (5, "No Weapons of Mass Destruction Found in Iraq Yet.",
                       "Weapons of Mass Destruction Found in Iraq.", [1, 0, 1, 0, 1]),
    ("rte", "validation"): (3, "Dana Reeve, the widow of the actor, has died of lung cancer at age 44.",
                            "Christopher Reeve had an accident.", [1, 0, 0]),
    ("wnli", "train"): (5, "I stuck a pin through a carrot. When I pulled the pin out, it had a hole.",
                        "The carrot had a hole.", [1, 1, 1, 0, 0]),
    ("wnli", "validation"): (3, "The drain is clogged with hair. It has to be cleaned.", "The hair has to be cleaned.",
                             [0, 1, 0]),
}


def small(labels=(0, 1, 1, 0, 1), task: str = "rte") -> TextDataset:
    n = len(labels)
    return TextDataset(task, "train", [f"premise {i}" for i in range(n)], [f"hypothesis {i}" for i in range(n)],
                       np.asarray(labels, dtype=np.int64), "test")


# --- fixtures in the original GLUE layouts ---------------------------------------------------------------


def test_every_task_and_split_has_a_fixture():
    from makd.tasks import TASKS

    # a causal-LM task reads its GLUE task's files (sst2lm: SST-2's)
    assert {(t.name, s) for t in TASKS.values() for s in t.splits if not t.is_causal_lm} == set(FIXTURE_EXPECTED)


@pytest.mark.parametrize("task_name, split", sorted(FIXTURE_EXPECTED))
def test_fixture_loads(task_name, split):
    n, first_a, first_b, labels = FIXTURE_EXPECTED[task_name, split]
    task = get_task(task_name)
    ds = load_glue_dir(task, split, FIXTURE_GLUE)
    assert (ds.task, ds.split, len(ds)) == (task_name, split, n)
    assert ds.source == str(glue_file(task, split, FIXTURE_GLUE))
    assert ds.text_a[0] == first_a
    assert len(ds.text_a) == n
    if first_b is None:
        assert ds.text_b is None
    else:
        assert ds.text_b is not None and len(ds.text_b) == n and ds.text_b[0] == first_b
    if task.is_regression:
        assert ds.labels.dtype == np.float32
        np.testing.assert_allclose(ds.labels, labels, rtol=1e-6)
    else:
        assert ds.labels.dtype == np.int64
        assert ds.labels.tolist() == labels


def test_glue_text_is_kept_verbatim():
    """Bare quotes, 'null'/'NA' and trailing spaces survive; the MRPC BOM does not leak into the header."""
    sst2 = load_glue_dir(get_task("sst2"), "train", FIXTURE_GLUE)
    assert sst2.text_a[2] == "\" the story \" is a sham "
    assert sst2.text_a[4] == "null "
    assert load_glue_dir(get_task("sst2"), "validation", FIXTURE_GLUE).text_a[4] == "NA "
    assert (FIXTURE_GLUE / "MRPC" / "train.tsv").read_bytes().startswith(b"\xef\xbb\xbf")
    rte = load_glue_dir(get_task("rte"), "train", FIXTURE_GLUE)  # CRLF line ends
    assert rte.text_a[2] == "Judie Vivian, chief executive at ProMedica, said \"the center will serve everyone.\""
    assert not any(t.endswith("\r") for t in rte.text_b)


def test_glue_file_names():
    assert glue_file(get_task("sst-2"), "validation", "/g") == Path("/g/SST-2/dev.tsv")
    assert glue_file(get_task("mnli"), "validation_mismatched", "/g") == Path("/g/MNLI/dev_mismatched.tsv")
    with pytest.raises(UsageError, match="unknown split 'validation' for task mnli"):
        glue_file(get_task("mnli"), "validation", "/g")
    with pytest.raises(UsageError, match="split"):
        glue_file(get_task("rte"), "test", "/g")


# --- the real GLUE folder --------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("task_name, train_rows, dev_rows", [("sst2", 67_349, 872), ("mrpc", 3_668, 408),
                                                             ("rte", 2_490, 277), ("stsb", 5_749, 1_500)])
def test_real_glue_row_counts(glue_dir, task_name, train_rows, dev_rows):
    task = get_task(task_name)
    train = load_glue_dir(task, "train", glue_dir)
    dev = load_glue_dir(task, "validation", glue_dir)
    assert (len(train), len(dev)) == (train_rows, dev_rows)
    for ds in (train, dev):
        assert (ds.text_b is None) == (len(task.text_fields) == 1)
        assert all(ds.text_a) and (ds.text_b is None or all(ds.text_b))
        if task.is_regression:
            assert ds.labels.min() >= 0.0 and ds.labels.max() <= 5.0
        else:
            assert set(np.unique(ds.labels)) == set(range(task.num_labels))


@pytest.mark.slow
def test_real_glue_first_rows(glue_dir):
    mrpc = load_glue_dir(get_task("mrpc"), "train", glue_dir)
    assert mrpc.text_a[0].startswith("Amrozi accused his brother")
    assert mrpc.labels[:2].tolist() == [1, 0]
    rte = load_glue_dir(get_task("rte"), "validation", glue_dir)
    assert rte.text_b[0] == "Christopher Reeve had an accident."
    assert rte.labels[:2].tolist() == [1, 0]  # not_entailment, entailment
    stsb = load_glue_dir(get_task("stsb"), "validation", glue_dir)
    assert stsb.labels[:2].tolist() == [5.0, 4.75]


# --- subsample and digest ---------------------------------------------------------------------------


def test_subsample_is_deterministic_sorted_and_matches_the_rule():
    ds = small(labels=list(range(2)) * 10)
    a, b = subsample(ds, 7, seed=3), subsample(ds, 7, seed=3)
    assert a.text_a == b.text_a and len(a) == 7
    indices = [int(t.split()[1]) for t in a.text_a]
    assert indices == sorted(indices)
    assert indices == sorted(np.random.default_rng(3).permutation(20)[:7].tolist())
    assert a.labels.tolist() == [i % 2 for i in indices]
    assert a.text_b == [f"hypothesis {i}" for i in indices]
    assert subsample(ds, 7, seed=4).text_a != a.text_a


def test_subsample_edge_cases():
    ds = small()
    assert subsample(ds, None) is ds
    assert subsample(ds, len(ds)) is ds
    assert subsample(ds, 100) is ds
    for bad in (0, -1):
        with pytest.raises(UsageError, match="max_samples"):
            subsample(ds, bad)


def test_select_keeps_order_and_fields():
    ds = small().select([4, 0])
    assert ds.text_a == ["premise 4", "premise 0"] and ds.text_b == ["hypothesis 4", "hypothesis 0"]
    assert ds.labels.tolist() == [1, 0] and (ds.task, ds.split, ds.source) == ("rte", "train", "test")


def test_the_digest_is_stable_and_sensitive():
    ds = small()
    fp = ds.digest()
    assert len(fp) == 64 and fp == small().digest()
    changed = small()
    changed.text_a[3] = "premise 3!"
    assert changed.digest() != fp
    assert small(labels=(0, 1, 1, 0, 0)).digest() != fp
    assert TextDataset("rte", "validation", ds.text_a, ds.text_b, ds.labels, "x").digest() != fp
    assert TextDataset("rte", "train", ds.text_a, ds.text_b, ds.labels, "elsewhere").digest() == fp
    assert TextDataset("rte", "train", ds.text_a, ds.text_b, ds.labels.astype(np.int32), "x").digest() == fp
    # Text boundaries matter: moving a character between the two fields changes the key.
    a = TextDataset("rte", "train", ["ab"], ["c"], np.array([0]), "x")
    b = TextDataset("rte", "train", ["a"], ["bc"], np.array([0]), "x")
    assert a.digest() != b.digest()


def test_the_digest_is_the_same_in_another_process():
    code = ("import numpy as np; from makd.data import TextDataset; "
            "print(TextDataset('stsb', 'train', ['a', 'é'], ['b', 'c'], np.array([1.5, 4.0], dtype=np.float32), "
            "'s').digest())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout.strip()
    here = TextDataset("stsb", "train", ["a", "é"], ["b", "c"], np.array([1.5, 4.0], dtype=np.float32), "s")
    assert out == here.digest()


# --- malformed GLUE files --------------------------------------------------------------------------------


def write_rte(root: Path, lines: list[str], split_file: str = "train.tsv", bom: bool = False) -> Path:
    path = root / "RTE" / split_file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + "".join(line + "\n" for line in lines).encode())
    return path


RTE_HEADER = "index\tsentence1\tsentence2\tlabel"


def test_wrong_field_count_names_file_and_line(tmp_path):
    path = write_rte(tmp_path, [RTE_HEADER, "0\ta\tb\tentailment", "1\ta\tb", "2\ta\tb\tentailment"])
    with pytest.raises(UsageError) as err:
        load_glue_dir(get_task("rte"), "train", tmp_path)
    assert err.value.field == str(path)
    assert err.value.problem == "line 3: expected 4 tab-separated fields, got 3"


def test_extra_field_is_an_error(tmp_path):
    write_rte(tmp_path, [RTE_HEADER, "0\ta\tb\tentailment\textra"])
    with pytest.raises(UsageError, match="line 2: expected 4 tab-separated fields, got 5"):
        load_glue_dir(get_task("rte"), "train", tmp_path)


def test_bad_label_names_file_and_line(tmp_path):
    path = write_rte(tmp_path, [RTE_HEADER, "0\ta\tb\tentailment", "", "1\ta\tb\tmaybe"])
    with pytest.raises(UsageError) as err:
        load_glue_dir(get_task("rte"), "train", tmp_path)
    assert err.value.field == str(path)
    assert err.value.problem.startswith("line 4: unknown label 'maybe' (expected entailment, not_entailment")


@pytest.mark.parametrize("bad", ["2", "-1", "yes", ""])
def test_bad_class_ids(tmp_path, bad):
    path = tmp_path / "SST-2" / "train.tsv"
    path.parent.mkdir()
    path.write_text(f"sentence\tlabel\ngood\t1\nbad\t{bad}\n")
    with pytest.raises(UsageError, match=r"SST-2/train\.tsv: line 3: unknown label"):
        load_glue_dir(get_task("sst2"), "train", tmp_path)


@pytest.mark.parametrize("bad", ["high", "5.5", "-0.1", "nan"])
def test_bad_stsb_scores(tmp_path, bad):
    path = tmp_path / "STS-B" / "dev.tsv"
    path.parent.mkdir()
    header = "index genre filename year old_index source1 source2 sentence1 sentence2 score".replace(" ", "\t")
    path.write_text(f"{header}\n0\tg\tf\t2012\t0\tnone\tnone\ta\tb\t{bad}\n")
    with pytest.raises(UsageError, match=r"dev\.tsv: line 2: .*score"):
        load_glue_dir(get_task("stsb"), "validation", tmp_path)


def test_missing_file(tmp_path):
    with pytest.raises(UsageError) as err:
        load_glue_dir(get_task("qnli"), "train", tmp_path)
    assert err.value.field == str(tmp_path / "QNLI" / "train.tsv")
    assert err.value.problem == "file not found"


def test_missing_column_is_named(tmp_path):
    path = write_rte(tmp_path, ["index\tsentence1\tsentence_2\tlabel", "0\ta\tb\tentailment"], bom=True)
    with pytest.raises(UsageError) as err:
        load_glue_dir(get_task("rte"), "train", tmp_path)
    assert err.value.field == str(path)
    assert "line 1: missing column 'sentence2'" in err.value.problem


def test_empty_file_and_header_only(tmp_path):
    write_rte(tmp_path, [])
    with pytest.raises(UsageError, match="empty file"):
        load_glue_dir(get_task("rte"), "train", tmp_path)
    write_rte(tmp_path, [RTE_HEADER])
    with pytest.raises(UsageError, match="no data rows"):
        load_glue_dir(get_task("rte"), "train", tmp_path)


def test_cola_header_row_is_rejected(tmp_path):
    """CoLA has no header: a header line would be read as data and fail on its label."""
    path = tmp_path / "CoLA" / "train.tsv"
    path.parent.mkdir()
    path.write_text("source\tlabel\toriginal\tsentence\ngj04\t1\t\tA fine sentence.\n")
    with pytest.raises(UsageError, match="line 1: unknown label 'label'"):
        load_glue_dir(get_task("cola"), "train", tmp_path)


# --- user files ------------------------------------------------------------------------------------------

ROWS = {
    "premise": ["He said \"yes\".", "null", "NA", "The cat sat."],
    "hypo": ["He agreed.", "nothing", "not available", "A cat sat."],
    "gold": ["entailment", "not_entailment", 1, 0],
}
EXPECTED_IDS = [0, 1, 1, 0]


def write_table(path: Path, frame: pd.DataFrame) -> Path:
    suffix = path.suffix
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".tsv":
        path.write_text("\t".join(frame.columns) + "\n"
                        + "".join("\t".join(map(str, row)) + "\n" for row in frame.itertuples(index=False)))
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in frame.to_dict(orient="records")))
    else:
        frame.to_parquet(path)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_load_file_formats_with_names_and_ids(tmp_path, suffix):
    frame = pd.DataFrame({"premise": ROWS["premise"], "hypo": ROWS["hypo"],
                          "gold": [str(v) for v in ROWS["gold"]] if suffix == ".parquet" else ROWS["gold"]})
    path = write_table(tmp_path / f"mine{suffix}", frame)
    ds = load_file(get_task("rte"), "train", path, ["premise", "hypo"], "gold")
    assert ds.text_a == ROWS["premise"] and ds.text_b == ROWS["hypo"]
    assert ds.labels.dtype == np.int64 and ds.labels.tolist() == EXPECTED_IDS
    assert ds.source == str(path) and (ds.task, ds.split) == ("rte", "train")


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_load_file_numeric_ids_and_scores(tmp_path, suffix):
    path = write_table(tmp_path / f"s{suffix}", pd.DataFrame({"text": ["good", "bad"], "y": [1, 0]}))
    ds = load_file(get_task("sst2"), "validation", path, ["text"], "y")
    assert ds.text_b is None and ds.labels.tolist() == [1, 0]
    path = write_table(tmp_path / f"r{suffix}", pd.DataFrame({"a": ["x", "y"], "b": ["z", "w"], "s": [4.25, 0.0]}))
    ds = load_file(get_task("stsb"), "train", path, ["a", "b"], "s")
    assert ds.labels.dtype == np.float32 and ds.labels.tolist() == [4.25, 0.0]


def test_load_file_errors(tmp_path):
    task = get_task("rte")
    path = write_table(tmp_path / "x.csv", pd.DataFrame({"premise": ["a", "b"], "hypo": ["c", "d"],
                                                        "gold": ["entailment", "perhaps"]}))
    with pytest.raises(UsageError, match=r"x\.csv: row 2: unknown label 'perhaps'"):
        load_file(task, "train", path, ["premise", "hypo"], "gold")
    with pytest.raises(UsageError, match=r"x\.csv: missing column 'hypothesis'"):
        load_file(task, "train", path, ["premise", "hypothesis"], "gold")
    with pytest.raises(UsageError, match="text_columns"):
        load_file(task, "train", path, ["premise", "hypo", "gold"], "gold")
    with pytest.raises(UsageError, match="file not found"):
        load_file(task, "train", tmp_path / "nope.csv", ["premise"], "gold")
    (tmp_path / "x.xlsx").write_text("")
    with pytest.raises(UsageError, match="unsupported file type"):
        load_file(task, "train", tmp_path / "x.xlsx", ["premise"], "gold")
    tsv = tmp_path / "x.tsv"
    tsv.write_text("premise\thypo\tgold\na\tb\tentailment\nc\td\n")
    with pytest.raises(UsageError, match=r"x\.tsv: line 3: expected 3 tab-separated fields, got 2"):
        load_file(task, "train", tsv, ["premise", "hypo"], "gold")


def test_load_file_rejects_missing_text(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"t": "fine", "label": 0}\n{"t": null, "label": 1}\n')
    with pytest.raises(UsageError, match="row 2: column 't' is not text"):
        load_file(get_task("sst2"), "train", path, ["t"], "label")


# --- the hub ---------------------------------------------------------------------------------------------


@pytest.fixture
def fake_hub(monkeypatch):
    import datasets

    calls = []

    def load_dataset(path, name=None, split=None, **kwargs):
        calls.append((path, name, split))
        if name == "mnli":
            return datasets.Dataset.from_dict({"premise": ["p0", "p1", "p2"], "hypothesis": ["h0", "h1", "h2"],
                                               "label": [2, 0, 1], "idx": [0, 1, 2]})
        if name == "stsb":
            return datasets.Dataset.from_dict({"sentence1": ["a", "b"], "sentence2": ["c", "d"],
                                               "label": [3.8, 0.0], "idx": [0, 1]})
        unlabelled = -1 if name == "cola" else 1  # -1 is how the hub marks a missing label
        return datasets.Dataset.from_dict({"sentence": ["good film", "bad film", "ok"], "label": [1, 0, unlabelled],
                                           "idx": [0, 1, 2]})

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


def test_load_hub_pairs_and_scores(fake_hub):
    ds = load_hub(get_task("mnli"), "validation_mismatched")
    assert fake_hub == [("nyu-mll/glue", "mnli", "validation_mismatched")]
    assert ds.text_a == ["p0", "p1", "p2"] and ds.text_b == ["h0", "h1", "h2"]
    assert ds.labels.dtype == np.int64 and ds.labels.tolist() == [2, 0, 1]
    assert ds.source == "hub:nyu-mll/glue/mnli/validation_mismatched"
    ds = load_hub(get_task("sts-b"), "train")
    assert fake_hub[-1] == ("nyu-mll/glue", "stsb", "train")
    assert ds.labels.dtype == np.float32 and ds.labels.tolist() == pytest.approx([3.8, 0.0])


def test_load_hub_rejects_unlabelled_rows(fake_hub):
    with pytest.raises(UsageError, match="hub:nyu-mll/glue/cola/train: row 3: unknown label -1"):
        load_hub(get_task("cola"), "train")
    assert fake_hub == [("nyu-mll/glue", "cola", "train")]


def test_load_hub_failure_is_a_usage_error(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("hub unreachable")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(UsageError, match="hub unreachable") as err:
        load_hub(get_task("rte"), "train")
    text = str(err.value)  # one line naming the local ways: a GLUE folder (flag, variable, sweep key) or own files
    assert "\n" not in text and "--glue-dir" in text and "$MAKD_GLUE_DIR" in text and "--train-file" in text


# --- load_split ------------------------------------------------------------------------------------------


def test_load_split_precedence(tmp_path, fake_hub):
    task = get_task("sst2")
    path = write_table(tmp_path / "mine.csv", pd.DataFrame({"sentence": ["x", "y"], "label": ["positive", 0]}))
    from_file = load_split(task, "train", glue_dir=FIXTURE_GLUE, data_file=path)  # default hub column names
    assert from_file.source == str(path) and from_file.labels.tolist() == [1, 0]
    from_dir = load_split(task, "train", glue_dir=FIXTURE_GLUE)
    assert from_dir.source == str(FIXTURE_GLUE / "SST-2" / "train.tsv")
    assert fake_hub == []
    from_hub = load_split(task, "train")
    assert from_hub.text_a == ["good film", "bad film", "ok"] and from_hub.text_b is None
    assert from_hub.source == "hub:nyu-mll/glue/sst2/train" and fake_hub == [("nyu-mll/glue", "sst2", "train")]


def test_load_split_subsamples_and_checks_options(tmp_path):
    task = get_task("sst2")
    full = load_split(task, "train", glue_dir=FIXTURE_GLUE)
    part = load_split(task, "train", glue_dir=FIXTURE_GLUE, max_samples=3, seed=1)
    assert part.digest() == subsample(full, 3, seed=1).digest() and len(part) == 3
    with pytest.raises(UsageError, match="text_columns: only applies together with data_file"):
        load_split(task, "train", glue_dir=FIXTURE_GLUE, text_columns=["sentence"])
    with pytest.raises(UsageError, match="max_samples"):
        load_split(task, "train", glue_dir=FIXTURE_GLUE, max_samples=0)


def test_parse_label_accepts_numpy_and_rejects_fractions():
    task = get_task("mnli")
    assert data.parse_label(task, np.int64(2)) == 2 and data.parse_label(task, 1.0) == 1
    assert data.parse_label(task, " contradiction ") == 2
    for bad in (1.5, 3, True, None, "²"):
        with pytest.raises(ValueError, match="unknown label"):
            data.parse_label(task, bad)

