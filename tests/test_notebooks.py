"""The notebooks: the PBCseq case study (notebooks/pbcseq.ipynb), the joint models of PBCseq
(notebooks/joint.ipynb, notebooks/make_joint.py) and the worked examples of
binomial and Poisson experts (notebooks/binary_and_count.ipynb) are stored executed with the
analysis' parameters (their cells are those of notebooks/make_pbcseq.py and
notebooks/make_binary_count.py, their figures are there), and they execute with small
parameters.

The notebook's cell tagged ``parameters`` holds the values a user would run; the test appends
small ones (few EM starts and folds, few quadrature nodes) to it before executing, so each
notebook runs in about a minute. The kernel is this interpreter (``sys.executable``), through a
kernel spec written to a temporary directory, so the test does not depend on which kernels are
installed on the machine.

Needs nbformat, nbclient and ipykernel (and matplotlib); skipped when they are missing.
"""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
PBCSEQ = NOTEBOOKS / "pbcseq.ipynb"
KERNEL = "pymemoe-test-python"
SMALL = {"N_STARTS": 3, "N_FOLDS": 3, "K_MAX": 3}
GLMM = NOTEBOOKS / "binary_and_count.ipynb"
GLMM_SMALL = {"N_STARTS": 2, "NAGQ": 3, "K_MAX": 2, "AGQ_GRID": (1, 3)}


def _tagged(nb, tag: str) -> list:
    return [c for c in nb.cells if tag in c.get("metadata", {}).get("tags", [])]


def _one(nb, tag: str):
    cells = _tagged(nb, tag)
    assert len(cells) == 1, f"expected one cell tagged {tag!r}, found {len(cells)}"
    return cells[0]


