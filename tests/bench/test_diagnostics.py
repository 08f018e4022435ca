import pytest
import torch

from semantic_anchors.bench import compute_diagnostics, load_diagnostics
from semantic_anchors.bench.diagnostics import ClassSampler
from semantic_anchors.cli import main
from semantic_anchors.metrics import FeatureStatistics
from semantic_anchors.train.checkpoint import load_checkpoint


def test_class_sampler_caps_each_class_and_keeps_everything_that_fits():
    sampler = ClassSampler(num_classes=3, per_class=4, seed=0)
    feats = torch.arange(30, dtype=torch.float32)[:, None].repeat(1, 2)  # (30, 2), row i = i
    labels = torch.tensor([0] * 20 + [1] * 8 + [2] * 2)
    for chunk in range(3):  # the batching does not matter
        sampler.update(feats[chunk * 10 : (chunk + 1) * 10], labels[chunk * 10 : (chunk + 1) * 10])
    x, y = sampler.result()
    assert torch.bincount(y, minlength=3).tolist() == [4, 4, 2]
    assert sorted(x[y == 2, 0].tolist()) == [28.0, 29.0]
    assert all(int(v) < 20 for v in x[y == 0, 0]) and len(set(x[:, 0].tolist())) == 10
    # uniform: over many seeds every vector of class 0 is drawn about 4/20 of the time
    hits = torch.zeros(20)
    for seed in range(300):
        sampler = ClassSampler(3, 4, seed=seed)
        sampler.update(feats, labels)
        x, y = sampler.result()
        hits[x[y == 0, 0].long()] += 1
    assert (hits / 300 - 0.2).abs().max() < 0.1


def test_diagnostics_of_a_real_run_are_cached(tiny_bench):
    _, out, _, _ = tiny_bench
    run = out / "runs/synthlt/sar/seed0"
    diag = load_diagnostics(run)
    assert (run / "diagnostics.pt").is_file()
    assert diag["task"] == "segmentation" and diag["num_images"] == 8 and diag["step"] == 2
    c, d = diag["centers"].shape
    assert c == 13 and diag["regularizer"] == "sar"
    assert diag["regularizer_vectors_name"] == "semantic anchors"
    state = load_checkpoint(run / "checkpoints/last.ckpt")["state_dict"]
    init = state["regularizer.initialized"]
    expected = state["regularizer.semantic_anchors"].double()
    torch.testing.assert_close(diag["regularizer_vectors"][init], expected[init])
    assert torch.isnan(diag["regularizer_vectors"][~init]).all()
    assert diag["samples"].shape[1] == d and len(diag["samples"]) == len(diag["sample_labels"])
    assert torch.bincount(diag["sample_labels"]).max() <= 200
    # the samples are features of their class: their class means are near the exact centres
    counts = diag["counts"]
    stats = FeatureStatistics(c, d)
    stats.update(diag["samples"], diag["sample_labels"])
    sample_centres = stats.compute()["centers"]
    full = counts <= torch.bincount(diag["sample_labels"], minlength=c)  # classes sampled whole
    torch.testing.assert_close(sample_centres[full], diag["centers"][full], rtol=1e-4, atol=1e-5)
    assert diag["mean_compactness"] >= 0 and diag["fisher_ratio"] >= 0

    cached = load_diagnostics(run)  # from the cache: identical
    assert torch.equal(cached["centers"], diag["centers"])
    smaller = load_diagnostics(run, max_images=4)  # other settings: recomputed
    assert smaller["num_images"] == 4
    with pytest.raises(FileNotFoundError):
        compute_diagnostics(out / "runs/synthlt/broken/seed0")
    assert load_diagnostics(out / "runs/synthlt/broken/seed0") is None


def test_viz_and_report_commands_on_a_real_bench(tiny_bench, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    _, out, _, _ = tiny_bench
    run = out / "runs/synthlt/sar/seed0"
    assert main(["viz", str(run), "--out", str(tmp_path / "plots"), "--embedding", "pca"]) == 0
    printed = capsys.readouterr().out.split()
    assert sorted(p.rsplit("/", 1)[-1] for p in printed) == [
        "curves.png",
        "embedding.png",
        "similarity.png",
    ]
    assert (
        main(["report", str(out), "--report-dir", str(tmp_path / "report"), "--embedding", "pca"])
        == 0
    )
    text = (tmp_path / "report" / "report.md").read_text()
    assert "| `sar` |" in text and "| 1 of 1 |" not in text and "gate open" in text
    assert "| `broken` |" in text  # listed with no finished seed
    assert main(["viz", str(tmp_path)]) == 2
    assert "not a finished run folder" in capsys.readouterr().err
