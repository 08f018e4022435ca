"""Data files shipped inside the package (recipes and benchmark suites), found the same way in a
source checkout, an editable install and a wheel."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["RECIPES_DIR", "SUITES_DIR", "describe", "list_yaml"]

# Wheels are installed unpacked, so the package's data files are plain files on disk.
RECIPES_DIR = Path(str(resources.files("semantic_anchors") / "recipes"))
SUITES_DIR = RECIPES_DIR / "suites"


def list_yaml(folder: Path, *, hidden: bool = False) -> list[str]:
    """Names (file stems) of the YAML files in ``folder``; ``_name`` files only when ``hidden``."""
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.yaml") if hidden or not p.name.startswith("_"))


def describe(path: Path) -> str:
    """The first sentence of a recipe's ``description:`` or of its leading comment block."""
    import yaml

    text = path.read_text()
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError:
        data = {}
    description = data.get("description") if isinstance(data, dict) else None
    if not description:
        comment = []
        for line in text.splitlines():
            if not line.startswith("#"):
                break
            comment.append(line.lstrip("#").strip())
        description = " ".join(comment)
    description = " ".join(str(description).split())
    end = description.find(". ")
    return description[: end + 1] if end >= 0 else description
