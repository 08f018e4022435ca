"""Training and evaluation with Lightning (the only package of the project that imports it)."""

from semantic_anchors.train.config import load_config
from semantic_anchors.train.run import evaluate, train

__all__ = ["evaluate", "load_config", "train"]
