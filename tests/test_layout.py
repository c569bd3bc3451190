"""The package's layout rules, read from the source of every module with ``ast`` (imports inside
functions included):

* subpackages and top-level modules import each other in one direction: the graph of their
  imports has no cycle (imports under ``if TYPE_CHECKING:`` are annotations only and are left
  out), and it follows the layers of docs/design.rst;
* imports inside functions are for optional dependencies only (matplotlib, dask, distributed,
  tqdm, cloudpickle), never of pymemoe's own modules (which would hide a cycle);
* patsy is imported in ``pymemoe._design`` only;
* no module imports a private (underscore) name from another module, nor a private module of
  another subpackage (``families/_glmm_kernel.py`` belongs to ``families``);
* no module outside ``pymemoe.families`` tests a family by name (comparisons with
  ``"gaussian"``, ``"binomial"``, ``"poisson"``), by its ``has_scale`` or by its class;
* no module imports from the package's ``__init__``;
* warning classes are defined in ``exceptions.py`` only.
"""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pymemoe"
MODULES = {".".join(("pymemoe",) + p.relative_to(PACKAGE).with_suffix("").parts).removesuffix(
    ".__init__"): p for p in PACKAGE.rglob("*.py")}
OPTIONAL = {"matplotlib", "dask", "distributed", "tqdm", "cloudpickle"}
FAMILY_NAMES = {"gaussian", "binomial", "poisson"}
FAMILY_CLASSES = {"GaussianFamily", "GLMMFamily", "Binomial", "Poisson", "Distribution"}
# the layers of docs/design.rst, bottom first: a unit may import only from its own or a lower
# layer (a unit is a subpackage, or a top-level module)
LAYERS = [
    {"_linalg", "_version", "exceptions", "_tables", "datasets"},
    {"_execution", "_design"},
    {"_model"},
    {"families"},
    {"_estimation", "_predictive", "_relate"},
    {"prediction", "metrics"},
    {"diagnostics", "summary", "simulate"},
    {"plotting", "results"},
    {"model"},
    {"selection", "crossval", "blrt", "distributed", "three_step"},
    {"chunked", "predict", "prediction_results", "prediction_sets", "inference", "params"},
    {"pymemoe", "__main__"},
]


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def _package(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rsplit(".", 1)[0]


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            out |= {id(sub) for stmt in node.body for sub in ast.walk(stmt)}
    return out


def _imports(module: str):
    """(target module, imported names, in a function, under TYPE_CHECKING) of every import."""
    path = MODULES[module]
    tree = _tree(path)
    typing_only = _type_checking_nodes(tree)
    in_function = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            in_function |= {id(sub) for sub in ast.walk(node) if sub is not node}
    package = _package(module, path)
    for node in ast.walk(tree):
        flags = (id(node) in in_function, id(node) in typing_only)
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], *flags
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield target, [a.name for a in node.names], *flags


def _own_targets(module: str):
    """pymemoe modules imported by ``module`` (a name imported from a package counts as the
    submodule when it is one)."""
    for target, names, in_function, typing_only in _imports(module):
        if not target.startswith("pymemoe"):
            continue
        subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES]
        for sub in subs or [target]:
            yield sub, names, in_function, typing_only


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "pymemoe"


def test_the_layers_cover_every_unit():
    units = {_unit(m) for m in MODULES}
    layered = set().union(*LAYERS)
    assert units == layered, (units - layered, layered - units)


def test_imports_follow_the_layers_and_form_no_cycle():
    level = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}
    upward = []
    graph: dict[str, set[str]] = {}
    for module in MODULES:
        for target, _, _, typing_only in _own_targets(module):
            if typing_only or target not in MODULES:
                continue
            graph.setdefault(module, set()).add(target)
            a, b = _unit(module), _unit(target)
            if a != b and level[b] > level[a]:
                upward.append(f"{module} -> {target}")
    assert not upward, upward
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                raise AssertionError(f"import cycle: {' -> '.join(path + [dep])}")
            if state.get(dep) is None:
                visit(dep)
        path.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


