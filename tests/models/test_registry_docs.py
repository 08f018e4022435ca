"""docs/models.md agrees with the code: its model table and its first example."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from semantic_anchors.models import create_model, get_model_entry, list_models

DOC = Path(__file__).resolve().parents[2] / "docs" / "models.md"
ROW = re.compile(r"^\| `(\w+)` \| (\w+) \| (\d+) \| (\d+) \| ([\d,]+) \| ([\d.]+)")


def table() -> dict[str, tuple[str, ...]]:
    rows = (ROW.match(line) for line in DOC.read_text().splitlines())
    return {m.group(1): m.groups()[1:] for m in rows if m}


def test_table_lists_every_registered_model() -> None:
    assert sorted(table()) == list_models()


@pytest.mark.parametrize("name", list_models())
def test_table_row_matches_the_model(name: str) -> None:
    task, feat_dim, output_stride, params, aux_weight = table()[name]
    model = create_model(name)
    assert task == get_model_entry(name).task
    assert int(feat_dim) == model.feat_dim
    assert int(output_stride) == model.output_stride
    assert int(params.replace(",", "")) == sum(p.numel() for p in model.parameters())
    assert float(aux_weight) == model.aux_loss_weight


def test_first_example_runs() -> None:
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL).group(1)
    namespace: dict = {}
    exec(compile(code, str(DOC), "exec"), namespace)
    assert namespace["out"].features.shape == (2, 64, 8, 8)
