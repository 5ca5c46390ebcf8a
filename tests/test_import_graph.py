"""No import circles inside makd/ and makd_sweep/ (issues 25, 44): module-level, function-level and `if TYPE_CHECKING:`
imports alike (an import inside a function or for a type hint still ties two modules together: neither can be
read, moved or tested without the other). A new circle fails here with the modules that form it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def modules() -> dict[str, Path]:
    found = {}
    for package in ("makd", "makd_sweep"):
        for path in (REPO / package).rglob("*.py"):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """module -> the makd/tune modules it imports (a name imported from a package counts as its submodule when
    there is one, else as the package)."""
    known = modules()

    def owner(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                    base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
            for target in targets:
                found = owner(target)
                if found and found != name:
                    graph[name].add(found)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def test_makd_and_tune_have_no_import_circles():
    assert circles(import_graph()) == []


def test_the_checker_finds_a_circle_through_a_function_level_import():
    graph = import_graph()
    assert "makd.train" in graph["makd.pipeline"]  # it reads the real imports
    assert "makd_sweep.sweep_config" in graph["makd_sweep.search.grid"]  # a type hint's (`if TYPE_CHECKING:`) import counts
    graph["makd.train"].add("makd.pipeline")  # as if train.py imported pipeline inside a function
    assert any({"makd.pipeline", "makd.train"} <= set(circle) for circle in circles(graph))


def tune_layers() -> tuple[dict[str, int], set[str]]:
    """ARCHITECTURE.md's "Layers inside makd_sweep/" list -> (module -> layer number, report/'s allowed makd_sweep modules)."""
    text = (REPO / "ARCHITECTURE.md").read_text()
    layers: dict[str, int] = {}
    for number, body in re.findall(r"^- layer (\d+), [\w ]+: (.*)$", text, re.M):
        for word in re.findall(r"`?([\w/.]+)`?", body.split(" (")[0]):
            name = "makd_sweep" if word == "makd_sweep/__init__.py" else "makd_sweep." + word.rstrip("/").replace("/", ".")
            layers[name] = int(number)
    report_reads = set(re.search(r"report/ \(of makd_sweep/ only ([\w ]+?):", text).group(1).replace(" and ", " ").split())
    return layers, {f"makd_sweep.{name}" for name in report_reads}


def layer_of(module: str, layers: dict[str, int]) -> int | None:
    """A module's layer: its own entry, else its package's (makd_sweep.search.grid is in search/'s); a module the list
    does not name (makd_sweep/ itself is no package entry) has none."""
    while module:
        if module in layers:
            return layers[module]
        module = module.rpartition(".")[0]
        if module == "makd_sweep":
            return None
    return None


def layer_violations(graph: dict[str, set[str]], layers: dict[str, int], report_reads: set[str]) -> list[str]:
    out = []
    for module, imports in sorted(graph.items()):
        if not module.startswith("makd_sweep"):
            continue
        mine = layer_of(module, layers)
        for target in sorted(t for t in imports if t.startswith("makd_sweep")):
            theirs = layer_of(target, layers)
            if mine is None or theirs is None:
                out.append(f"{module if mine is None else target}: in no layer of ARCHITECTURE.md")
            elif theirs > mine:
                out.append(f"{module} (layer {mine}) imports {target} (layer {theirs})")
            elif module.startswith("makd_sweep.report") and not target.startswith("makd_sweep.report") and target not in report_reads:
                out.append(f"{module} imports {target}: report/ reads only {sorted(report_reads)}")
    return out


def test_tune_modules_import_only_their_own_layer_or_below():
    """Issue 44: inside makd_sweep/, arrows point down ARCHITECTURE.md's layer list (TYPE_CHECKING and function-level
    imports included), and report/ reads only the experiment layout, so it works on a dir copied off a cluster."""
    layers, report_reads = tune_layers()
    graph = import_graph()
    tune_modules = {name for name in graph if name.startswith("makd_sweep")}
    assert set(layers) <= tune_modules and {layer_of(name, layers) for name in tune_modules} == set(range(1, 8))
    assert report_reads == {"makd_sweep.experiment_dir", "makd_sweep.storage"}
    assert layer_violations(graph, layers, report_reads) == []
    # the check finds an arrow that points up, and a report module reading past the layout
    graph["makd_sweep.experiment_dir"].add("makd_sweep.pack")
    graph["makd_sweep.report.html"].add("makd_sweep.loopback")
    graph["makd_sweep.cli"].add("makd_sweep.new_module")
    assert layer_violations(graph, layers, report_reads) == [
        "makd_sweep.new_module: in no layer of ARCHITECTURE.md",
        "makd_sweep.experiment_dir (layer 1) imports makd_sweep.pack (layer 3)",
        "makd_sweep.report.html imports makd_sweep.loopback: report/ reads only ['makd_sweep.experiment_dir', 'makd_sweep.storage']"]


def test_makd_installs_only_its_own_top_level_packages():
    """PyPI's `tune` (fugue-project) installs an import package named `tune`, which makd's sweep service was called
    before: the wheel's top-level packages are makd and makd_sweep, no name another project ships (docs/install.md)."""
    import tomllib

    from setuptools import find_packages

    found = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    packages = find_packages(str(REPO), include=found["include"])
    assert {p.split(".")[0] for p in packages} == {"makd", "makd_sweep"}
    assert "makd_sweep.report" in packages and not (REPO / "tune").exists()
