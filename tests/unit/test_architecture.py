"""The layers of DESIGN.md hold: no import cycle inside hpo/, imports only go down, modules stay small."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "hpo"
# Higher layers may import lower ones (and leaves), never the reverse; modules of one layer may import each
# other as long as no cycle forms. Leaf utilities (hpo/*.py: errors, units, paths, lifecycle, progress,
# redact) import only leaves. The estimator (memory) sits above train: its trace runs the trainer's own
# code on meta.
RANKS = {
    "__main__": 10,
    "commands": 9,
    "run": 8,
    "bench": 8,
    "results": 7,
    "trial": 6,
    "memory": 5,
    "agents": 5,
    "data": 5,
    "train": 4,
    "tracking": 3,
    "storage": 2,
    "device": 2,
    "config": 1,
}
LEAF = 0
MAX_LINES = 300


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, known: set[str]) -> set[str]:
    """hpo modules imported anywhere in ``path`` (function-level imports included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found |= {n for n in names if n in known}
    return found


@functools.cache
def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    edges = {}
    for name, path in mods.items():
        # importing hpo.x.y also runs hpo/x/__init__.py: a package counts as imported by its submodules' users
        edges[name] = {m for m in imports(path, known) if m != name and not name.startswith(m + ".")}
    return edges


def rank(module: str) -> int:
    parts = module.split(".")
    return RANKS.get(parts[1], LEAF) if len(parts) > 2 or parts[-1] in RANKS else LEAF


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None (depth-first search)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle_inside_hpo() -> None:
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_planted_cycle() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(edges) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def upward(module: str, edges: dict[str, set[str]]) -> list[str]:
    """The modules ``module`` imports from a higher layer."""
    return sorted(m for m in edges.get(module, ()) if rank(m) > rank(module) and m != "hpo")


@pytest.mark.parametrize("module", sorted(graph()))
def test_imports_only_go_down_the_layers(module: str) -> None:
    up = upward(module, graph())
    assert not up, f"{module} (layer {rank(module)}) imports higher layers: {up}"


def test_the_layer_check_finds_a_planted_upward_import() -> None:
    edges = {
        "hpo.train.model": {"hpo.memory.budget", "hpo.config.catalog"},  # the edge the move removed
        "hpo.memory.trace_model": {"hpo.train.model"},  # the trace runs the trainer's code: down
        "hpo.config.study": {"hpo.redact", "hpo.storage.study"},  # config below storage
        "hpo.units": {"hpo.device.gpu"},  # a leaf importing a package
    }
    assert upward("hpo.train.model", edges) == ["hpo.memory.budget"]
    assert upward("hpo.memory.trace_model", edges) == []
    assert upward("hpo.config.study", edges) == ["hpo.storage.study"]
    assert upward("hpo.units", edges) == ["hpo.device.gpu"]


CROSS_CUTTING = {"__init__", "__main__", "errors", "units", "paths", "lifecycle", "progress", "redact"}


def test_only_the_cross_cutting_few_lie_at_the_top() -> None:
    """Everything else lives in a package that says what it holds (config, device, storage, tracking, ...)."""
    loose = {p.stem for p in PACKAGE.glob("*.py")} - CROSS_CUTTING
    assert not loose, f"move {sorted(loose)} into a package (hpo/config, hpo/device, hpo/storage, ...)"


def test_every_package_has_a_layer() -> None:
    """A new package gets a rank here, so that it cannot pass as a leaf that everything may import."""
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    missing = packages - set(RANKS)
    assert not missing, f"give {sorted(missing)} a layer in RANKS"


def test_every_module_is_small() -> None:
    big = {name: n for name, p in modules().items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines (split them by concept): {big}"


def test_commands_import_no_heavy_library_at_start() -> None:
    """Command modules parse, call one core function and print: torch, optuna and mlflow load lazily."""
    for path in (PACKAGE / "commands").glob("*.py"):
        tree = ast.parse(path.read_text())
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        names = {a.name for n in top if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in top if isinstance(n, ast.ImportFrom)}
        heavy = {n for n in names if n.split(".")[0] in {"torch", "optuna", "mlflow", "transformers"}}
        assert not heavy, f"{path.name} imports {heavy} at module level"
        assert not any(
            n.startswith(("hpo.run.", "hpo.trial", "hpo.train"))
            for n in names - {"hpo.run.protocol", "hpo.trial.keys"}  # constants only (help texts)
        )
