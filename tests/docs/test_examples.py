"""The examples run end to end (a few steps) and print both rows of their comparison."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize(
    ("script", "expected"),
    [("segmentation_loop.py", "mIoU"), ("classification_loop.py", "top-1")],
)
def test_example_runs(script, expected):
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--steps", "3"],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout
    rows = [line for line in out.splitlines() if expected in line]
    assert [row.split()[0] for row in rows] == ["CE", "CE"]  # "CE" and "CE + SAR"
    assert "last SAR stats" in out
