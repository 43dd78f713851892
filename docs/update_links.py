"""Point every link to a named piece of code at its lines: ``python docs/update_links.py``.

A link whose text is a backticked name and whose target is a ``.py`` file, such as
[`Conv2d.backward`](../minicnn/nn/conv.py), opens the file at the top; a learner then hunts
for the name.  This script rewrites each such link in docs/*.md to carry the lines of that
definition, ``../minicnn/nn/conv.py#L88-L106`` (GitHub highlights them), reading the spans
with ``ast``: ``def``/``class`` from its first line (decorators included) to its last,
a constant's assignment, ``Class.member`` inside its class.  Links whose name the file does
not define are left for tests/test_docs.py to report.  Run it after moving code; the test
fails, naming this script, while any range is out of date.
"""
from __future__ import annotations

import ast
import re
import sys
from functools import lru_cache
from pathlib import Path

from minicnn.serialization import write_text_atomic

DOCS = Path(__file__).resolve().parent

# [`name`](path.py) or [`name`](path.py#L1-L9), outside code; `name()` is allowed as the text.
CODE_LINK = re.compile(r"\[`(?P<name>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)?)(?:\(\))?`\]"
                       r"\((?P<path>[^()\s#]+\.py)(?:#(?P<anchor>[^()\s]*))?\)")
LINES = re.compile(r"^L(\d+)-L(\d+)$")


def _first_line(node) -> int:
    decorators = getattr(node, "decorator_list", [])
    return min([node.lineno] + [d.lineno for d in decorators])


@lru_cache(maxsize=None)
def definition_spans(path: Path) -> dict[str, tuple[int, int]]:
    """name -> (first line, last line) for the classes, functions and module-level constants of ``path``,
    and ``Class.member`` for their methods, nested classes and class attributes."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    spans: dict[str, tuple[int, int]] = {}

    def targets(node):
        if isinstance(node, ast.Assign):  # x = ..., and a, b = ...
            flat = [e for t in node.targets for e in (t.elts if isinstance(t, ast.Tuple) else [t])]
            return [t.id for t in flat if isinstance(t, ast.Name)]
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            return [node.target.id]
        return []

    for node in tree.body:
        span = (_first_line(node), node.end_lineno)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            spans[node.name] = span
        elif isinstance(node, ast.ClassDef):
            spans[node.name] = span
            for member in node.body:
                member_span = (_first_line(member), member.end_lineno)
                if isinstance(member, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    spans[f"{node.name}.{member.name}"] = member_span
                for target in targets(member):
                    spans[f"{node.name}.{target}"] = member_span
        else:
            for target in targets(node):
                spans[target] = span
    return spans


def line_anchor(span: tuple[int, int]) -> str:
    return f"L{span[0]}-L{span[1]}"


def _outside_code(text: str):
    """(start, end) character ranges of the text outside fenced code blocks."""
    inside, start, pos = False, 0, 0
    for line in text.splitlines(keepends=True):
        if re.match(r"^\s*(```|~~~)", line):
            if not inside:
                yield start, pos
            else:
                start = pos + len(line)
            inside = not inside
        pos += len(line)
    if not inside:
        yield start, pos


def relink(text: str, page: Path) -> str:
    """``text`` (a page in ``page``'s folder) with every code-name link carrying its definition's lines."""
    def fix(match):
        target = (page.parent / match["path"]).resolve()
        if not target.is_file():
            return match[0]
        span = definition_spans(target).get(match["name"])
        if span is None:
            return match[0]
        label = match[0][:match[0].index("](")]
        return f"{label}]({match['path']}#{line_anchor(span)})"

    pieces, last = [], 0
    for start, end in _outside_code(text):
        pieces.append(text[last:start])
        pieces.append(CODE_LINK.sub(fix, text[start:end]))
        last = end
    pieces.append(text[last:])
    return "".join(pieces)


def main() -> int:
    changed = []
    for page in sorted(DOCS.glob("*.md")):
        text = page.read_text(encoding="utf-8")
        new = relink(text, page)
        if new != text:
            write_text_atomic(page, new)
            changed.append(page.name)
    print(f"Updated the line ranges in {', '.join(changed)}" if changed else "Every line range is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
