"""Peak-memory measurement shared by the benchmarks: CUDA allocator stats or the process's RSS.

On CPU the kernel's resident-set high-water mark (VmHWM) is reset through
``/proc/self/clear_refs`` before the measured region, so each measurement is the true peak of
that region. Run each configuration in a fresh process (see ``run_isolated``) so that allocator
caches of one configuration do not leak into another.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable

import torch


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        return int(re.search(rf"{field}:\s+(\d+)", fh.read()).group(1))


def measure_peak(fn: Callable[[], None], device: torch.device) -> dict[str, float]:
    """Run ``fn`` once and return ``{"peak_mib", "extra_mib"}``.

    ``peak_mib`` is the peak of everything alive (model, inputs, activations) during ``fn``;
    ``extra_mib`` is that peak minus what was alive just before ``fn``.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        return {"peak_mib": peak / 2**20, "extra_mib": (peak - before) / 2**20}
    before = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset VmHWM to the current RSS
    fn()
    peak = _status_kib("VmHWM")
    return {"peak_mib": peak / 1024, "extra_mib": (peak - before) / 1024}


def run_isolated(script: str, args: list[str]) -> dict:
    """Run ``python script --worker ...`` in a fresh process and return its JSON result."""
    env = dict(os.environ)
    # A fixed mmap threshold makes glibc return large freed blocks to the OS at once, so RSS
    # follows the live tensors instead of the allocator's cache.
    env.setdefault("MALLOC_MMAP_THRESHOLD_", "131072")
    out = subprocess.run(
        [sys.executable, script, "--worker", *args],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])
