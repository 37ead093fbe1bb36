"""The package layout: packages by concern, imports only downwards, no cycles, nothing configured in vain."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

# Which packages of `ablations` each package may import (records is the bottom, job the top).
ALLOWED: dict[str, set[str]] = {
    "records": set(),
    "model": {"records"},
    "data": {"records"},
    "train": {"records", "model", "data"},
    "eval": {"records", "model"},
    "search": {"records", "model"},
    "device": {"records", "model"},
    "job": {"records", "model", "data", "train", "eval", "search", "device"},
}
# Third-party modules heavy enough to import inside the function that needs them (with a reason).
HEAVY = (
    "lightning",
    "lm_eval",
    "transformers",
    "datasets",
    "wandb",
    "huggingface_hub",
    "pyarrow",
    "executorch",
    "torchao",
)
SOURCES = ("ablations", "analysis", "hydra_plugins", "run.py")


def python_files() -> list[Path]:
    files: list[Path] = []
    for source in SOURCES:
        path = REPO / source
        files += [path] if path.is_file() else sorted(path.rglob("*.py"))
    return files


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, bool, int]]:
    """(imported module, inside a function?, line) for every import statement of a file."""
    tree = ast.parse(path.read_text())
    in_function: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            in_function |= {id(sub) for sub in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in in_function, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, id(node) in in_function, node.lineno))
    return found


def internal_graph() -> dict[str, set[str]]:
    names = {module_name(p) for p in python_files()}
    graph: dict[str, set[str]] = {}
    for path in python_files():
        targets = set()
        for imported, _, _ in imports(path):
            # `from ablations.model import x` may name a module; resolve to the longest known prefix
            while imported and imported not in names:
                imported = imported.rpartition(".")[0]
            if imported:
                targets.add(imported)
        graph[module_name(path)] = targets - {module_name(path)}
    return graph


def test_no_import_cycles() -> None:
    graph = internal_graph()
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                cycle = [*path[path.index(target) :], target]
                pytest.fail("import cycle: " + " → ".join(cycle))
            if target not in state:
                visit(target)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert len(graph) > 40  # the walk saw the code base


def test_packages_import_only_downwards() -> None:
    wrong = []
    for module, targets in internal_graph().items():
        parts = module.split(".")
        if parts[0] != "ablations" or len(parts) < 3 or parts[-1] == "__main__":
            continue  # entry points (ablations.budget, python -m ablations.device, run.py) may import all
        for target in targets:
            target_parts = target.split(".")
            if target_parts[0] != "ablations" or target_parts[1] == parts[1]:
                continue
            if len(target_parts) < 3 or target_parts[1] not in ALLOWED[parts[1]]:
                wrong.append(f"{module} imports {target}")
    assert not wrong, "imports against the layering (see ablations/__init__.py):\n" + "\n".join(wrong)


def has_reason(lines: list[str], line: int) -> bool:
    """A comment on the import's line, or on the line above its block of consecutive imports."""
    index = line - 1
    while index > 0 and lines[index - 1].strip().startswith(("import ", "from ")):
        if "#" in lines[index]:
            return True
        index -= 1
    return "#" in lines[index] or lines[index - 1].strip().startswith("#")


def test_function_level_imports_are_heavy_third_party_with_a_reason() -> None:
    wrong = []
    for path in python_files():
        lines = path.read_text().splitlines()
        for imported, in_function, line in imports(path):
            # the job's entry point loads the stages (lightning, lm-eval) only once a job runs
            lazy = imported.startswith(HEAVY) or (
                module_name(path) == "ablations.job.entry" and imported == "ablations.job.stages"
            )
            if in_function and not (lazy and has_reason(lines, line)):
                wrong.append(f"{path.relative_to(REPO)}:{line}: {imported}")
    assert not wrong, "function-level imports that are not heavy third-party with a reason:\n" + "\n".join(
        wrong
    )


def test_every_subpackage_says_what_lives_there_and_what_it_may_import() -> None:
    for package in ALLOWED:
        doc = ast.get_docstring(ast.parse((REPO / "ablations" / package / "__init__.py").read_text()))
        assert doc and "import" in doc, f"ablations/{package}/__init__.py needs a docstring with its imports"


def target_paths(node: object, path: str = "") -> list[str]:
    """Dotted paths of every `_target_` key in a parsed YAML tree."""
    if isinstance(node, dict):
        found = [path] if "_target_" in node else []
        for key, value in node.items():
            found += target_paths(value, f"{path}.{key}" if path else str(key))
        return found
    if isinstance(node, list):
        return [p for item in node for p in target_paths(item, path)]
    return []


def test_no_target_is_configured_that_nothing_instantiates() -> None:
    """`_target_` is Hydra's instantiate key: only Hydra's callbacks and user callbacks are instantiated."""
    offenders = []
    for path in sorted((REPO / "conf").rglob("*.yaml")) + sorted((REPO / "sweeps").rglob("*.yaml")):
        for where in target_paths(yaml.safe_load(path.read_text())):
            if not where.startswith(("hydra.callbacks.", "callbacks.")):
                offenders.append(f"{path.relative_to(REPO)}: {where or '(top)'}")
    assert not offenders
