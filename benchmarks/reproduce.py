"""Does today's code reproduce the published reports? Re-runs one recorded run per report with its
exact command (``OMP_NUM_THREADS`` as bench ran it) and compares every metric bit for bit.

    python benchmarks/reproduce.py docs/results/paper-tab5                # its first stage-1 run
    python benchmarks/reproduce.py docs/results/paper-tab5 --run synthlt/sar/2
    python benchmarks/reproduce.py --all                                  # one run per report
    python benchmarks/reproduce.py --all --record   # and write the outcome into each report

Exit status 0 when every checked run is bit-equal, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from semantic_anchors.bench.reproduce import reproduce_run
from semantic_anchors.bench.rerender import rerender_report

ROOT = Path(__file__).resolve().parents[1]


def published_reports() -> list[Path]:
    """Every report folder under docs/results that lists its training commands."""
    return sorted(
        p.parent
        for p in (ROOT / "docs" / "results").rglob("report.md")
        if (p.parent / "results.json").is_file() and "semantic-anchors train " in p.read_text()
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reports", nargs="*", type=Path, help="published report folders")
    parser.add_argument("--all", action="store_true", help="every report under docs/results")
    parser.add_argument(
        "--run", help="DATASET/METHOD/SEED, SEED 0 or seed0 (default: the first stage-1 run)"
    )
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS (default: as recorded)")
    parser.add_argument(
        "--record",
        action="store_true",
        help="write the outcome into the report (results.json, then report.md)",
    )
    args = parser.parse_args(argv)
    reports = published_reports() if args.all else args.reports
    if not reports:
        parser.error("give report folders or --all")
    which = dict(zip(("dataset", "method", "seed"), (args.run or "").split("/"), strict=False))
    if "seed" in which:
        seed = which["seed"].removeprefix("seed")  # "0" or the run folder's name "seed0"
        if not seed.isdigit():
            parser.error(f"--run: expected DATASET/METHOD/SEED (SEED 0 or seed0), got {args.run!r}")
        which["seed"] = int(seed)
    ok = True
    for folder in reports:
        rep = reproduce_run(folder, **{k: v for k, v in which.items() if v != ""},
                            threads=args.threads)  # fmt: skip
        print("\n".join(rep.lines()), flush=True)
        ok &= rep.equal
        if args.record:
            rerender_report(folder, reproduction=rep.record())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
