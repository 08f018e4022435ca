"""Two benches in one folder: the second one stops at once, naming the first, before it starts
any run (they would train the same unfinished runs into the same folders)."""

import os
import subprocess
import sys

import pytest

from semantic_anchors.bench import load_suite, run_suite
from semantic_anchors.bench.lock import BenchBusy, bench_lock
from tests._helpers.fabricate import TINY_SET


def test_a_second_bench_in_a_held_folder_stops_and_names_the_holder(tmp_path):
    suite = load_suite({
        "name": "tiny", "seeds": [0], "set": TINY_SET,
        "datasets": {"synthlt": {"recipe": "synthlt-fcn-quick"}},
        "methods": {"none": {"set": ["regularizer.name=none"]}},
    })  # fmt: skip
    with bench_lock(tmp_path):
        with pytest.raises(BenchBusy, match=f"pid {os.getpid()}, started"):
            run_suite(suite, tmp_path, jobs=1, echo=lambda _: None)
        assert not (tmp_path / "runs").exists()  # nothing started
        plan = run_suite(suite, tmp_path, jobs=1, dry_run=True, echo=lambda _: None)
        assert [r.status for r in plan] == ["planned"]  # a dry run reads only


def test_the_lock_goes_with_the_process_that_held_it(tmp_path):
    code = (
        "import os, sys; from semantic_anchors.bench.lock import bench_lock\n"
        f"with bench_lock({str(tmp_path)!r}): os._exit(0)\n"  # dies holding it
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    with bench_lock(tmp_path):  # free again: a killed bench never blocks the next one
        pass
