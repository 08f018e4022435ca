"""Experiment configuration: typed sections, safe YAML, ``--set key=value`` overrides.

A config is a nested dict with fixed sections. Sections with a fixed schema (``data``, ``optimizer``,
``trainer``, ``eval``, ``finetune``) reject unknown keys with the list of valid ones; the open
sections (``model``, ``regularizer``, ``loss``, ``data.options``) hold a ``name`` plus the keyword
arguments of the thing they build, which are checked against its signature when it is built.
An update that switches such a name (``--set regularizer.name=none``, a recipe over its ``base:``)
drops the old name's options that the new one does not take, with a note
(:mod:`semantic_anchors.train.overrides`). The schema (the section dataclasses, ``DEFAULTS``)
is :mod:`semantic_anchors.train.schema`, re-exported here.

:func:`load_config` ends with :func:`validate_config` (defined in
:mod:`semantic_anchors.train.config_checks`, re-exported here), so a config it returns has the right
type and range for every fixed key: a bad value is a one-line ``ValueError`` before anything is
created.
"""

from __future__ import annotations

import copy
import difflib
import re
from pathlib import Path
from typing import Any

import yaml

from semantic_anchors._resources import RECIPES_DIR, list_yaml
from semantic_anchors.train.config_checks import validate_config
from semantic_anchors.train.overrides import drop_stale_options
from semantic_anchors.train.schema import (  # noqa: F401  (the schema's names, re-exported)
    DEFAULTS,
    OPEN_SECTIONS,
    SECTIONS,
    TOP_LEVEL,
    DataConfig,
    EvalConfig,
    FinetuneConfig,
    OptimizerConfig,
    TrainerConfig,
    unknown_key_error,
)

__all__ = [
    "DEFAULTS",
    "RECIPES_DIR",
    "apply_overrides",
    "load_config",
    "resolve_recipe",
    "validate_config",
]


def _merge(base: dict, update: dict, where: str = "") -> dict:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if where == "" and key not in TOP_LEVEL:
            raise unknown_key_error(key, list(TOP_LEVEL), "")
        section = where.rstrip(".")
        if section in SECTIONS and key not in out:
            raise unknown_key_error(key, list(out), where)
        if where == "" and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = drop_stale_options(key, out[key], value)  # a new name: its own options
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "options":
            out[key] = _merge(out[key], value, f"{where}{key}.")
        else:
            out[key] = copy.deepcopy(value)
    return out


# ----------------------------------------------------------------------------- YAML
class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that reads ``1e-4`` as a float (as YAML 1.2 and Python do, where YAML 1.1
    reads a string) and refuses a key given twice in one mapping (YAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen: set[str] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            if key_node.value in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key_node.value!r}", key_node.start_mark
                )
            seen.add(key_node.value)
        return super().construct_mapping(node, deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _yaml_error(path: Path, err: yaml.YAMLError) -> ValueError:
    mark = getattr(err, "problem_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    problem = " ".join((getattr(err, "problem", None) or str(err)).split())
    context, start = getattr(err, "context", None), getattr(err, "context_mark", None)
    if context and start is not None:
        problem += f" ({' '.join(context.split())} at {start.line + 1}:{start.column + 1})"
    return ValueError(f"{where}: could not parse YAML: {problem}")


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # a safe loader
    except yaml.YAMLError as err:
        raise _yaml_error(path, err) from None
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config must be a YAML mapping, got {type(data).__name__}")
    return data


# ----------------------------------------------------------------------------- loading
def resolve_recipe(recipe: str | Path) -> Path:
    """A shipped recipe name (with or without ``.yaml``; see ``semantic-anchors recipes``) or a YAML
    path."""
    path = Path(recipe)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return path
    candidate = RECIPES_DIR / f"{Path(recipe).stem}.yaml"
    if candidate.exists():
        return candidate
    names = list_yaml(RECIPES_DIR)
    close = difflib.get_close_matches(str(recipe), names, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise FileNotFoundError(
        f"recipe {str(recipe)!r} is neither a YAML file nor a name in {RECIPES_DIR}.{hint} "
        f"Available: {names}"
    )


def _load_recipe(path: Path, chain: tuple[Path, ...] = ()) -> dict:
    """Defaults, the ``base:`` chain of ``path``, then ``path`` itself (not validated yet)."""
    data = _read_yaml(path)
    base = data.pop("base", None)  # a recipe may extend another one
    config = DEFAULTS
    if base is not None:
        if not isinstance(base, str) or not base:
            raise ValueError(f"{path}: base must be the name of a recipe, got {base!r}")
        local = path.parent / f"{base}.yaml"
        try:
            base_path = local if local.exists() else resolve_recipe(base)
        except FileNotFoundError:
            names = sorted(
                {*list_yaml(path.parent, hidden=True), *list_yaml(RECIPES_DIR, hidden=True)}
            )
            close = difflib.get_close_matches(base, names, n=3)
            hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
            raise ValueError(
                f"{path}: base {base!r} is not a recipe in {path.parent} nor a shipped recipe{hint}"
            ) from None
        if base_path.resolve() in chain or base_path.resolve() == path.resolve():
            raise ValueError(f"{path}: base {base!r} leads back to this recipe (a cycle)")
        config = _load_recipe(base_path, (*chain, path.resolve()))
    try:
        return _merge(config, data)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


def load_config(
    recipe: str | Path | dict | None = None, overrides: list[str] | None = None
) -> dict:
    """Defaults, then the recipe (which may name a ``base:`` recipe), then ``--set`` overrides, then
    :func:`validate_config`. Reads files only: nothing is created.

    Raises:
        ValueError: one line naming the file or key: a YAML syntax error (``file:line:col``), an
            unknown key (the message lists the valid ones), a missing ``base:``, a malformed
            override, or a value of the wrong type or out of range.
        FileNotFoundError: the recipe does not exist.
    """
    path = None if recipe is None or isinstance(recipe, dict) else resolve_recipe(recipe)
    if path is not None:
        config = _load_recipe(path)
    else:
        config = _merge(DEFAULTS, recipe or {})
    try:
        return validate_config(apply_overrides(config, overrides or []))
    except ValueError as err:
        if path is not None and _error_of(config) == str(err):  # the recipe's value, not --set's
            raise ValueError(f"{path}: {err}") from None
        raise


def _error_of(config: dict) -> str | None:
    try:
        validate_config(config)
    except ValueError as err:
        return str(err)
    return None


def _parse_value(text: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError:
        return text


def apply_overrides(config: dict, overrides: list[str]) -> dict:
    """Apply ``key.sub=value`` strings (values parsed as YAML: ``0.1``, ``true``, ``[1, 2]``).

    All pairs apply, in order; a later pair for the same key wins. A pair that switches a name
    (``regularizer.name=none``, ``loss.name``, ``model.name``, ``model.prototype_head``,
    ``finetune.calibration``) drops the options of the old name that the new one does not take
    (:func:`~semantic_anchors.train.overrides.drop_stale_options`, with a note on stderr); options
    set by these overrides are kept, so one the new name does not take stays an error when it is
    built. The result is not validated; :func:`load_config` validates it.
    """
    update: dict = {}
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ValueError(f"override {item!r} has an empty key part")
        node = update
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r} sets a key inside a value set by another one")
        node[parts[-1]] = _parse_value(raw)
    return _merge(config, update)


def dump_config(config: dict, path: Path) -> None:
    """Write the fully resolved config as YAML."""
    path.write_text(yaml.safe_dump(config, sort_keys=False))
