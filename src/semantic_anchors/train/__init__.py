"""Training and evaluation with Lightning (the only package of the project that imports it)."""

from semantic_anchors.train.callbacks import TrainingInterrupted
from semantic_anchors.train.checkpoint import CheckpointWriteError
from semantic_anchors.train.config import load_config
from semantic_anchors.train.divergence import TrainingDiverged
from semantic_anchors.train.run import evaluate, train
from semantic_anchors.train.runfolder import RunFolderBusy

__all__ = [
    "CheckpointWriteError",
    "RunFolderBusy",
    "TrainingDiverged",
    "TrainingInterrupted",
    "evaluate",
    "load_config",
    "train",
]
