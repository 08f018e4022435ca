"""Every run folder records the code that trained it (one entry per start / resume)."""

import json
import subprocess
from pathlib import Path

import torch

import semantic_anchors
from semantic_anchors._provenance import code_version, record_code_version

SRC = Path(semantic_anchors.__file__).resolve().parent


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=SRC, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_code_version_names_the_commit_and_whether_the_tree_is_dirty():
    version = code_version()
    assert version["package"] == semantic_anchors.__version__
    try:
        head = _git("rev-parse", "HEAD")
    except (OSError, subprocess.CalledProcessError):  # an installed wheel: no checkout
        assert version["commit"] is None and version["dirty"] is None
        return
    assert version["commit"] == head
    assert version["dirty"] == bool(
        _git("status", "--porcelain", "--untracked-files=no", "--", str(SRC))
    )


def test_each_start_and_resume_appends_an_entry(tmp_path):
    record_code_version(tmp_path, 0)
    record_code_version(tmp_path, 40)
    history = json.loads((tmp_path / "code_version.json").read_text())
    assert [e["step"] for e in history] == [0, 40]
    assert history[0]["commit"] == code_version()["commit"]
    assert history[0]["threads"] == torch.get_num_threads()
    capability = torch.backends.cpu.get_cpu_capability()  # e.g. AVX2, AVX512, DEFAULT
    assert (
        history[0]["cpu"].endswith(f"({capability})")
        and len(history[0]["cpu"]) > len(capability) + 3
    )
    assert not list(tmp_path.glob(".*"))  # written atomically, no temporary file left
