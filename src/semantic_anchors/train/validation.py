"""Deprecated alias of :mod:`semantic_anchors.train.config_checks` (the config checks; the name
read like a validation loop). Importing it warns once; every public name is still here."""

import warnings

from semantic_anchors.train.config_checks import *  # noqa: F403
from semantic_anchors.train.config_checks import __all__, validate_config  # noqa: F401

warnings.warn(
    "semantic_anchors.train.validation is now semantic_anchors.train.config_checks",
    DeprecationWarning,
    stacklevel=2,
)