def test_imports_inside_functions_are_optional_dependencies_only():
    offenders = [f"{module}: {target}" for module in MODULES
                 for target, _, in_function, _ in _imports(module)
                 if in_function and target.split(".")[0] not in OPTIONAL]
    assert not offenders, offenders


def test_patsy_is_imported_in_the_design_subpackage_only():
    users = sorted(m for m in MODULES
                   if any(t.split(".")[0] == "patsy" for t, *_ in _imports(m)))
    assert users and all(m.startswith("pymemoe._design.") for m in users), users


def test_no_private_names_or_private_modules_of_another_subpackage_are_imported():
    offenders = []
    for module in MODULES:
        package = _package(module, MODULES[module])
        for target, names, _, _ in _own_targets(module):
            offenders += [f"{module}: from {target} import {n}" for n in names
                          if n.startswith("_") and n != "__version__"]
            owner, last = target.rsplit(".", 1) if "." in target else ("", target)
            if last.startswith("_") and target in MODULES and owner != package \
                    and not MODULES[target].name == "__init__.py":
                offenders.append(f"{module}: imports {target}, private to {owner}")
    assert not offenders, offenders


def _family_tests(tree: ast.Module) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            for op in operands:
                values = ([op] if not isinstance(op, (ast.Tuple, ast.List, ast.Set))
                          else list(op.elts))
                if any(isinstance(v, ast.Constant) and v.value in FAMILY_NAMES for v in values):
                    found.append(ast.unparse(node))
        elif isinstance(node, ast.Attribute) and node.attr == "has_scale" \
                and "family" in ast.unparse(node.value):
            found.append(ast.unparse(node))
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "isinstance":
            classes = ast.unparse(node.args[1]) if len(node.args) > 1 else ""
            if any(name in classes for name in FAMILY_CLASSES):
                found.append(ast.unparse(node))
    return found


def test_no_family_is_tested_by_name_outside_the_families():
    offenders = {m: _family_tests(_tree(p)) for m, p in MODULES.items()
                 if not m.startswith("pymemoe.families")}
    offenders = {m: f for m, f in offenders.items() if f}
    assert not offenders, offenders


def test_the_family_check_finds_what_it_looks_for():
    """The rule above is not vacuous: it catches each way of testing a family by name."""
    code = ("if model.family.name == 'binomial': pass\n"
            "if family.has_scale: pass\n"
            "if kind in ('poisson', 'x'): pass\n"
            "if isinstance(f, GLMMFamily): pass\n"
            "if structure.has_scale: pass\n")
    assert len(_family_tests(ast.parse(code))) == 4


def test_no_module_imports_from_the_package_init():
    offenders = []
    for module in MODULES:
        if module in ("pymemoe", "pymemoe.__main__"):
            continue
        for target, names, _, _ in _imports(module):
            if target == "pymemoe":
                submodules = [n for n in names if f"pymemoe.{n}" not in MODULES]
                if submodules:
                    offenders.append(f"{module}: from pymemoe import {submodules}")
    assert not offenders, offenders


def test_warning_classes_live_in_exceptions():
    defined = {}
    for module, path in MODULES.items():
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.ClassDef) and any(
                    getattr(b, "id", getattr(b, "attr", "")).endswith("Warning") for b in node.bases):
                defined.setdefault(module, []).append(node.name)
    assert set(defined) == {"pymemoe.exceptions"}, defined


@pytest.mark.parametrize("module", sorted(m for m in MODULES if ".".join(m.split(".")[:2])
                                          in ("pymemoe._design", "pymemoe._estimation",
                                              "pymemoe._model", "pymemoe._predictive",
                                              "pymemoe._execution", "pymemoe._linalg",
                                              "pymemoe._relate")))
def test_internal_modules_say_what_they_hold(module):
    """Every internal module has a docstring and an ``__all__`` (its internal API)."""
    tree = _tree(MODULES[module])
    assert ast.get_docstring(tree), module
    if MODULES[module].name != "__init__.py":
        assert any(isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "__all__"
                                                     for t in n.targets) for n in tree.body), module
