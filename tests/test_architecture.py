"""The package's layering (docs/architecture.md), checked on the code's own imports.

Each module may import only modules on its own layer or below; nothing imports the command
line; there is no import cycle; no module grows past 600 lines; and no import of the package's
own modules hides inside a function (the old way of dodging cycles), except in ``liteunet/cli/``,
whose sub-commands load the library (and torch) only when they run, so that ``liteunet --help``
and ``--version`` answer at once.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "liteunet"

#: Layer of each top-level name under liteunet/, from the bottom up (docs/architecture.md).
LAYERS = [
    {"_version", "_device", "_checks", "data", "points", "metrics", "slides", "object_size", "complexity", "samples", "model_card"},
    {"layers"},
    {"pretrained"},
    {"models"},
    {"inference"},
    {"localization"},
    {"train", "train_logs", "teacher", "evaluate", "release", "release_object_size", "zoo", "publish", "bench", "io_formats", "outputs", "hub", "tta", "wsi"},
    {"__init__"},
    # The package's users: the command line and the napari plugin (both read the public API).
    {"cli", "napari", "__main__"},
]
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """``(imported liteunet module, line, inside a function)`` for each import of the package's own."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = _module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = []
    nested = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) for n in ast.walk(f)}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [f"{target}.{a.name}" for a in node.names] if not node.module else [target]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            if name == "liteunet" or name.startswith("liteunet."):
                found.append((name, node.lineno, id(node) in nested))
    return found


FILES = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_module_has_a_layer():
    missing = sorted({_top(_module_name(p)) for p in FILES} - set(RANK))
    assert not missing, f"add {missing} to LAYERS here and to docs/architecture.md"


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_imports_run_down_the_layers(path):
    here = _module_name(path)
    problems = []
    for target, line, in_function in _imports(path):
        top = _top(target) if target != "liteunet" else "__init__"
        if top == "cli" and _top(here) not in ("cli", "__main__"):
            problems.append(f"line {line}: {target}: nothing in the library imports the command line")
        elif RANK.get(top, 0) > RANK[_top(here)]:
            problems.append(f"line {line}: {target} is on a higher layer than {here}")
        if in_function and _top(here) != "cli":
            problems.append(f"line {line}: {target} imported inside a function")
    assert not problems, "\n".join(problems)


def test_no_import_cycle():
    modules = {_module_name(p): p for p in FILES}

    def owner(target: str) -> str | None:
        while target and target not in modules:  # `from .x import name`: the module x
            target = target.rpartition(".")[0]
        return target or None

    graph = {m: set() for m in modules}
    for name, path in modules.items():
        for target, _, _ in _imports(path):
            dep = owner(target)
            if dep and dep != name:
                graph[name].add(dep)
    # Depth-first search for a back edge.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            pytest.fail("import cycle: " + " -> ".join(cycle))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_no_module_is_a_grab_bag(path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= 600, f"{path.name} has {lines} lines; split it by purpose"
