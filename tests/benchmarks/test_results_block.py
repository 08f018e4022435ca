"""README.md's results block is what `python benchmarks/results_block.py` writes from the
published results now, and the hand-written prose around it cites only the block's numbers."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import results_block  # noqa: E402

README = (ROOT / "README.md").read_text()
SIGNED = re.compile(r"(?<![\w.])[+-]\d+\.\d+")  # a signed number: a difference


def _prose() -> str:
    """The hand-written part of the results section: from its heading to the next ``## ``,
    without the generated block."""
    start = README.index("## What the benchmarks say")
    end = README.index("\n## ", start + 1)
    section = README[start:end]
    block_start, block_end = section.index(results_block.BEGIN), section.index(results_block.END)
    return section[:block_start] + section[block_end + len(results_block.END) :]


def test_the_readme_block_is_current():
    block = results_block.build_block()
    assert block in README, "README.md's results block is stale: run benchmarks/results_block.py"
    assert results_block.main(["--check"]) == 0


def test_the_prose_cites_only_numbers_of_the_block():
    block = results_block.build_block()
    cited = set(SIGNED.findall(_prose()))
    assert cited, "the prose cites no difference at all (the pattern would check nothing)"
    missing = sorted(n for n in cited if n not in block)
    assert not missing, f"differences in the prose that the block does not show: {missing}"


def test_the_prose_says_significant_only_where_the_block_does():
    prose = _prose()
    assert "clearly" not in prose.lower()
    for sentence in re.split(r"(?<=[.;])\s", prose):
        used = re.sub(r'"[^"]*"', "", sentence)  # a quoted word is named, not claimed
        if re.search(r"\bsignificant|\bbeats?\b", used, re.IGNORECASE):
            numbers = SIGNED.findall(sentence)
            assert numbers, f"a claim of significance without its number: {sentence!r}"
            rows = [r for r in results_block.build_block().splitlines()
                    if any(f"| {n} |" in r for n in numbers)]  # fmt: skip
            negated = re.search(r"\b(not|no|never)\s+(\w+\s+)?significant", used, re.I)
            wanted = "interval includes 0" if negated else "significantly"
            assert rows and all(wanted in r for r in rows), sentence
