import builtins

import numpy as np
import pytest
import torch

from semantic_anchors import viz
from tests._helpers.fabricate import CLASS_NAMES, FREQUENCIES, GROUPS

mpimg = pytest.importorskip("matplotlib.image")  # the `viz` extra


def _png(path, min_width=200):
    assert path.is_file() and path.stat().st_size > 1000
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[1] >= min_width and image.shape[0] >= 150
    return image


def _clusters(n_per_class=30, classes=5, dim=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    centres = 4 * torch.randn(classes, dim, generator=gen)
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    return centres[labels] + torch.randn(len(labels), dim, generator=gen), labels


def test_feature_embedding_single_and_panels(tmp_path):
    feats, labels = _clusters()
    path = viz.plot_feature_embedding(feats, labels, tmp_path / "one.png", class_names=CLASS_NAMES,
                                      method="pca", title="toy")  # fmt: skip
    assert path == tmp_path / "one.png"
    _png(path)
    panels = {"ce": feats, "sar": feats * 2}
    wide = _png(viz.plot_feature_embedding(panels, {"ce": labels, "sar": labels},
                                           tmp_path / "two.png", method="pca"))  # fmt: skip
    assert wide.shape[1] > _png(path).shape[1]  # two panels side by side
    with pytest.raises(ValueError, match="keys"):
        viz.plot_feature_embedding(panels, {"ce": labels}, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="expected 150 labels"):
        viz.plot_feature_embedding(feats, labels[:-1], tmp_path / "bad.png", method="pca")


def test_pca_is_the_fallback_without_umap(monkeypatch):
    feats, labels = _clusters()
    coords, method = viz.embed_2d(feats, "pca")
    assert method == "PCA" and coords.shape == (150, 2)
    real_import = builtins.__import__

    def no_umap(name, *args, **kwargs):
        if name == "umap":
            raise ModuleNotFoundError("No module named 'umap'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_umap)
    assert viz.embed_2d(feats, "auto")[1] == "PCA"
    with pytest.raises(ModuleNotFoundError):
        viz.embed_2d(feats, "umap")
    with pytest.raises(ValueError, match="method"):
        viz.embed_2d(feats, "tsne")


def test_similarity_heatmap(tmp_path):
    vectors = torch.randn(5, 8)
    vectors[3] = float("nan")  # a never-initialised anchor is drawn grey, not an error
    _png(viz.plot_similarity_heatmap(vectors, tmp_path / "one.png", class_names=CLASS_NAMES))
    _png(viz.plot_similarity_heatmap({"centres": torch.randn(5, 8), "anchors": vectors},
                                     tmp_path / "two.png", center=True, title="t"))  # fmt: skip
    with pytest.raises(ValueError, match="same number of classes"):
        viz.plot_similarity_heatmap(
            {"a": torch.randn(5, 8), "b": torch.randn(4, 8)}, tmp_path / "x.png"
        )


def test_per_class_bars(tmp_path):
    values = {"ce": [80, 10, 50, None, 5], "sar": [81, 15, 52, 3, 9]}
    errors = {"ce": [1, 2, 1, None, 1], "sar": [1, 1, 1, 1, 1]}
    _png(viz.plot_per_class_bars(values, tmp_path / "bars.png", class_names=CLASS_NAMES,
                                 class_frequencies=FREQUENCIES, errors=errors, groups=GROUPS))  # fmt: skip
    with pytest.raises(ValueError, match="class_frequencies: expected 5"):
        viz.plot_per_class_bars(values, tmp_path / "x.png", class_names=CLASS_NAMES,
                                class_frequencies=[1, 2])  # fmt: skip


def _write_log(path, rows, columns):
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [",".join(["epoch", "step", *columns])]
    lines += [",".join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")


def test_training_curves_merge_resumed_logs(tmp_path):
    run = tmp_path / "run"
    cols = ["train/loss", "reg/gate_open", "val/mIoU"]
    _write_log(
        run / "logs/train/metrics.csv", [[0, s, 2.0 / (s + 1), 0, ""] for s in range(5)], cols
    )
    _write_log(run / "logs/resumed-from-step-5/metrics.csv",
               [[0, s, 2.0 / (s + 1), 1, ""] for s in range(5, 9)] + [[0, 8, "", "", 40.0]], cols)  # fmt: skip
    log = viz.load_training_log(run)
    steps, values = log["train/loss"]
    assert steps.tolist() == list(range(9)) and values[-1] == pytest.approx(2 / 9)
    assert log["reg/gate_open"][1].tolist() == [0] * 5 + [1] * 4
    assert log["val/mIoU"][0].tolist() == [8]
    _png(viz.plot_training_curves({"sar": [run, run]}, tmp_path / "curves.png"))
    _png(viz.plot_training_curves(run, tmp_path / "raw.png", smoothing=0.0, columns=["train/loss"]))
    _png(viz.plot_training_curves(tmp_path / "empty", tmp_path / "empty.png"))  # says so, no error
    with pytest.raises(ValueError, match="smoothing"):
        viz.plot_training_curves(run, tmp_path / "x.png", smoothing=1.0)


def test_smoothing_is_debiased():
    assert viz.curves._smooth(np.array([3.0, 3.0, 3.0]), 0.9) == pytest.approx([3.0, 3.0, 3.0])


@pytest.mark.slow
def test_umap_embedding(tmp_path):
    pytest.importorskip("umap")
    feats, labels = _clusters()
    assert viz.embed_2d(feats, "umap")[1] == "UMAP"
    _png(viz.plot_feature_embedding(feats, labels, tmp_path / "umap.png", method="umap"))
