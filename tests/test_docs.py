"""The Sphinx documentation builds without a single warning.

Runs ``python -m sphinx -W --keep-going -b html docs <tmp>`` (warnings are errors), so a page or
a package docstring that Sphinx or numpydoc cannot parse fails the test suite, and so does a
figure that a page shows but the stored notebooks lack. The build fits no model and needs no
network; it takes about ten seconds. Skipped when Sphinx or numpydoc is
not installed (both are in the ``test`` extra).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_docs_build_without_warnings(tmp_path):
    pytest.importorskip("sphinx")
    pytest.importorskip("numpydoc")
    out, doctrees = tmp_path / "html", tmp_path / "doctrees"
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html",
           "-d", str(doctrees), str(DOCS), str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (
        f"sphinx-build failed (exit {proc.returncode}):\n{proc.stderr[-6000:]}")
    for page in ("index", "installation", "quickstart", "definitions", "coming_from",
                 "case_study", "simulation_study", "user_guide/model", "user_guide/options",
                 "user_guide/starts",
                 "user_guide/inference", "user_guide/prediction", "user_guide/choosing_k",
                 "user_guide/model_checking", "user_guide/tables",
                 "user_guide/binary_and_count", "user_guide/three_step", "api/pymemoe",
                 "api/developers", "design"):
        assert (out / f"{page}.html").is_file(), f"{page}.html was not built"
    # pictures where people would rather look than read: the case study's figures and the
    # plot each user-guide page describes, taken from the stored executed notebook
    shows = {"case_study": ["figure-comparison", "figure-trajectories", "figure-posterior",
                            "figure-fit", "figure-residuals", "figure5", "figure-patient"],
             "user_guide/prediction": ["figure-trajectories", "figure-patient"],
             "user_guide/model_checking": ["figure-residuals", "figure-fit"],
             "user_guide/choosing_k": ["figure-comparison"],
             "user_guide/binary_and_count": ["glmm-figure-binary", "glmm-figure-posterior",
                                             "glmm-figure-counts"]}
    for page, figures in shows.items():
        html = (out / f"{page}.html").read_text(encoding="utf-8")
        for figure in figures:
            assert f"_images/{figure}.png" in html, f"{page} does not show {figure}"
            image = out / "_images" / f"{figure}.png"
            assert image.is_file() and image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    api = (out / "api" / "pymemoe.html").read_text(encoding="utf-8")
    for name in ("pymemoe.MEMoE.from_formula", "pymemoe.MEMoE.fit",
                 "pymemoe.MEMoEResults.summary", "pymemoe.MEMoEResults.prediction_set"):
        assert f'id="{name}"' in api, f"{name} is missing from the API reference"


def _readme_layout() -> dict[str, str]:
    """The README's layout block: each entry (a module, a few modules, or a subpackage with
    its modules after the last colon) and its text, continuation lines included."""
    text = (DOCS.parent / "README.md").read_text(encoding="utf-8")
    block = text.split("## Layout", 1)[1].split("```text", 1)[1].split("```", 1)[0]
    entries: dict[str, str] = {}
    name = None
    for line in block.splitlines()[2:]:          # after "pymemoe/"
        if not line.strip():
            continue
        if line.startswith("  ") and not line.startswith("   "):
            name, _, rest = line.strip().partition("  ")
            entries[name] = rest.strip()
        elif name is not None:
            entries[name] += " " + line.strip()
    return entries


def test_readme_layout_names_every_module_and_nothing_else():
    """The README's Layout section cannot drift from the package: every module is named
    there (a top-level module by its file, a subpackage's modules after its entry's last
    colon), and every name there exists."""
    package = DOCS.parent / "pymemoe"
    entries = _readme_layout()
    named_files = {f.strip() for key in entries if key.endswith(".py") or "," in key
                   for f in key.split(",")}
    top = {p.name for p in package.glob("*.py")}
    assert top == named_files, (top - named_files, named_files - top)
    subpackages = {p.parent.name for p in package.glob("*/__init__.py")}
    listed = {key.rstrip("/") for key in entries if key.endswith("/")}
    assert subpackages == listed, (subpackages ^ listed)
    for sub in sorted(subpackages):
        text = entries[sub + "/"]
        modules = {p.stem for p in (package / sub).glob("*.py") if p.stem != "__init__"}
        named = set()
        if modules or ":" in text:
            tail = text.rsplit(":", 1)[1]
            named = {part.split("(")[0].strip() for part in tail.split(",")}
        assert modules == named, (sub, modules - named, named - modules)
