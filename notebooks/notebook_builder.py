"""What the notebook generators share: collecting cells, building a notebook with stable cell
ids, executing it in this interpreter, and the command line (``--execute``, output path)."""
from __future__ import annotations

import json
import os
import sys
import tempfile
import textwrap
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}


class Cells:
    """The cells of one notebook, in order; ``md`` and ``code`` append one."""

    def __init__(self, id_prefix: str) -> None:
        self.id_prefix = id_prefix
        self.cells: list = []

    def md(self, text: str) -> None:
        self.cells.append(new_markdown_cell(textwrap.dedent(text).strip("\n")))

    def code(self, text: str, tags: tuple[str, ...] = ()) -> None:
        cell = new_code_cell(textwrap.dedent(text).strip("\n"))
        if tags:
            cell.metadata["tags"] = list(tags)
        self.cells.append(cell)

    def build(self) -> nbformat.NotebookNode:
        """The notebook, with stable cell ids (``<prefix>-00``, ...) and no outputs."""
        nb = new_notebook(cells=[nbformat.from_dict(c) for c in self.cells])
        for i, cell in enumerate(nb.cells):
            cell.id = f"{self.id_prefix}-{i:02d}"
        nb.metadata["kernelspec"] = dict(KERNELSPEC)
        nb.metadata["language_info"] = {"name": "python"}
        nbformat.validate(nb)
        return nb


def execute(nb: nbformat.NotebookNode, timeout: int = 3600) -> nbformat.NotebookNode:
    """Run every cell in this interpreter (a kernel spec in a temporary folder) and keep the
    outputs, without the timing metadata that would change on every run."""
    from nbclient import NotebookClient

    kernel = "pymemoe-build"
    with tempfile.TemporaryDirectory() as root:
        spec = Path(root) / "kernels" / kernel
        spec.mkdir(parents=True)
        (spec / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "pymemoe", "language": "python"}))
        saved = os.environ.get("JUPYTER_PATH")
        os.environ["JUPYTER_PATH"] = root
        try:
            NotebookClient(nb, kernel_name=kernel, timeout=timeout,
                           resources={"metadata": {"path": str(HERE)}}).execute()
        finally:
            if saved is None:
                os.environ.pop("JUPYTER_PATH", None)
            else:
                os.environ["JUPYTER_PATH"] = saved
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def main(build, default_path: Path, argv: list[str] | None = None) -> int:
    """``python make_X.py [--execute] [path]``: write the notebook built by ``build()`` to
    ``path`` (default ``default_path``), executed with ``--execute``."""
    args = list(sys.argv[1:] if argv is None else argv)
    run = "--execute" in args
    args = [a for a in args if a != "--execute"]
    path = Path(args[0]) if args else default_path
    nb = build()
    if run:
        nb = execute(nb)
    nbformat.write(nb, str(path))
    print(f"wrote {path}" + (" (executed)" if run else ""))
    return 0
