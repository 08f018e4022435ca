"""Optional plug-ins for other training frameworks; each imports its framework when imported.

Nothing here is imported by ``import semantic_anchors``: import a plug-in module by name, e.g.
``semantic_anchors.integrations.mmseg`` (an mmsegmentation 1.x segmentor with SAR, loaded by a
config's ``custom_imports``).
"""

__all__: list[str] = []
