"""Dataset classes; each module registers its names with :mod:`semantic_anchors.data.registry`."""
