"""LICENSE, CITATION.cff and the README's citation agree with pyproject.toml and with each other."""

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PAPER = "Beyond Prototypes: Semantic Anchor Regularization for Better Representation Learning"
AUTHORS = ["Ge", "Nie", "Huang", "Liu", "Wang", "Zheng", "Li", "Duan"]  # the paper's author line


def _project() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_license_file_is_apache_2_and_ships_with_the_package():
    text = (ROOT / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License\n                           Version 2.0")
    assert "END OF TERMS AND CONDITIONS" in text and text.count("\n") == 202
    assert "Copyright 2026 semantic-anchors developers" in text and "[yyyy]" not in text
    assert _project()["license"] == "Apache-2.0" and _project()["license-files"] == ["LICENSE"]


def test_citation_cff_matches_the_project_and_the_paper():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    project = _project()
    assert cff["cff-version"] == "1.2.0" and cff["title"] == project["name"]
    assert cff["version"] == project["version"] and cff["license"] == project["license"]
    assert [a["name"] for a in cff["authors"]] == [a["name"] for a in project["authors"]]
    paper = cff["preferred-citation"]
    assert paper["title"] == PAPER and paper["year"] == 2024
    assert [a["family-names"] for a in paper["authors"]] == AUTHORS
    assert paper["repository-code"] == "https://github.com/geyanqi/SAR"


def test_readme_bibtex_is_the_same_paper():
    readme = (ROOT / "README.md").read_text()
    bib = re.search(r"```bibtex\n(.*?)```", readme, re.S).group(1)
    fields = dict(re.findall(r"(\w+)\s*=\s*\{(.*?)\},?\n(?=\s*\w+\s*=|\})", bib, re.S))
    assert fields["title"] == PAPER and fields["year"] == "2024"
    names = [n.strip().split(",")[0] for n in " ".join(fields["author"].split()).split(" and ")]
    assert names == AUTHORS
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())["preferred-citation"]
    assert fields["doi"] == cff["doi"] and "https://github.com/geyanqi/SAR" in readme
