"""The docs and the code point at each other; these tests keep both directions true.

* Every relative link in ``docs/`` reaches a file that exists, and an ``#anchor``
  on a Markdown link names a heading of that page (GitHub's heading slugs).
* A link whose text is a backticked name and whose target is a ``.py`` file,
  such as [`Conv2d.backward`](../minicnn/nn/conv.py#L88-L106), names something
  that file defines: a class, a function, a module-level constant, or a method
  or class attribute written ``Class.name`` (read with ``ast``, not imported),
  and carries the lines of that definition, so that it opens where the code
  is (``python docs/update_links.py`` writes them after code moves).
* Every public layer, loss, optimizer and scheduler has a heading of its own
  name somewhere in ``docs/``, on the page its module's ``Docs:`` line names.
* Every ``Docs: docs/page.md#anchor`` line in a docstring of ``minicnn/``
  names a page and a heading that exist, and that page links back to the file.
* The ``>>>`` examples in the pages run and print what the pages say.
* ``docs/figures.py`` draws every picture of ``docs/images/`` from the code, the
  diagrams there are the ones today's kernels give, and a page shows each.

The checkers are plain functions of text, so the tests at the bottom plant
broken links in a string and require the checkers to report them.
"""
from __future__ import annotations

import ast
import doctest
import importlib.util
import json
import re
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

import minicnn.nn
import minicnn.optim
from minicnn import nn
from strategies import using

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))

# Containers and errors of minicnn.nn are infrastructure, described in the
# overview rather than given a section of their own.
NOT_SECTIONED = {"Module", "Parameter", "Sequential", "StateDictError"}


# --- reading Markdown --------------------------------------------------------

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
# [text](target): the text may hold backticks or one level of brackets.
LINK = re.compile(r"\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\(([^()\s]+)\)")
DOCS_LINE = re.compile(r"^\s*Docs:\s*(.+?)\s*$", re.M)
DOCS_TARGET = re.compile(r"^docs/([\w.-]+\.md)(?:#([\w-]+))?$")
NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)?$")


def prose_lines(text: str):
    """(line number, line) for every line outside fenced code blocks."""
    inside = False
    for number, line in enumerate(text.splitlines(), start=1):
        if FENCE.match(line):
            inside = not inside
            continue
        if not inside:
            yield number, line


def slugify(heading: str) -> str:
    """GitHub's anchor for a heading: markup and punctuation dropped, lower case, spaces to hyphens."""
    text = LINK.sub(r"\1", heading)           # [text](url) -> text
    text = text.replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)      # keeps letters, digits, '_', '-' and spaces
    return text.replace(" ", "-")


def anchors(text: str) -> list[str]:
    """The anchors of a page's headings, duplicates numbered as GitHub does (x, x-1, x-2, ...)."""
    seen: dict[str, int] = {}
    result = []
    for _, line in prose_lines(text):
        match = HEADING.match(line)
        if not match:
            continue
        slug = slugify(match.group(2))
        if slug in seen:
            seen[slug] += 1
            result.append(f"{slug}-{seen[slug]}")
        else:
            seen[slug] = 0
            result.append(slug)
    return result


def links(text: str):
    """(line number, link text, target) for every inline link outside fenced code."""
    for number, line in prose_lines(text):
        for match in LINK.finditer(line):
            yield number, match.group(1), match.group(2)


# --- reading Python ------------------------------------------------------------

