"""Train each distinct run once: a run is keyed by the hash of its resolved config (seed included),
and a bench reuses a finished run with the same key instead of training it again.

The key leaves out what does not change what a run computes (``trainer.progress_bar``,
``data.num_workers``). A finished run is found in the bench folder itself (another method or a
tuning trial with an identical config) and in the folders given to ``bench --reuse-from``. A
reused run folder is a copy of the source made of hard links (a plain copy across file systems),
with ``reused_from.json`` naming the source and the key, so its metrics, logs and command are the
source's own.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

__all__ = ["REUSED_FROM_FILE", "RunIndex", "config_key", "reused_from"]

REUSED_FROM_FILE = "reused_from.json"
IGNORED_KEYS = frozenset({"trainer.progress_bar", "data.num_workers"})


def config_key(config: dict[str, Any]) -> str:
    """The hex SHA-256 of a resolved config (its flattened keys, sorted; ``IGNORED_KEYS`` out).

    YAML round-trips the config first, so a config read back from ``RUN/config.yaml`` and the one
    a suite resolves give the same key.
    """
    from semantic_anchors.train.runfolder import flatten_config

    plain = yaml.safe_load(yaml.safe_dump(config))
    flat = {k: v for k, v in flatten_config(plain).items() if k not in IGNORED_KEYS}
    text = json.dumps(flat, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def reused_from(run_dir: str | Path) -> dict[str, Any] | None:
    """``{"source", "key"}`` of a reused run folder; None for a run trained in place."""
    file = Path(run_dir) / REUSED_FROM_FILE
    try:
        return json.loads(file.read_text()) if file.is_file() else None
    except ValueError:
        return None


class RunIndex:
    """Finished run folders by config key, scanned once from the given roots.

    A root is a bench folder; its finished runs are every folder under it with both
    ``config.yaml`` and ``metrics.json``. A run that itself reused another is indexed under its
    source, so chains resolve to the folder that trained.
    """

    def __init__(self, roots: Iterable[str | Path]) -> None:
        self.runs: dict[str, Path] = {}
        for root in roots:
            root = Path(root)
            if not root.is_dir():
                raise FileNotFoundError(f"--reuse-from {root}: no such folder")
            for config_file in sorted(root.rglob("config.yaml")):
                self.add(config_file.parent)

    def add(self, run_dir: Path) -> None:
        """Index one finished run folder (unfinished or unreadable ones are left out)."""
        if not (run_dir / "metrics.json").is_file():
            return
        try:
            config = yaml.safe_load((run_dir / "config.yaml").read_text())
        except (OSError, yaml.YAMLError):
            return
        if not isinstance(config, dict):
            return
        source = reused_from(run_dir)
        target = Path(source["source"]) if source and "source" in source else run_dir
        self.runs.setdefault(config_key(config), target)

    def find(self, key: str, run_dir: Path) -> Path | None:
        """The finished run with ``key``, other than ``run_dir`` itself; None if there is none."""
        found = self.runs.get(key)
        if found is None or found.resolve() == Path(run_dir).resolve():
            return None
        return found if (found / "metrics.json").is_file() else None

    @staticmethod
    def materialize(source: Path, run_dir: Path, key: str) -> None:
        """Make ``run_dir`` a copy of ``source`` (hard links where possible) and record whence.

        ``run_dir`` must not hold a run: a new (empty or missing) folder only.
        """
        run_dir = Path(run_dir)
        if run_dir.exists():
            if any(run_dir.iterdir()):
                raise FileExistsError(f"{run_dir}: not empty, will not reuse a run into it")
            run_dir.rmdir()
        run_dir.parent.mkdir(parents=True, exist_ok=True)

        def link(src: str, dst: str) -> None:
            try:
                os.link(src, dst)
            except OSError:  # another file system, or links not allowed
                shutil.copy2(src, dst)

        tmp = run_dir.with_name(f".{run_dir.name}.reuse")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(source, tmp, copy_function=link, ignore=shutil.ignore_patterns("*.lock"))
        (tmp / REUSED_FROM_FILE).write_text(
            json.dumps({"source": str(Path(source).resolve()), "key": key}, indent=2)
        )
        os.replace(tmp, run_dir)
