"""Plots: feature embeddings, anchor / centre similarity, per-class bars, training curves.

Matplotlib is used through its Agg canvas directly (no ``pyplot``, no global backend switch), so
the functions work on headless machines and inside notebooks alike. UMAP comes from the optional
``umap-learn``; without it the embedding falls back to PCA (``torch.pca_lowrank``) and the plot's
title says so. Every function writes one PNG and returns its path.

Install the extra with ``pip install semantic-anchors[viz]``.

By what they show: :mod:`.features` (embeddings, similarity), :mod:`.per_class` (bars),
:mod:`.curves` (training logs); every name is importable from here.
"""

from semantic_anchors.viz.curves import load_training_log, plot_training_curves
from semantic_anchors.viz.features import embed_2d, plot_feature_embedding, plot_similarity_heatmap
from semantic_anchors.viz.per_class import GROUP_COLORS, plot_per_class_bars  # noqa: F401

__all__ = [
    "embed_2d",
    "load_training_log",
    "plot_feature_embedding",
    "plot_per_class_bars",
    "plot_similarity_heatmap",
    "plot_training_curves",
]