def _docs_script(name: str):
    """A script of docs/ (figures.py, update_links.py) as a module."""
    spec = importlib.util.spec_from_file_location(f"docs_{name}", DOCS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LINKS = _docs_script("update_links")


def defined_names(path: Path) -> frozenset[str]:
    """Classes, functions and module-level constants of ``path``, plus ``Class.member`` for their members."""
    return frozenset(LINKS.definition_spans(path))


def docstrings(path: Path):
    """Every docstring of a module: its own, its classes' and its functions'."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node)
            if doc:
                yield doc


def docs_lines(path: Path) -> list[str]:
    """The targets named by the ``Docs:`` lines in ``path``'s docstrings, e.g. ``docs/layers.md#relu``."""
    found = []
    for doc in docstrings(path):
        for match in DOCS_LINE.finditer(doc):
            found += [item.strip() for item in match.group(1).split(",")]
    return found


# --- the checkers ----------------------------------------------------------------

def check_page(text: str, page: Path) -> list[str]:
    """Problems with the links of one page (``page`` locates relative targets)."""
    problems = []
    for number, label, target in links(text):
        where = f"{page.name}:{number}: [{label}]({target})"
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        if not path_part:  # an anchor on this page
            if anchor not in anchors(text):
                problems.append(f"{where}: {page.name} has no heading with anchor #{anchor}")
            continue
        resolved = (page.parent / path_part).resolve()
        if not resolved.exists():
            shown = resolved.relative_to(ROOT) if resolved.is_relative_to(ROOT) else resolved
            problems.append(f"{where}: no such file {shown}")
            continue
        named = resolved.suffix == ".py" and label.startswith("`") and label.endswith("`")
        name = label.strip("`").removesuffix("()") if named else None
        if anchor and resolved.suffix == ".md" and anchor not in anchors(resolved.read_text(encoding="utf-8")):
            problems.append(f"{where}: {resolved.name} has no heading with anchor #{anchor}")
        elif anchor and resolved.suffix != ".md" and not (named and NAME.match(name)):
            problems.append(f"{where}: only a link named by its code, like [`Conv2d.backward`](...conv.py#L1-L9), "
                            f"may carry lines (they are checked against that name)")
        if named:
            if name.endswith(".py"):
                if not path_part.endswith(name):
                    problems.append(f"{where}: the link text names {name}, the link goes to {path_part}")
            elif not NAME.match(name):
                problems.append(f"{where}: `{name}` is not a name (expected `func`, `Class` or `Class.method`)")
            elif name not in defined_names(resolved):
                problems.append(f"{where}: {resolved.relative_to(ROOT)} defines no `{name}`")
            else:
                lines = LINKS.line_anchor(LINKS.definition_spans(resolved)[name])
                if anchor != lines:
                    problems.append(f"{where}: `{name}` is at #{lines} of {resolved.name}, the link "
                                    f"{'says #' + anchor if anchor else 'has no lines'} "
                                    f"(python docs/update_links.py fixes this)")
    return problems


def check_docs_target(target: str) -> list[str]:
    """Problems with one ``Docs:`` target such as ``docs/layers.md#relu``."""
    match = DOCS_TARGET.match(target)
    if not match:
        return [f"'{target}' is not of the form docs/page.md or docs/page.md#anchor"]
    page, anchor = DOCS / match.group(1), match.group(2)
    if not page.is_file():
        return [f"'{target}': there is no page docs/{match.group(1)}"]
    if anchor and anchor not in anchors(page.read_text(encoding="utf-8")):
        return [f"'{target}': docs/{match.group(1)} has no heading with anchor #{anchor}"]
    return []


def links_to(page: Path, code_file: Path) -> bool:
    """Whether ``page`` has a link to ``code_file``."""
    text = page.read_text(encoding="utf-8")
    for _, _, target in links(text):
        path_part = target.partition("#")[0]
        if path_part and (page.parent / path_part).resolve() == code_file.resolve():
            return True
    return False


# --- the tests: the real docs --------------------------------------------------

CODE_FILES = sorted((ROOT / "minicnn").rglob("*.py"))
CODE_WITH_DOCS_LINES = [p for p in CODE_FILES if docs_lines(p)]


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_the_docs_exist():
    names = {p.name for p in PAGES}
    assert {"index.md", "overview.md", "convolution.md", "layers.md", "losses.md", "regularisation.md",
            "optimizers.md", "gradcheck.md", "backends.md", "data.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_reach_files_headings_and_names(page):
    problems = check_page(page.read_text(encoding="utf-8"), page)
    assert not problems, "\n".join(problems)


def test_the_walkthrough_links_reach_pages_and_headings():
    """The notebook's Markdown cells point into docs/ as the pages do; the same checker follows them."""
    notebook = ROOT / "examples" / "walkthrough.ipynb"
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    text = "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    assert len(list(links(text))) >= 5, "the walkthrough should point its reader to the pages"
    problems = check_page(text, notebook)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("page", [p for p in PAGES if p.name != "index.md"], ids=lambda p: p.name)
def test_every_page_links_to_code(page):
    """Each page (but the index, a map of the pages) ties its formulas to code with a linked name."""
    text = page.read_text(encoding="utf-8")
    named = [t for _, label, t in links(text) if label.startswith("`") and t.partition("#")[0].endswith(".py")]
    assert named, f"{page.name} links no code name: link at least one, like [`Conv2d`](../minicnn/nn/conv.py)"


def test_index_links_every_page():
    index = DOCS / "index.md"
    missing = [p.name for p in PAGES if p != index and not links_to(index, p)]
    assert not missing, f"docs/index.md does not link to: {', '.join(missing)}"


def _public_classes():
    """(name, defining module file) of every layer, loss, optimizer and scheduler that needs a section."""
    result = []
    for module, names in ((minicnn.nn, minicnn.nn.__all__), (minicnn.optim, minicnn.optim.__all__)):
        for name in names:
            obj = getattr(module, name)
            if isinstance(obj, type) and name not in NOT_SECTIONED:
                result.append((name, Path(sys.modules[obj.__module__].__file__)))
    return result


PUBLIC = _public_classes()


@lru_cache(maxsize=None)
def _all_anchors() -> dict[str, list[str]]:
    """anchor -> the pages that have it."""
    where: dict[str, list[str]] = {}
    for page in PAGES:
        for anchor in anchors(page.read_text(encoding="utf-8")):
            where.setdefault(anchor, []).append(page.name)
    return where


@pytest.mark.parametrize("name,module_file", PUBLIC, ids=[n for n, _ in PUBLIC])
def test_every_public_class_has_a_section(name, module_file):
    pages = _all_anchors().get(name.lower())
    assert pages, f"no heading '{name}' (anchor #{name.lower()}) in any page of docs/"
    targets = docs_lines(module_file)
    if targets:  # the module says where its docs are: the section must be on one of those pages
        named_pages = {DOCS_TARGET.match(t).group(1) for t in targets if DOCS_TARGET.match(t)}
        assert named_pages & set(pages), (
            f"{name} is documented in {', '.join(pages)}, but {_rel(module_file)} says "
            f"'Docs: {', '.join(targets)}'")


def test_docs_lines_are_found():
    """The scanner sees the Docs: lines (so the next test is not vacuous)."""
    assert _rel(ROOT / "minicnn" / "nn" / "conv.py") in {_rel(p) for p in CODE_WITH_DOCS_LINES}


@pytest.mark.parametrize("code_file", CODE_WITH_DOCS_LINES, ids=_rel)
def test_docs_lines_point_at_existing_headings(code_file):
    problems = [f"{_rel(code_file)}: {p}" for t in docs_lines(code_file) for p in check_docs_target(t)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("code_file", CODE_WITH_DOCS_LINES, ids=_rel)
def test_pages_named_by_docs_lines_link_back(code_file):
    pages = {DOCS / m.group(1) for t in docs_lines(code_file) if (m := DOCS_TARGET.match(t))}
    missing = [p.name for p in sorted(pages) if p.is_file() and not links_to(p, code_file)]
    assert not missing, (f"{_rel(code_file)} sends readers to {', '.join(missing)}, "
                         f"which should link back to ../{_rel(code_file)}")


def python_blocks(text: str) -> str:
    """The contents of the page's fenced ``python`` blocks, one after another."""
    return "\n\n".join(re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M))


EXAMPLE_PAGES = [p for p in PAGES if ">>> " in python_blocks(p.read_text(encoding="utf-8"))]


@pytest.mark.parametrize("page", EXAMPLE_PAGES, ids=lambda p: p.name)
def test_examples_in_the_pages_run(page):
    """The ``>>>`` lines of each python block run, in order, and print what the page shows."""
    parser, runner = doctest.DocTestParser(), doctest.DocTestRunner(
        optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    test = parser.get_doctest(python_blocks(page.read_text(encoding="utf-8")), {}, page.name, str(page), 0)
    report = []
    runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)


# --- the shapes of the documented network at batch 64 ---------------------------------

SHAPE = re.compile(r"\((\d+(?:, \d+)*),?\)|(\d+(?: x \d+)+)")


def shapes_in(cell: str) -> list[tuple[int, ...]]:
    """The shapes written in a table cell, in order: ``64 x 32 x 14 x 14`` and ``(288, 12544)`` alike."""
    return [tuple(int(d) for d in re.split(r", | x ", m.group(1) or m.group(2))) for m in SHAPE.finditer(cell)]


def shape_tables(text: str, heading: str) -> list[dict[str, list[list[tuple[int, ...]]]]]:
    """The tables under ``## heading``: for each, layer name (the first cell, unquoted) -> shapes of each other cell."""
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    tables, current = [], None
    for line in section.splitlines():
        if not line.startswith("|"):
            current = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if current is None:
            current = {}
            tables.append(current)
        elif not set(cells[0]) <= set("-: "):
            current[cells[0].strip("`")] = [shapes_in(c) for c in cells[1:]]
    return tables


def network_shapes(batch: int = 64):
    """The arrays of one training step of MnistCNN, as the code makes them: (forward rows, backward rows)."""
    from minicnn.models import MnistCNN
    from minicnn.nn import functional

    model = MnistCNN(seed=0)
    x = np.random.default_rng(0).standard_normal((batch, 1, 28, 28)).astype(np.float32)
    target = np.arange(batch) % 10
    def kept(module):  # the arrays its forward saved for backward (save_for_backward)
        return [a.shape for a in module._cache[1] if isinstance(a, np.ndarray)]

    forward, inputs = {}, {}
    for name, layer in list(model.named_modules())[1:]:
        inputs[name] = x
        y = layer(x)
        inside = []
        kind = type(layer).__name__
        if kind == "Conv2d":
            (PH, PW) = layer.padding
            col = functional.im2col(x, layer.kernel_size, layer.stride, layer.padding)
            cols = col.transpose(1, 0, 2).reshape(col.shape[1], -1)
            w_mat = layer.weight.data.reshape(layer.out_channels, -1)
            inside = [x.shape[:2] + (x.shape[2] + 2 * PH, x.shape[3] + 2 * PW), col.shape, cols.shape,
                      w_mat.shape, cols.shape, (w_mat @ cols).shape]
        elif kind == "Linear":
            inside = [x.shape, layer.weight.data.T.shape]
        forward[name] = [[x.shape], inside, [y.shape], kept(layer)]
        x = y
    loss = nn.NLLLoss()
    loss(x, target)
    forward["NLLLoss"] = [[x.shape, target.shape], [], [], kept(loss)]
    grad = loss.backward()
    backward = {"NLLLoss": [[], [], [grad.shape], []]}
    for name, layer in reversed(list(model.named_modules())[1:]):
        dx = layer.backward(grad)
        kind, inside = type(layer).__name__, []
        if kind == "Conv2d":
            x = inputs[name]
            (PH, PW), OC = layer.padding, layer.out_channels
            cols_shape = forward[name][1][2]
            dy = grad.reshape(grad.shape[0], OC, -1).transpose(1, 0, 2).reshape(OC, -1)
            w_mat = layer.weight.data.reshape(OC, -1)
            dcols = w_mat.T @ dy
            inside = [dy.shape, dy.shape, cols_shape[::-1], w_mat.T.shape, dy.shape,
                      forward[name][1][1], x.shape[:2] + (x.shape[2] + 2 * PH, x.shape[3] + 2 * PW)]
            assert dcols.shape == cols_shape
        elif kind == "MaxPool2d":
            inside = forward[name][3]                    # the argmax it routes by
        elif kind == "Linear":
            inside = [grad.T.shape, inputs[name].shape, grad.shape, layer.weight.shape]
        grads = [p.grad.shape for p in layer.parameters()]
        backward[name] = [[grad.shape], inside, [dx.shape], grads]
        grad = dx
    return forward, backward


def test_the_shape_tables_are_the_shapes_the_code_makes():
    """docs/overview.md lists every array of a training step at batch 64; run the step and compare each cell."""
    documented = shape_tables((DOCS / "overview.md").read_text(encoding="utf-8"), "Every array at batch 64")
    assert len(documented) == 2, "expected a forward and a backward table"
    with using("numpy"):  # the reference's arrays (the Numba convolution keeps its input, not col)
        computed_tables = network_shapes(64)
    for table, computed, direction in zip(documented, computed_tables, ("forward", "backward")):
        assert list(table) == list(computed), f"{direction} table: rows {list(table)}, the network {list(computed)}"
        for layer, cells in table.items():
            assert cells == computed[layer], f"{direction} table, {layer}: says {cells}, the code makes {computed[layer]}"


def test_shapes_are_read_from_both_notations():
    assert shapes_in("padded 64 x 32 x 16 x 16; `col` (64, 288, 196); bias (64,); 3 x 3 windows") == [
        (64, 32, 16, 16), (64, 288, 196), (64,), (3, 3)]


# --- the pictures: drawn from the code ----------------------------------------------

FIGURES = _docs_script("figures")
PICTURES = [*FIGURES.DIAGRAMS, FIGURES.FEATURE_MAPS]


def test_the_figure_script_draws_every_picture(tmp_path):
    """docs/figures.py runs (as CI runs it) and writes each picture as a PNG."""
    assert FIGURES.main(["--out", str(tmp_path)]) == 0
    for name in PICTURES:
        with PIL.Image.open(tmp_path / name) as image:
            assert image.format == "PNG" and min(image.size) > 200, (name, image.format, image.size)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(PICTURES)  # no temporary files left


def test_the_figure_script_names_a_bad_out_folder(tmp_path, capsys):
    not_a_folder = tmp_path / "file.png"
    not_a_folder.write_bytes(b"")
    with pytest.raises(SystemExit) as exit_:
        FIGURES.main(["--out", str(not_a_folder)])
    assert exit_.value.code == 2
    assert f"--out {not_a_folder} is a file, expected a folder" in capsys.readouterr().err


@pytest.mark.parametrize("name", list(FIGURES.DIAGRAMS))
def test_the_committed_pictures_show_what_the_kernels_compute(name):
    """Each diagram in docs/images/ records the digest of the arrays it was drawn from; they must be today's."""
    make, _ = FIGURES.DIAGRAMS[name]
    with PIL.Image.open(DOCS / "images" / name) as image:
        recorded = image.info.get("Source")
    assert recorded == FIGURES.source_digest(make()), (
        f"docs/images/{name} was drawn from other kernel output than the code gives now: "
        f"run python docs/figures.py")


def test_a_changed_example_changes_the_digest():
    from minicnn import diagrams

    assert diagrams.im2col_example(4, 2, 1).digest() == diagrams.im2col_example(4, 2, 1).digest()
    assert diagrams.im2col_example(4, 2, 1).digest() != diagrams.im2col_example(4, 2, 2).digest()
    assert diagrams.maxpool_example(2, 2).digest() != diagrams.maxpool_example(2, 1).digest()


@pytest.mark.parametrize("name", PICTURES)
def test_every_picture_is_shown_on_a_page(name):
    shown = [p.name for p in PAGES if any(t == f"images/{name}" for _, _, t in links(p.read_text(encoding="utf-8")))]
    assert shown, f"no page of docs/ shows images/{name}"


# --- the tests: the checkers catch what they should ----------------------------

PLANTED_PAGE = DOCS / "planted.md"  # never written: only its folder is used, to resolve links


def _problems(markdown: str) -> list[str]:
    return check_page(markdown, PLANTED_PAGE)


def _lines(path: str, name: str) -> str:
    return LINKS.line_anchor(LINKS.definition_spans((DOCS / path).resolve())[name])


CONV, KERNELS = "../minicnn/nn/conv.py", "../minicnn/backend/numpy_kernels.py"


def test_a_good_link_passes():
    assert _problems(f"See [`Conv2d.backward`]({CONV}#{_lines(CONV, 'Conv2d.backward')}) and [`im2col`]"
                     f"({KERNELS}#{_lines(KERNELS, 'im2col')}), [`conv.py`]({CONV}), "
                     f"[ReLU](layers.md#relu).") == []


def test_update_links_adds_the_lines_and_keeps_code_blocks():
    page = "[`Conv2d.forward`](../minicnn/nn/conv.py#L1-L2) and `x`\n```\n[`Conv2d`](../minicnn/nn/conv.py)\n```\n"
    fixed = LINKS.relink(page, PLANTED_PAGE)
    assert fixed == page.replace("#L1-L2", "#" + _lines(CONV, "Conv2d.forward"))
    assert _problems(fixed) == []


def test_definition_spans_cover_the_whole_definition(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("X = 1\n\n\n@decorator\ndef f():\n    return 1\n\n\nclass C:\n    z = (1,\n         2)\n\n"
                      "    def m(self):\n        pass\n")
    assert LINKS.definition_spans(source) == {"X": (1, 1), "f": (4, 6), "C": (9, 14), "C.z": (10, 11),
                                              "C.m": (13, 14)}


@pytest.mark.parametrize("markdown,expected", [
    ("[`Conv2d`](../minicnn/nn/convolution.py)", "no such file"),
    ("[`Conv2d.backward`](../minicnn/nn/conv.py)", "has no lines (python docs/update_links.py fixes this)"),
    ("[`Conv2d.backward`](../minicnn/nn/conv.py#L1-L9)", "the link says #L1-L9"),
    ("[`Conv2d.backward`](../minicnn/nn/conv.py#backward)", "the link says #backward"),
    ("[`Conv2d.backwards`](../minicnn/nn/conv.py#L1-L2)", "defines no `Conv2d.backwards`"),
    ("[`col2img`](../minicnn/backend/numpy_kernels.py)", "defines no `col2img`"),
    ("[`Conv2d`](../minicnn/nn/pooling.py)", "defines no `Conv2d`"),
    ("[`y = W x`](../minicnn/nn/conv.py)", "is not a name"),
    ("[`pooling.py`](../minicnn/nn/conv.py)", "the link text names pooling.py"),
    ("[ReLU](layers.md#rectifier)", "has no heading with anchor #rectifier"),
    ("[the forward pass](../minicnn/nn/conv.py#L40)", "only a link named by its code"),
    ("[here](#nowhere)\n\n# Somewhere", "has no heading with anchor #nowhere"),
])
def test_a_planted_bad_link_is_reported(markdown, expected):
    problems = _problems(markdown)
    assert len(problems) == 1 and expected in problems[0], problems


def test_links_in_code_blocks_are_not_checked():
    assert _problems("```python\n# [`nothing`](../nowhere.py)\n```\n") == []


def test_external_links_are_not_checked():
    assert _problems("[PyTorch](https://pytorch.org/docs/stable/nn.html)") == []


@pytest.mark.parametrize("heading,slug", [
    ("MaxPool2d", "maxpool2d"),
    ("`Conv2d.backward`: the input", "conv2dbackward-the-input"),
    ("Backward, step by step", "backward-step-by-step"),
    ("LogSoftmax + NLLLoss = softmax minus one-hot", "logsoftmax--nllloss--softmax-minus-one-hot"),
    ("col2im on a GPU: gather, not scatter", "col2im-on-a-gpu-gather-not-scatter"),
    ("The [adjoint](https://example.org) of im2col", "the-adjoint-of-im2col"),
])
def test_slugs_follow_github(heading, slug):
    assert slugify(heading) == slug


def test_duplicate_headings_are_numbered_and_code_is_skipped():
    text = "# A\n## Notation\n```\n# Notation\n```\n## Notation\n"
    assert anchors(text) == ["a", "notation", "notation-1"]


@pytest.mark.parametrize("target,expected", [
    ("docs/layers.md#relu", None),
    ("docs/losses.md", None),
    ("docs/layer.md#relu", "there is no page docs/layer.md"),
    ("docs/layers.md#rectifier", "has no heading with anchor #rectifier"),
    ("layers.md#relu", "is not of the form"),
])
def test_docs_target_checker(target, expected):
    problems = check_docs_target(target)
    if expected is None:
        assert problems == []
    else:
        assert len(problems) == 1 and expected in problems[0], problems


def test_docs_lines_are_read_from_docstrings(tmp_path):
    source = tmp_path / "layer.py"
    source.write_text('"""A layer.\n\nDocs: docs/layers.md#relu, docs/losses.md#softmax\n"""\n'
                      'x = "Docs: docs/not-a-docstring.md"\n'
                      'class A:\n    """Docs: docs/layers.md#linear"""\n')
    assert docs_lines(source) == ["docs/layers.md#relu", "docs/losses.md#softmax", "docs/layers.md#linear"]


def test_defined_names_reads_classes_methods_functions_and_constants(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("X: int = 1\nY = 2\nA, B = 3, 4\ndef f():\n    def inner(): pass\n"
                      "class C:\n    z = 3\n    def m(self): pass\n    @property\n    def p(self): pass\n")
    assert defined_names(source) == {"X", "Y", "A", "B", "f", "C", "C.z", "C.m", "C.p"}
