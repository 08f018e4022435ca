"""``semantic-anchors list``: every registered name of every kind is listed and documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from semantic_anchors.catalog import KINDS, listing, registry
from semantic_anchors.cli import main

DOCS = Path(__file__).resolve().parents[1] / "docs"

# Where each kind is documented: every registered name must appear there in backticks.
PAGES = {
    "models": ["models.md", "models_hf.md"],
    "datasets": ["data.md"],
    "regularizers": ["training.md", "baselines.md"],
    "losses": ["training.md", "longtail.md"],
    "calibrations": ["training.md", "longtail.md"],
    "anchors": ["sar.md"],
    "prototype-heads": ["protoseg.md"],
}


def test_every_kind_has_its_pages() -> None:
    assert set(PAGES) == set(KINDS)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_name_is_listed(kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", kind, "--options"]) == 0
    out = capsys.readouterr().out
    names = registry(kind).names()
    assert names, kind
    listed = re.findall(r"^  (\S+)  ", out, flags=re.M)
    assert listed == names
    assert out.splitlines()[0] == f"{kind} ({len(names)}):"
    for entry in registry(kind).entries():
        assert entry.description and entry.description in out


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_name_is_documented(kind: str) -> None:
    text = "\n".join((DOCS / page).read_text() for page in PAGES[kind])
    quoted = set(re.findall(r"`([^`\n]+)`", text))
    missing = [n for n in registry(kind).names() if n not in quoted]
    assert not missing, f"{kind} not documented in {PAGES[kind]}: {missing}"


def test_options_shows_defaults_and_required() -> None:
    text = listing("losses", options=True)
    assert "    gamma = 2.0" in text  # focal's default, from its signature
    assert "num_classes" not in text  # supplied by build_loss, not a user option


def test_unknown_kind_is_an_error() -> None:
    with pytest.raises(ValueError, match="kind: expected one of"):
        registry("optimizers")


def _modules_using(decorator: str, package: Path) -> set[str]:
    src = package.parents[1]
    return {
        ".".join(path.relative_to(src).with_suffix("").parts)
        for path in package.rglob("*.py")
        if re.search(rf"^@{decorator}\(", path.read_text(), flags=re.M)
    }


def test_the_registries_import_every_module_that_registers() -> None:
    """A registry filled by decorators imports its modules before a query: a module that
    registers but is missing from that list would be listed only after someone imported it."""
    from semantic_anchors.data.registry import DATASETS
    from semantic_anchors.models.registry import MODELS

    src = Path(__file__).resolve().parents[1] / "src" / "semantic_anchors"
    assert _modules_using("register_model", src / "models") == set(MODELS._modules)
    assert _modules_using("register_dataset", src / "data") == set(DATASETS._modules)
