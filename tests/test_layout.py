"""The code's layout keeps its promises: plugins use only the public API, no import cycles."""

from __future__ import annotations

import ast
from pathlib import Path

import genbench

from conftest import ROOT

HARNESS = ROOT / "harness"


def _imports(path: Path, package: str):
    """(module imported, names) for every import in ``path``, resolved to absolute names.

    Imports under ``if TYPE_CHECKING:`` are left out: they never run.
    """
    tree = ast.parse(path.read_text())
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
               for n in ast.walk(node)}
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            yield base, [a.name for a in node.names]


def _module_name(path: Path) -> str:
    rel = path.relative_to(HARNESS).with_suffix("")
    parts = ["genbench", *rel.parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_builtin_plugins_import_only_the_public_api():
    public = set(genbench.__all__)
    found = []
    for path in sorted((ROOT / "plugins").glob("*.py")):
        for module, names in _imports(path, "genbench.plugins"):
            if not module.startswith("genbench") or module.startswith("genbench.plugins"):
                continue
            ok = module in ("genbench.api",) or module.startswith("genbench.api.") or \
                (module == "genbench" and set(names) <= public)
            if not ok:
                found.append(f"{path.name}: {module} {names}")
    assert found == []
    assert len(list((ROOT / "plugins").glob("*.py"))) >= 5


def test_no_import_cycles():
    modules = {_module_name(p): p for p in HARNESS.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for module, names in _imports(path, package):
            if module not in modules:
                continue
            for n in names:  # `from package import submodule` names a module
                if f"{module}.{n}" in modules:
                    edges.add(f"{module}.{n}")
            if not any(f"{module}.{n}" in modules for n in names) and module != name:
                edges.add(module)
        graph[name] = edges - {name, "genbench"}  # the top package only re-exports, lazily
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "active"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "active":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []
    assert {"genbench.api", "genbench.engine", "genbench.results", "genbench.render"} <= set(modules)


def test_the_public_api_is_one_place():
    import genbench.api as api

    names = {n for n, m in genbench._API.items() if m == "api"}
    assert names <= set(api.__all__) and {"Model", "Metric", "Dataset", "hookimpl"} <= names
    for name in names:
        assert getattr(genbench, name) is getattr(api, name)
