"""Options that follow a name: switching what a config section builds drops the old thing's options.

A registry-backed section holds a name plus the keyword arguments of the thing it builds
(``regularizer: {name: sar, lambda_p2a: 0.1, tau: 0.9}``). When an update (``--set`` overrides, a
recipe over its ``base:``, a saved config over the defaults) switches the name, the options that
came with the *old* name and that the new one does not take are dropped, and a one-line note says
which (``note: regularizer sar -> none: dropped delta, lambda_aux, lambda_p2a, momentum, tau``).
Options the new name also takes (``ignore_index``, ``validate``, ...) are kept, and so is every
option given in the update itself: one that does not fit the new name stays an error, raised by the
builder when the thing is built (it names the option and lists the valid ones).

The switches (:data:`SWITCHES`): ``regularizer.name``, ``loss.name``, ``model.name``,
``model.prototype_head`` (its ``model.prototype_options``) and ``finetune.calibration`` (its
``finetune.calibration_options``).
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

__all__ = ["SWITCHES", "accepted_options", "drop_stale_options", "notice"]

SWITCHES: dict[str, tuple[tuple[str, str | None], ...]] = {
    # section: (switch key, the key holding its options; None: the section's other keys)
    "regularizer": (("name", None),),
    "loss": (("name", None),),
    "model": (("name", None), ("prototype_head", "prototype_options")),
    "finetune": (("calibration", "calibration_options"),),
}
"""The keys whose value names what a section builds, and where that thing's options live."""

# Keys of a section that are not the built thing's options (create_model takes them for every
# model), or that the training module supplies itself.
_MODEL_KEYS = ("name", "prototype_head", "prototype_options")
_TEXT_KEYS = ("text_prompt", "text_model")  # the module reads them when regularizer.anchors=text


def notice(message: str) -> None:
    """Print a one-line note on stderr (where the command line shows it and tests capture it)."""
    print(f"note: {message}", file=sys.stderr, flush=True)


def _canonical(section: str, switch: str, name: Any) -> Any:
    """The name as its registry compares it (``None`` for "no calibration / prototype head")."""
    if switch in ("calibration", "prototype_head"):
        return None if name is None or str(name).lower() == "none" else str(name).lower()
    if section in ("regularizer", "loss"):
        return str(name).lower().replace("_", "-")
    return name


def _parameters(factory: Any, supplied: tuple[str, ...]) -> set[str] | None:
    """Keyword names ``factory`` takes, less ``supplied``; ``None`` if it takes any keyword."""
    parameters = inspect.signature(factory).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name for p in parameters if p.kind in keyword and p.name not in ("self", *supplied)}


def accepted_options(section: str, switch: str, name: Any) -> set[str] | None:
    """The option keys that ``name`` takes under ``section.switch``, as its builder checks them.

    The builders' own signatures decide: ``build_regularizer`` (the regularizer class, less what it
    supplies: ``num_classes``, ``feat_dim``, ``dense``; plus ``text_prompt`` / ``text_model``
    where it takes ``anchors``), ``build_loss`` (less ``num_classes``, ``class_frequencies``,
    ``ignore_index``), ``create_model`` (the model's builder, less ``num_classes``), ProtoSeg's
    head and ``build_calibration``.

    Returns:
        The keys, or ``None`` when anything goes (an unknown name, whose builder raises its own
        error later, or a builder that takes ``**kwargs``).
    """
    try:
        if section == "regularizer":
            from semantic_anchors.regularizers.registry import REGULARIZERS

            cls = REGULARIZERS.entry(name).obj
            if cls is None:
                return set()
            accepted = _parameters(cls, REGULARIZERS.supplied)
            if accepted is not None and "anchors" in accepted:
                accepted |= set(_TEXT_KEYS)
            return accepted
        if section == "loss":
            from semantic_anchors.losses.registry import LOSSES

            return _parameters(LOSSES.entry(name).obj, LOSSES.supplied)
        if section == "model" and switch == "name":
            from semantic_anchors.models import get_model_entry

            accepted = _parameters(get_model_entry(name).builder, ("num_classes",))
            return None if accepted is None else accepted | set(_MODEL_KEYS)
        if section == "model":  # prototype_head
            if _canonical(section, switch, name) is None:
                return set()
            from semantic_anchors.models.segmentors.protoseg import (
                PROTOTYPE_HEADS,
                ProtoSegSegmentor,
            )

            if name not in PROTOTYPE_HEADS:
                return None
            return _parameters(ProtoSegSegmentor, ("segmentor",))
        if section == "finetune":  # calibration
            if _canonical(section, switch, name) is None:
                return set()
            from semantic_anchors.calibration import CALIBRATIONS

            return _parameters(CALIBRATIONS.entry(name).obj, CALIBRATIONS.supplied)
    except (ValueError, TypeError):  # an unknown name: its builder says so when it is built
        return None
    raise ValueError(f"section: expected one of {sorted(SWITCHES)}, got {section!r}")


def _shown(name: Any) -> str:
    return "null" if name is None else str(name)


def drop_stale_options(section: str, base: dict, update: dict) -> dict:
    """``base`` (a copy) less the options of its old name that ``update``'s new name does not
    take; a :func:`notice` names them. Options set in ``update`` itself are never dropped.

    Example: ``drop_stale_options("regularizer", {"name": "sar", "tau": 0.9}, {"name": "none"})``
    gives ``{"name": "sar"}`` (the merge then sets the name) and notes
    ``regularizer sar -> none: dropped tau``.
    """
    out = dict(base)
    for switch, options_key in SWITCHES.get(section, ()):
        if switch not in update:
            continue
        old, new = base.get(switch), update[switch]
        if _canonical(section, switch, old) == _canonical(section, switch, new):
            continue
        if options_key is None:
            own = update
            options = {k: v for k, v in out.items() if k not in (*_MODEL_KEYS, switch)}
        else:
            own = update.get(options_key) if isinstance(update.get(options_key), dict) else {}
            options = out.get(options_key) if isinstance(out.get(options_key), dict) else {}
            if options_key in update and not isinstance(update[options_key], dict):
                continue  # replaced as a whole by the update
        candidates = [k for k in options if k not in own]
        if not candidates:
            continue
        accepted = accepted_options(section, switch, new)
        if accepted is None:
            continue
        dropped = sorted(k for k in candidates if k not in accepted)
        if not dropped:
            continue
        if options_key is None:
            for key in dropped:
                del out[key]
            label, listed = section, dropped
        else:
            kept = {k: v for k, v in options.items() if k not in dropped}
            out[options_key] = kept or None  # finetune: calibration_options null without one
            label, listed = f"{section}.{switch}", [f"{options_key}.{k}" for k in dropped]
        notice(f"{label} {_shown(old)} -> {_shown(new)}: dropped {', '.join(listed)}")
    return out
