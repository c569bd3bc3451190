"""The package's layout rules, read from the source with ``ast``:

* patsy is imported by ``formula.py`` only (every question about formulas is asked there);
* no module imports a private (underscore) name from another module;
* no module imports from the package's ``__init__`` (``from . import x`` of a name defined
  there, or ``from pymemoe import ...``), which would be an import upwards;
* the module-level imports between pymemoe's modules form no cycle (in particular plotting
  and selection do not import each other at module level);
* warning classes are defined in ``exceptions.py`` only.
"""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pymemoe"
MODULES = {p.stem: p for p in PACKAGE.glob("*.py")}


def _tree(name: str) -> ast.Module:
    return ast.parse(MODULES[name].read_text(encoding="utf-8"))


def _imports(tree: ast.Module, module_level_only: bool = False):
    """(module, names, node) of every import in the tree (relative modules as written)."""
    nodes = tree.body if module_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], node
        elif isinstance(node, ast.ImportFrom):
            prefix = "." * node.level
            yield prefix + (node.module or ""), [a.name for a in node.names], node


def test_patsy_is_imported_by_formula_only():
    users = [name for name in MODULES
             if any(mod.split(".")[0] == "patsy" for mod, _, _ in _imports(_tree(name)))]
    assert users == ["formula"]


def test_no_private_names_are_imported_across_modules():
    offenders = []
    for name in MODULES:
        for mod, names, _ in _imports(_tree(name)):
            if mod.startswith(".") or mod.startswith("pymemoe"):
                offenders += [f"{name}: from {mod} import {n}" for n in names
                              if n.startswith("_") and n != "__version__"]
                last = mod.lstrip(".").split(".")[-1]
                if last.startswith("_"):
                    offenders.append(f"{name}: imports the private module {mod}")
    assert not offenders, offenders


def test_no_module_imports_from_the_package_init():
    offenders = []
    for name in MODULES:
        if name in ("__init__", "__main__"):
            continue
        for mod, names, _ in _imports(_tree(name)):
            if mod in (".", "pymemoe") and names:
                submodules = [n for n in names if n not in MODULES]
                if submodules:
                    offenders.append(f"{name}: from {mod} import {submodules}")
    assert not offenders, offenders


def _module_level_graph() -> dict[str, set[str]]:
    graph = {}
    for name in MODULES:
        deps = set()
        for mod, names, node in _imports(_tree(name), module_level_only=True):
            if mod.startswith(".") and mod != ".":
                deps.add(mod.lstrip(".").split(".")[0])
            elif mod == ".":
                deps.update(n for n in names if n in MODULES)
        graph[name] = deps - {name}
    return graph


def test_module_level_imports_have_no_cycle():
    graph = _module_level_graph()
    assert "selection" not in graph["plotting"] and "plotting" not in graph["selection"]
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if dep not in MODULES:
                continue
            if state.get(dep) == 1:
                raise AssertionError(f"import cycle: {' -> '.join(path + [dep])}")
            if state.get(dep) is None:
                visit(dep)
        path.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


def test_warning_classes_live_in_exceptions():
    defined = {}
    for name in MODULES:
        for node in ast.walk(_tree(name)):
            if isinstance(node, ast.ClassDef) and any(
                    getattr(b, "id", getattr(b, "attr", "")).endswith("Warning") for b in node.bases):
                defined.setdefault(name, []).append(node.name)
    assert set(defined) == {"exceptions"}, defined
