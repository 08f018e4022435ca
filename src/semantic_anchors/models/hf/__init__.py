"""Hugging Face ``transformers`` models behind the model contract (optional extra ``[hf]``).

Thin adapters, not ports (STYLE.md 9, "wrap, don't fork"): each holds the ``transformers`` model
under ``hf_model`` with its module names unchanged, so a checkpoint saved by ``transformers``
loads untouched through ``pretrained=DIR`` (a local ``save_pretrained`` folder; nothing is ever
downloaded). The models are built from their configs with the sizes of the published ones.
Importing this module registers them all:

* :mod:`.segformer`: ``segformer_b0`` ... ``segformer_b5``;
* :mod:`.upernet`: ``upernet_swin_t`` / ``_s`` / ``_b`` / ``_l`` and ``upernet_convnext_t``
  (both on :mod:`.dense`, their shared dense contract);
* :mod:`.classifiers`: ``hf_vit_s16``, ``hf_vit_b16`` and ``hf_convnext_t``;
* :mod:`.mask2former`: ``mask2former_tiny`` and ``mask2former_swin_t`` (query-based, trained by
  their own loss).

What they share (the lazy import, config building, checkpoint loading) lives in
:mod:`.common` and is re-exported here.
``transformers`` is imported inside the builders, never when a module is imported.
"""

from __future__ import annotations

from . import classifiers, mask2former, segformer, upernet  # noqa: F401  (registers the models)
from .common import build_hf_model, import_transformers, make_config

__all__ = ["build_hf_model", "import_transformers", "make_config"]
