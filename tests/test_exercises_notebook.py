"""examples/exercises.ipynb runs top to bottom, is kept without outputs, and its links reach the pages.

The notebook asserts its own facts as it goes (each first try fails its check with the diagnosis it
should get, each fix passes), so a cell that raises fails this test with the cell's traceback.
"""
import json
from pathlib import Path

import pytest

from test_docs import check_page, links

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "exercises.ipynb"


def test_the_notebook_is_stored_without_outputs():
    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert code and not [k for k, c in enumerate(code) if c.get("outputs") or c.get("execution_count") is not None]


def test_the_notebook_links_reach_pages_and_headings():
    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    text = "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    assert len(list(links(text))) >= 3
    problems = check_page(text, NOTEBOOK)
    assert not problems, "\n".join(problems)


def test_the_notebook_runs_top_to_bottom(monkeypatch, tmp_path):
    nbformat = pytest.importorskip("nbformat", reason="the notebook extra is not installed (pip install -e '.[notebook]')")
    nbclient = pytest.importorskip("nbclient", reason="the notebook extra is not installed (pip install -e '.[notebook]')")
    pytest.importorskip("ipykernel", reason="the notebook extra is not installed (pip install -e '.[notebook]')")
    monkeypatch.setenv("HYPOTHESIS_STORAGE_DIRECTORY", str(tmp_path))  # not examples/.hypothesis
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert text.count("FAIL") == 2 and "conv2d_backward: passed" in text and "im2col: passed" in text
