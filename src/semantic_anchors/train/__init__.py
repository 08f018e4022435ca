"""Training and evaluation with Lightning (the only package of the project that imports it)."""

from semantic_anchors._moved import keep_old_paths
from semantic_anchors.train.callbacks import TrainingInterrupted
from semantic_anchors.train.checkpoint import CheckpointWriteError
from semantic_anchors.train.config import load_config
from semantic_anchors.train.divergence import TrainingDiverged
from semantic_anchors.train.run import evaluate, train
from semantic_anchors.train.runfolder import RunFolderBusy

# train.validation held the config checks (the name read like a validation loop); deprecated.
keep_old_paths({"semantic_anchors.train.validation": "semantic_anchors.train.config_checks"})

__all__ = [
    "CheckpointWriteError",
    "RunFolderBusy",
    "TrainingDiverged",
    "TrainingInterrupted",
    "evaluate",
    "load_config",
    "train",
]