def _text(cell) -> str:
    """All text a code cell produced: streams, and text/plain of results and displays."""
    parts = []
    for out in cell.get("outputs", []):
        if out["output_type"] == "stream":
            parts.append(out["text"])
        elif out["output_type"] in ("execute_result", "display_data"):
            parts.append(out.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def _has_png(cell) -> bool:
    return any("image/png" in out.get("data", {}) for out in cell.get("outputs", [])
               if out["output_type"] in ("execute_result", "display_data"))


def _stored_as_built(path: Path, generator: str, figures) -> "nbformat.NotebookNode":
    """The stored notebook, checked: its cells are those its generator writes, every code cell
    executed without error, and it holds ``figures``."""
    built = _generator(generator).build()
    stored = nbformat.read(str(path), as_version=4)
    assert [(c.cell_type, c.source) for c in stored.cells] == \
        [(c.cell_type, c.source) for c in built.cells], \
        f"notebooks/{path.name} is stale: run python notebooks/{generator}.py --execute"
    code = [c for c in stored.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code), \
        f"store the notebook executed: python notebooks/{generator}.py --execute"
    assert not _errors(stored)
    for tag in figures:
        assert _has_png(_one(stored, tag)), f"the stored notebook lacks the figure {tag!r}"
    return stored


def _errors(nb) -> list:
    """The error outputs of a notebook's code cells."""
    return [out for c in nb.cells if c.cell_type == "code" for out in c.get("outputs", [])
            if out["output_type"] == "error"]


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    """A kernel spec running ipykernel in this interpreter, found through JUPYTER_PATH."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "pymemoe tests", "language": "python"}))
    mp = pytest.MonkeyPatch()
    mp.setenv("JUPYTER_PATH", str(root))
    mp.setenv("JUPYTER_PLATFORM_DIRS", "1")
    yield
    mp.undo()


def _execute_small(path: Path, small: dict):
    nb = nbformat.read(str(path), as_version=4)
    params = _one(nb, "parameters")
    overrides = "\n".join(f"{k} = {v!r}" for k, v in small.items())
    params.source += f"\n\n# test suite: small values\n{overrides}\n"
    client = nbclient.NotebookClient(nb, kernel_name=KERNEL, timeout=300,
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()
    return nb


def _generator(name: str):
    spec = importlib.util.spec_from_file_location(name, NOTEBOOKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pbcseq_executed(kernel_env):
    return _execute_small(PBCSEQ, SMALL)


@pytest.fixture(scope="module")
def glmm_executed(kernel_env):
    return _execute_small(GLMM, GLMM_SMALL)


FIGURES = ("figure-comparison", "figure-trajectories", "figure-posterior", "figure-fit",
           "figure-residuals", "figure5", "figure-patient")


def test_pbcseq_notebook_matches_its_generator_and_is_stored_executed():
    stored = _stored_as_built(PBCSEQ, "make_pbcseq", FIGURES)
    numbers = _text(_one(stored, "summary-numbers"))
    assert "N_STARTS = 20, N_FOLDS = 10" in numbers


def test_pbcseq_notebook_runs(pbcseq_executed):
    nb = pbcseq_executed
    assert not _errors(nb)
    assert "BIC" in _text(_one(nb, "comparison-table"))
    summary = _text(_one(nb, "summary"))
    assert "Mixed effects mixture of experts" in summary and "robust" in summary
    assert "pmse_dynamic" in _text(_one(nb, "crossval"))
    assert "MoE" in _text(_one(nb, "criteria"))
    assert "empirical coverage" in _text(_one(nb, "figure5-sets"))
    assert _has_png(_one(nb, "figure5"))
    assert "\\begin{tabular}" in _text(_one(nb, "export"))
    assert "\\toprule" in _text(_one(nb, "export"))
    for tag in FIGURES:
        assert _has_png(_one(nb, tag)), tag
    assert "Expert 1" in _text(_one(nb, "expert-table"))
    assert "LMM" in _text(_one(nb, "summary-col")) and "MEMoE" in _text(_one(nb, "summary-col"))
    assert "mean_se" in _text(_one(nb, "expert-means"))
    numbers = _text(_one(nb, "summary-numbers"))
    assert "chosen number of experts (BIC)" in numbers and "N_STARTS = 3" in numbers


GLMM_FIGURES = ("glmm-figure-binary", "glmm-figure-posterior", "glmm-figure-counts")


def test_binary_and_count_notebook_matches_its_generator_and_is_stored_executed():
    stored = _stored_as_built(GLMM, "make_binary_count", GLMM_FIGURES)
    assert "N_STARTS = 10, NAGQ = 10, K_MAX = 3" in _text(_one(stored, "glmm-numbers"))


def test_binary_and_count_notebook_runs(glmm_executed):
    nb = glmm_executed
    assert not _errors(nb)
    assert "glmer llf" in _text(_one(nb, "glmm-bacteria-glmer"))
    assert "binomial, logit link, AGQ 3" in _text(_one(nb, "glmm-sim-summary"))
    assert "poisson, log link, AGQ 3" in _text(_one(nb, "glmm-poisson-summary"))
    assert "numerical integration" in _text(_one(nb, "glmm-bacteria-laplace"))
    assert "BIC" in _text(_one(nb, "glmm-bacteria-compare"))
    assert "mean_ci_lower" in _text(_one(nb, "glmm-sim-predict"))
    assert "prediction sets are intervals of a density" in _text(_one(nb, "glmm-prediction-sets"))
    assert "no error" not in _text(_one(nb, "glmm-errors"))
    for tag in GLMM_FIGURES:
        assert _has_png(_one(nb, tag)), tag
    assert "N_STARTS = 2" in _text(_one(nb, "glmm-numbers"))


JOINT = NOTEBOOKS / "joint.ipynb"
JOINT_SMALL = {"N_STARTS": 2, "K_MAX": 2, "N_DRAWS": 20, "N_FOLDS": 2}
JOINT_FIGURES = ("joint-figure-events", "joint-figure-fit", "joint-figure-dynamic")


@pytest.fixture(scope="module")
def joint_executed(kernel_env):
    return _execute_small(JOINT, JOINT_SMALL)


def test_joint_notebook_matches_its_generator_and_is_stored_executed():
    stored = _stored_as_built(JOINT, "make_joint", JOINT_FIGURES)
    assert "N_STARTS = 10, K_MAX = 4, N_DRAWS = 500, N_FOLDS = 5" in _text(
        _one(stored, "joint-numbers"))


def test_joint_notebook_runs(joint_executed):
    nb = joint_executed
    assert not _errors(nb)
    assert "Weibull hazards of transplant, death" in _text(_one(nb, "joint-summary"))
    assert "hazard ratio" in _text(_one(nb, "joint-hazards"))
    assert "trajectories alone" in _text(_one(nb, "joint-posteriors"))
    assert "P(death) upper" in _text(_one(nb, "joint-dynamic"))
    assert "no error" not in _text(_one(nb, "joint-errors"))
    assert "auc" in _text(_one(nb, "joint-accuracy"))
    for tag in JOINT_FIGURES:
        assert _has_png(_one(nb, tag)), tag
    assert "N_STARTS = 2" in _text(_one(nb, "joint-numbers"))
