"""The benchmark scripts that are cheap enough run here, so they never rot."""

import importlib.util
from pathlib import Path

from semantic_anchors.models import create_model

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_model_cost_counts_parameters_and_sar_embedding():
    row = _load("model_cost").measure("fcn_small", num_classes=5, size=64)
    model = create_model("fcn_small", num_classes=5)
    assert row["params"] == sum(p.numel() for p in model.parameters())
    d = model.feat_dim  # SAR's dense embedding: 2 x (Linear + BN1d), 1x1 conv (no bias) + BN2d
    assert row["sar_params"] == 2 * (d * d + d + 2 * d) + d * d + 2 * d
    # Embedding (3 matmuls of C x D x D) and the classifier on the C anchors (C x D x C).
    assert round(row["sar_gflops"] * 1e9) == 3 * 5 * d * d + 5 * d * 5
    assert row["gflops"] > 0
