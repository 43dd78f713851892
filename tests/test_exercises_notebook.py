"""examples/exercises.ipynb runs top to bottom, is kept without outputs, and its links reach the pages.

The notebook asserts its own facts as it goes (each first try fails its check with the diagnosis it
should get, each fix passes), so a cell that raises fails this test with the cell's traceback.
"""
import json
from pathlib import Path

from strategies import run_notebook
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
    monkeypatch.setenv("HYPOTHESIS_STORAGE_DIRECTORY", str(tmp_path))  # not examples/.hypothesis
    outputs = run_notebook(NOTEBOOK)
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert text.count("FAIL") == 2 and "conv2d_backward: passed" in text and "im2col: passed" in text
