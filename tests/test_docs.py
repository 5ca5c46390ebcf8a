"""The documentation holds: the README is a front page, every link and anchor resolves, and every command a doc
shows in a ```bash block is either run by a named test or listed here with the reason no test can run it."""

from __future__ import annotations

import re

import pytest

from tests.docs import DOCS, REPO, shown_commands

# command as shown (comments dropped, continuation lines joined) -> the test that runs it, or why none does
RUN_BY = {
    "make demo": "tests/test_make_demo.py::test_make_demo_runs_the_quickstart_and_a_rerun_reprints_it",
    "make test": ".ci/run runs it on a fresh clone: CI itself",
    "makd distill --task rte --teacher zoo:minilm-l6 --student 2x128 --loss taylor "
    "--lam 0.5 --epochs 1 --max-train-samples 256":
        "tests/test_real_glue.py::test_the_documented_distill_command_twice_second_run_skips_the_teacher",
    "makd finetune-teacher --task rte --teacher zoo:minilm-l6 --max-train-samples 200 --epochs 1":
        "tests/test_real_glue.py::test_the_documented_finetune_teacher_command_runs_as_written",
    "makd data glue --out glue --tasks rte,mrpc": "tests/test_glue_folder.py::test_the_documented_command_runs_as_written",
    "makd leaderboard results/glue-cpu/*.csv --within 2":
        "tests/test_within.py::test_the_documented_command_answers_on_the_committed_results",
    "makd leaderboard results/glue-cpu/*.csv --costs results/glue-cpu/tables/costs.csv --within 2 --cost latency":
        "tests/test_within.py::test_the_documented_latency_command_reads_the_re_measured_costs",
    "makd leaderboard runs/quickstart":
        "tests/test_report_html.py::test_a_toy_sweep_writes_its_report_and_the_documented_report_commands_work_as_printed",
    "makd leaderboard results/glue-cpu/*.csv runs/quickstart --csv leaderboard.csv --trials-csv trials.csv "
    "--markdown table2.md --plot lambda.png":
        "tests/test_report_html.py::test_a_toy_sweep_writes_its_report_and_the_documented_report_commands_work_as_printed",
    "makd report results/glue-cpu/trials-*.csv -o report.html":
        "tests/test_report_html.py::test_a_toy_sweep_writes_its_report_and_the_documented_report_commands_work_as_printed",
    "makd report runs/quickstart -o report.html":
        "tests/test_report_html.py::test_a_toy_sweep_writes_its_report_and_the_documented_report_commands_work_as_printed",
    "makd leaderboard runs/quickstart --html report.html":
        "tests/test_report_html.py::test_a_toy_sweep_writes_its_report_and_the_documented_report_commands_work_as_printed",
    "bash cluster/local.sh up && source /tmp/makd-cluster/env":
        "tests/test_cluster_readme.py::test_the_documented_cluster_commands_run_as_printed",
    ".venv/bin/makd submit configs/local-cluster.yaml --wait":
        "tests/test_cluster_readme.py::test_the_documented_cluster_commands_run_as_printed",
    ".venv/bin/makd jobs": "tests/test_cluster_readme.py::test_the_documented_cluster_commands_run_as_printed",
    '.venv/bin/makd logs "$(.venv/bin/makd jobs --last)"':
        "tests/test_cluster_readme.py::test_the_documented_cluster_commands_run_as_printed",
    "bash cluster/local.sh down": "tests/test_cluster_readme.py::test_the_documented_cluster_commands_run_as_printed",
    ".venv/bin/makd sweep configs/lm-toy.yaml":
        "tests/test_lm_sweep.py::test_the_documented_toy_lm_sweep_runs_as_written",
    ".venv/bin/python -m bench.gpu --device cpu --out /tmp/makd-bench-gpu-cpu":
        "tests/test_bench_smoke.py::test_gpu_benchmark_runs_at_toy_size_on_cpu_exactly_as_the_docs_show",
}
NOT_RUN = {  # each doc says so beside the command
    "makd submit configs/gpu-cluster-table2.yaml --address http://HEAD:8265": "a GPU cluster's head",
    "makd jobs": "a cluster (its local twin, .venv/bin/makd jobs, is run)",
    "makd logs JOB_ID --follow": "a cluster's job id",
    "makd stop JOB_ID": "a cluster's job id (tests/test_cluster_jobs.py stops a local cluster's job)",
    "ray get-auth-token --generate": "several machines on a LAN",
    "RAY_AUTH_MODE=token ray start --head --port=6379 --node-ip-address=HEAD_LAN_IP": "several machines on a LAN",
    "RAY_AUTH_MODE=token ray start --address=HEAD_LAN_IP:6379": "several machines on a LAN",
    "RAY_AUTH_MODE=token makd sweep CONFIG --address HEAD_LAN_IP:6379 --glue-dir /shared/glue":
        "several machines on a LAN",
    "python -m bench.gpu": "a GPU (bench/device.sh runs it on the project's GPU box)",
    ".venv/bin/python -m bench.lm_cache": "minutes of CPU (its toy-size command runs in tests/test_bench_smoke.py)",
}


