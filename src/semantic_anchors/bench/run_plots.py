"""The plots of one run folder (``semantic-anchors viz RUN_DIR``)."""

from __future__ import annotations

from pathlib import Path

from semantic_anchors import viz
from semantic_anchors.bench.diagnostics import load_diagnostics
from semantic_anchors.bench.results import read_metrics

__all__ = ["plot_run"]


def plot_run(
    run_dir: str | Path, out_dir: str | Path | None = None, embedding: str = "auto"
) -> list[Path]:
    """Feature embedding, class-centre (and anchor) similarity and training curves of a run.

    Diagnostics are computed once and cached in ``RUN/diagnostics.pt``.

    Args:
        run_dir: a run folder with ``checkpoints/last.ckpt``.
        out_dir: where the PNGs go (default ``RUN/plots``).
        embedding: ``"auto"``, ``"umap"`` or ``"pca"``.

    Returns:
        The paths written.

    Raises:
        FileNotFoundError: ``run_dir`` does not exist or is not a run folder (no checkpoint, no
            cached diagnostics).
        ValueError: a corrupt ``metrics.json`` or ``diagnostics.pt`` (names the file), or a
            checkpoint that does not fit its config.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(
            f"run folder {run_dir} does not exist (expected a folder with "
            "checkpoints/last.ckpt, as `semantic-anchors train --out` writes)"
        )
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "plots"
    metrics = read_metrics(run_dir)  # read first: a corrupt file is named before any work
    diag = load_diagnostics(run_dir)
    if diag is None:
        raise FileNotFoundError(
            f"{run_dir} is not a finished run folder: no checkpoints/last.ckpt inside"
        )
    parts = run_dir.resolve().parts
    # a bench run folder (<dataset>/<method>/seed<k>) is named by all three parts
    label = "/".join(parts[-3:]) if run_dir.name.startswith("seed") else run_dir.name
    name = label
    if metrics is not None:
        score = metrics.get("mIoU", metrics.get("top1"))
        key = "mIoU" if "mIoU" in metrics else "top-1"
        if score is not None:
            name = (
                f"{label} ({diag['regularizer']}; {key} {score:.1f} at step {metrics.get('step')})"
            )
    names = diag["class_names"]
    paths = []
    if len(diag["sample_labels"]):
        paths.append(viz.plot_feature_embedding(
            diag["samples"], diag["sample_labels"], out_dir / "embedding.png",
            class_names=names, method=embedding, title=name,
        ))  # fmt: skip
    vectors = {"class centres": diag["centers"]}
    if diag.get("regularizer_vectors") is not None:
        vectors[f"{diag['regularizer']}: {diag['regularizer_vectors_name']}"] = diag[
            "regularizer_vectors"
        ]
    paths.append(viz.plot_similarity_heatmap(
        vectors, out_dir / "similarity.png", class_names=names, center=True, title=name
    ))  # fmt: skip
    paths.append(viz.plot_training_curves({label: run_dir}, out_dir / "curves.png", title=name))
    return paths
