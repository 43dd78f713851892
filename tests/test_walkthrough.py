"""examples/walkthrough.ipynb runs top to bottom, on a small slice of MNIST, and is kept without outputs.

The notebook asserts its own facts as it goes (the layer's product equals the
layer, softmax minus one-hot, the hand-written Adam step, the gradient check),
so a cell that raises fails this test with the cell's traceback.
"""
import json
from pathlib import Path

from strategies import run_notebook

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "walkthrough.ipynb"


def test_the_notebook_is_stored_without_outputs():
    """Outputs (pictures, timings) would bloat the repository and go stale: the stored cells have none."""
    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert code, "the walkthrough has no code cells"
    with_output = [k for k, c in enumerate(code) if c.get("outputs") or c.get("execution_count") is not None]
    assert not with_output, (f"code cells {with_output} of {NOTEBOOK.name} hold outputs: clear them "
                             f"(jupyter nbconvert --clear-output --inplace, or the front end's 'Clear All Outputs')")


def test_the_notebook_runs_top_to_bottom(monkeypatch):
    monkeypatch.setenv("MINICNN_WALKTHROUGH_TRAIN", "640")      # ten batches: seconds, not minutes
    monkeypatch.setenv("MINICNN_WALKTHROUGH_TEST", "1000")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    outputs = run_notebook(NOTEBOOK)
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "test accuracy" in text and "on 1000 images" in text, text[-2000:]
    assert "True" in text  # the gradient check's result
    pictures = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.data]
    assert len(pictures) >= 6, f"expected the digits, im2col (twice), col2im, the feature maps (twice) and the confusion matrix, got {len(pictures)} pictures"