def test_the_readme_is_a_front_page():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines: reference and how-to pages belong in docs/"
    headings = [line for line in lines if line.startswith("## ")]
    assert headings[:3] == ["## Install", "## The two commands", "## The one fact to read every result with"]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("doc", DOCS)
def test_every_link_and_anchor_resolves(doc):
    text = (REPO / doc).read_text()
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        file = (REPO / doc).parent / path if path else REPO / doc
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md":
            anchors = {_slug(h) for h in re.findall(r"(?m)^#+ (.*)$", file.read_text())}
            if anchor not in anchors:
                broken.append(f"{target}: no heading with that anchor")
    assert not broken, f"{doc}: {broken}"


def test_every_shown_command_is_run_by_a_named_test_or_says_why_not():
    shown = {(doc, command) for doc in DOCS for command in shown_commands(doc)}
    unlisted = sorted(f"{doc}: {command}" for doc, command in shown if command not in RUN_BY | NOT_RUN)
    assert not unlisted, f"commands no test runs and no reason given: {unlisted}"
    assert not set(RUN_BY) - {command for _, command in shown}, "RUN_BY lists commands no doc shows any more"
    for command, where in RUN_BY.items():
        if "::" not in where:
            continue
        path, name = where.split("::")
        assert re.search(rf"(?m)^def {name}\(", (REPO / path).read_text()), f"{command}: {where} does not exist"


def test_the_leaderboard_column_table_lists_every_column_in_order():
    """docs/reports.md, "Leaderboard columns": one row per column of leaderboard.csv, as the code writes them."""
    from makd_sweep.report.rank import LEADERBOARD_COLUMNS

    text = (REPO / "docs" / "reports.md").read_text()
    section = text.split("### Leaderboard columns", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `(\w+)` \|", section, flags=re.M)
    assert documented == LEADERBOARD_COLUMNS


FILE_NAMES = ("html", "csv", "json", "jsonl", "md", "py", "yaml", "png", "txt", "sh")


def _resolves(name: str) -> bool:
    """A dotted name as ARCHITECTURE.md writes it (relative to makd/ or makd_sweep/, or a Class.attribute): importable."""
    import dataclasses
    import importlib

    parts = name.split(".")
    if parts[0][0].isupper():  # Class.attr: the module that defines the class
        pattern = re.compile(rf"^class {parts[0]}\b", re.M)
        found = [p for top in ("makd", "makd_sweep") for p in (REPO / top).rglob("*.py") if pattern.search(p.read_text())]
        if not found:
            return False
        module = ".".join(found[0].relative_to(REPO).with_suffix("").parts)
        parts = [*module.split("."), *parts]
    candidates = [parts] if parts[0] in ("makd", "makd_sweep") else [["makd", *parts], ["makd_sweep", *parts]]
    for dotted in candidates:
        for cut in range(len(dotted), 0, -1):
            try:
                obj = importlib.import_module(".".join(dotted[:cut]))
            except ImportError:
                continue
            for attr in dotted[cut:]:
                fields = {f.name for f in dataclasses.fields(obj)} if dataclasses.is_dataclass(obj) else set()
                if attr in fields:
                    obj = None
                    continue
                if not hasattr(obj, attr):
                    break
                obj = getattr(obj, attr)
            else:
                return True
            break
    return False


def test_architecture_md_names_only_things_that_exist():
    """Every path and every dotted name (`search.base.SWEPT`, `TaskData.spec`) ARCHITECTURE.md mentions in code
    spans exists in the code: the map stays true when code moves."""
    text = (REPO / "ARCHITECTURE.md").read_text()
    paths = set(re.findall(r"`((?:makd|makd_sweep|tests|bench|cluster|results|configs|docs|scripts)/[\w./-]*)`", text))
    names = {n for n in re.findall(r"`([A-Za-z_]\w*(?:\.\w+)+)`", text) if n.rsplit(".", 1)[1] not in FILE_NAMES}
    assert len(paths) >= 10 and len(names) >= 10
    missing = sorted(p for p in paths if not (REPO / p).exists()) + sorted(n for n in names if not _resolves(n))
    assert not missing, missing
