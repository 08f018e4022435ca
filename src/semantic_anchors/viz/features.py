"""Where the features lie: a 2-D embedding by class, and the cosine similarity of vectors.

:func:`embed_2d` (UMAP from the optional ``umap-learn``, else PCA), :func:`plot_feature_embedding`
and :func:`plot_similarity_heatmap` (anchors, class centres).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from semantic_anchors.viz._plotting import (
    as_tensor,
    class_colors,
    grid,
    legend_marker,
    new_figure,
    panels_of,
    save_figure,
)

__all__ = ["embed_2d", "plot_feature_embedding", "plot_similarity_heatmap"]


def embed_2d(features: torch.Tensor, method: str = "auto", seed: int = 0) -> tuple[np.ndarray, str]:
    """2-D coordinates of ``(N, D)`` features and the method used (``"UMAP"`` or ``"PCA"``).

    ``method``: ``"auto"`` (UMAP when umap-learn is installed, else PCA), ``"umap"`` or ``"pca"``.

    Raises:
        ValueError: an unknown ``method`` or features that are not ``(N, D)``.
        ModuleNotFoundError: ``method="umap"`` without umap-learn.
    """
    if method not in ("auto", "umap", "pca"):
        raise ValueError(f"method: expected 'auto', 'umap' or 'pca', received {method!r}")
    x = as_tensor(features, "features", 2).double()  # (N, D)
    if method in ("auto", "umap") and len(x) > 16:
        try:
            import umap
        except ModuleNotFoundError:
            if method == "umap":
                raise
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # n_jobs / random_state notices
                reducer = umap.UMAP(n_components=2, n_neighbors=15, min_dist=0.1, random_state=seed)
                return np.asarray(reducer.fit_transform(x.numpy())), "UMAP"
    centered = x - x.mean(0)  # (N, D)
    if min(centered.shape) < 2:
        return np.pad(centered.numpy()[:, :2], ((0, 0), (0, max(0, 2 - x.shape[1])))), "PCA"
    _, _, v = torch.pca_lowrank(centered, q=2, center=False)  # v: (D, 2)
    return (centered @ v).numpy(), "PCA"  # (N, 2)


def plot_feature_embedding(
    features: torch.Tensor | Mapping[str, torch.Tensor],
    labels: torch.Tensor | Mapping[str, torch.Tensor],
    out: str | Path,
    *,
    class_names: Sequence[str] | None = None,
    method: str = "auto",
    title: str | None = None,
    seed: int = 0,
) -> Path:
    """Scatter of sampled features in 2-D (UMAP, or PCA), one colour per class.

    Args:
        features: ``(N, D)`` vectors, or ``{panel title: (N, D)}`` for side-by-side panels
            (e.g. one per method; each panel is embedded on its own).
        labels: ``(N,)`` class indices, or a mapping with the same keys as ``features``.
        out: PNG path.
        class_names: legend names (default ``class 0`` ...).
        method: ``"auto"``, ``"umap"`` or ``"pca"`` (see :func:`embed_2d`).
        title: figure title; the embedding method is appended.

    Raises:
        ValueError: mismatched keys or lengths, or a bad ``method``.
    """
    feats, labs = panels_of(features, "features"), panels_of(labels, "labels")
    if feats.keys() != labs.keys():
        raise ValueError(f"labels: expected the keys {list(feats)}, received {list(labs)}")
    num_classes = max(
        [len(class_names or [])]
        + [int(as_tensor(v, "labels", 1).max()) + 1 for v in labs.values() if len(v)]
    )
    names = (
        list(class_names) if class_names is not None else [f"class {c}" for c in range(num_classes)]
    )
    colors = class_colors(num_classes)
    rows, cols = grid(len(feats))
    fig = new_figure(4.2 * cols + 1.8, 4.0 * rows)
    used = set()
    for i, (panel, x) in enumerate(feats.items()):
        x, y = as_tensor(x, "features", 2), as_tensor(labs[panel], "labels", 1).long()
        if len(x) != len(y):
            raise ValueError(
                f"labels: expected {len(x)} labels for panel {panel!r}, received {len(y)}"
            )
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.set_xticks([])
        ax.set_yticks([])
        if len(x) < 3:
            ax.text(0.5, 0.5, "too few samples", ha="center", va="center", transform=ax.transAxes)
            ax.set_title(panel)
            continue
        coords, used_method = embed_2d(x, method, seed)
        used.add(used_method)
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed)).numpy()
        point_colors = np.array([colors[c] for c in y.tolist()])
        ax.scatter(
            coords[order, 0], coords[order, 1], c=point_colors[order], s=7, alpha=0.75, linewidths=0
        )
        ax.set_title(panel, fontsize=11)
    handles = [
        legend_marker(colors[c], names[c] if c < len(names) else f"class {c}")
        for c in range(num_classes)
    ]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False,
               fontsize=9, title="class")  # fmt: skip
    how = " / ".join(sorted(used)) or method.upper()
    if "PCA" in used and method == "auto":
        how = "PCA (umap-learn not installed)"
    fig.suptitle(f"{title + ': ' if title else ''}features by class, {how}", fontsize=12)
    fig.tight_layout()
    return save_figure(fig, out)


def plot_similarity_heatmap(
    vectors: torch.Tensor | Mapping[str, torch.Tensor],
    out: str | Path,
    *,
    class_names: Sequence[str] | None = None,
    center: bool = False,
    title: str | None = None,
) -> Path:
    """Cosine-similarity matrices of class vectors (anchors, semantic anchors, class centres).

    Args:
        vectors: ``(C, D)``, or ``{panel title: (C, D)}`` for side-by-side panels. NaN rows (a
            class never seen / an anchor never initialised) are drawn grey.
        out: PNG path.
        class_names: tick labels.
        center: subtract the mean of the (finite) rows first. Class centres of post-ReLU features
            all point the same way (cosines near 1); their differences are what tell the classes
            apart, as in the neural-collapse literature's globally centred class means.
        title: figure title.

    Raises:
        ValueError: a non-2-D input, or panels with different ``C``.
    """
    from semantic_anchors.metrics import cosine_similarity_matrix

    panels = {
        k: as_tensor(v, "vectors", 2).double() for k, v in panels_of(vectors, "vectors").items()
    }
    sizes = {v.shape[0] for v in panels.values()}
    if len(sizes) != 1:
        raise ValueError(
            f"vectors: expected panels with the same number of classes, received {sizes}"
        )
    c = sizes.pop()
    names = list(class_names) if class_names is not None else [str(i) for i in range(c)]
    rows, cols = grid(len(panels))
    side = max(3.4, 0.3 * c + 1.8)
    fig = new_figure(side * cols + 1.2, side * rows + 0.6, layout="constrained")
    image = None
    for i, (panel, v) in enumerate(panels.items()):
        valid = torch.isfinite(v).all(1)  # (C,)
        if center and valid.any():
            v = v - v[valid].mean(0)  # (C, D)
        sim = cosine_similarity_matrix(v)  # (C, C)
        ax = fig.add_subplot(rows, cols, i + 1)
        image = ax.imshow(np.ma.masked_invalid(sim.numpy()), vmin=-1, vmax=1, cmap="RdBu_r",
                          interpolation="nearest")  # fmt: skip
        ax.set_facecolor("#bbbbbb")
        ax.set_xticks(range(c))
        ax.set_xticklabels(names, rotation=90, fontsize=7)
        ax.set_yticks(range(c))
        ax.set_yticklabels(names if i % cols == 0 else [], fontsize=7)
        off = sim.masked_fill(torch.eye(c, dtype=torch.bool), float("nan"))
        off = torch.where(torch.isfinite(off), off, torch.full_like(off, -math.inf))
        if valid.sum() >= 2:
            a, b = divmod(int(off.argmax()), c)
            detail = f"closest: {names[a]} / {names[b]} ({float(off[a, b]):.2f})"
        else:
            detail = "no valid rows (all NaN)" if not valid.any() else "one valid row"
        ax.set_title(f"{panel}\n{detail}" if panel else detail, fontsize=9)
    fig.colorbar(image, ax=fig.axes, shrink=0.6, label="cosine similarity")
    note = "cosine similarity, globally centred" if center else "cosine similarity"
    fig.suptitle(f"{title}\n({note})" if title else note, fontsize=11)
    return save_figure(fig, out)
