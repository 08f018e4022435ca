"""One prepared GPU check of SAR: step time and memory, the p2a term, torch.compile, training.

On one CUDA GPU, within ``--budget`` seconds (default 480, i.e. 8 minutes, all sections
together), it measures and writes ``docs/benchmarks/gpu.md`` (``--out-md``) and a JSON file of
all figures (``--out-json``), with the GPU's name, the torch / CUDA versions and the date:

1. ``models``: a bf16-autocast SGD training step of each registry segmentor (``fcn_r101_d8``,
   ``deeplabv3_r101_d8``, ``fcn_hr48``, ``ocrnet_hr48``, ``segformer_b0``, ``upernet_swin_t``)
   at the paper's crops (512x1024 with 19 classes, 512x512 with 150, batch 2), without and with
   SAR: median step time over interleaved steps (CUDA events) and peak allocated memory;
2. ``p2a``: ``pixel_to_anchor_loss`` against the naive one-hot formulation at C = 19 and 150:
   time, peak memory and numerical agreement of forward + backward;
3. ``compile``: ``torch.compile`` of a model's loss with SAR: does it compile, graphs and
   graph breaks, compiled against eager step time;
4. ``train``: a short run of the ``synthlt-fcn-quick`` recipe with SAR through
   ``semantic-anchors train`` on the GPU (loss down? SAR gate open?) and a single-GPU DDP
   (NCCL) run through the same command.

Each section runs in its own process with a share of the budget; what does not fit is skipped
with a note on the page, and a section stopped at its budget keeps the rows it measured.
``--smoke`` runs every section on CPU with tiny sizes (its figures mean nothing) so the script
never rots; ``tests/benchmarks/test_scripts.py`` runs it.

Usage::

    python benchmarks/gpu_check.py                        # on a CUDA machine, about 8 minutes
    python benchmarks/gpu_check.py --smoke --out-md /tmp/gpu.md --out-json /tmp/gpu.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
from _gpu_report import render  # noqa: E402
from _gpu_train import run_training, run_with_timeout  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SEGMENTORS = ["fcn_r101_d8", "deeplabv3_r101_d8", "fcn_hr48", "ocrnet_hr48", "segformer_b0",
              "upernet_swin_t"]  # fmt: skip
# Sections in the order they run, with their share of the budget (leftovers flow to the next).
SHARES = {"p2a": 0.05, "models": 0.50, "train": 0.20, "compile": 0.25}
RESERVE_S = 10.0  # kept back for start-up and writing the page

GPU = {
    "device": "cuda", "amp": "bf16", "batch": 2, "budget": 480.0, "threads": None,
    "models": SEGMENTORS, "second_models": None,  # None: all of them at the later crops too
    "crops": [[512, 1024, 19], [512, 512, 150]],
    "warmup": 3, "steps": 10, "memory_warmup": 2,
    "p2a_cases": [[512, 1024, 19], [512, 1024, 150], [512, 512, 150]],
    "feat_dim": 512, "output_stride": 8, "reps": 20,
    "compile_model": "fcn_r50_d8", "compile_crop": [512, 1024], "compile_classes": 19,
    "compile_backend": "inductor",
    "train_recipe": "synthlt-fcn-quick", "train_accelerator": "gpu", "train_steps": 500,
    "ddp_steps": 60, "train_parallel": False,
    "train_sets": ["trainer.precision=bf16-mixed", "trainer.log_every=5",
                   "trainer.progress_bar=false", "data.num_workers=4"],
}  # fmt: skip
SMOKE = {
    **GPU, "device": "cpu", "amp": "fp32", "budget": 300.0, "threads": 1,
    "models": ["fcn_small", "fcn_r18_d8"], "second_models": ["fcn_small"],
    "crops": [[32, 64, 19], [32, 32, 150]],
    "warmup": 0, "steps": 2, "memory_warmup": 0,
    "p2a_cases": [[128, 256, 19], [128, 256, 150]], "feat_dim": 64, "reps": 2,
    "compile_model": "fcn_small", "compile_crop": [32, 32], "compile_backend": "eager",
    "train_accelerator": "cpu", "train_steps": 4, "ddp_steps": 3, "train_parallel": True,
    "train_sets": ["data.options={num_images: 32}", "data.val_options={num_images: 8}",
                   "data.batch_size=8", "data.val_batch_size=8", "data.num_workers=0",
                   "trainer.log_every=1", "trainer.progress_bar=false", "trainer.threads=1"],
}  # fmt: skip


# ---------------------------------------------------------------------------- workers
def _writer(path: Path):
    def write(payload: dict) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, indent=1))
        os.replace(tmp, path)

    return write


def _left(cfg: dict) -> float:
    return cfg["deadline"] - time.time()


def worker_p2a(cfg: dict, write) -> None:
    from _gpu_measure import measure_p2a

    rows, notes = [], []
    for h, w, classes in cfg["p2a_cases"]:
        if _left(cfg) < 2.0:
            notes.append(f"C={classes} at {h}x{w}: skipped, the section's budget is spent")
            continue
        rows.append(measure_p2a(classes, (h, w), cfg))
        write({"rows": rows, "notes": notes})
    write({"rows": rows, "notes": notes})


def _estimate(cost: dict, name: str, crop: tuple[int, int]) -> float:
    """Seconds a model will take at ``crop``: its time at another crop scaled by the pixels,
    else the slowest model at this crop, else the slowest so far (0 before the first)."""
    pixels = crop[0] * crop[1]
    same_model = [s * pixels / (h * w) for (n, h, w), s in cost.items() if n == name]
    same_crop = [s for (_, h, w), s in cost.items() if (h, w) == crop]
    return max(same_model or same_crop or list(cost.values()) or [0.0])


def worker_models(cfg: dict, write) -> None:
    from _gpu_measure import free_memory, measure_model

    rows, notes, cost = [], [], {}
    device = torch.device(cfg["device"])
    for i, (h, w, classes) in enumerate(cfg["crops"]):
        for name in (
            cfg["models"] if i == 0 or cfg["second_models"] is None else cfg["second_models"]
        ):
            where = f"`{name}` at {h}x{w}, C={classes}"
            estimate = _estimate(cost, name, (h, w))
            if estimate * 1.1 > _left(cfg):
                notes.append(f"{where}: skipped, needs ~{estimate:.0f} s, "
                             f"{max(_left(cfg), 0):.0f} s left in the budget")  # fmt: skip
                continue
            start = time.monotonic()
            try:
                rows.append(measure_model(name, classes, (h, w), cfg))
            except ModuleNotFoundError as err:  # an optional extra (transformers)
                notes.append(f"{where}: skipped, `{err.name}` is not installed ({err})")
            except torch.OutOfMemoryError:
                notes.append(f"{where}: out of memory")
            except Exception as err:  # report and go on: one model must not sink the page
                notes.append(f"{where}: failed, {type(err).__name__}: {str(err)[:200]}")
            free_memory(device)
            cost[(name, h, w)] = time.monotonic() - start
            write({"rows": rows, "notes": notes})
    write({"rows": rows, "notes": notes})


def worker_compile(cfg: dict, write) -> None:
    from _gpu_compile import measure_compile

    measure_compile(cfg, lambda result: write({"rows": [result], "notes": []}))


WORKERS = {"p2a": worker_p2a, "models": worker_models, "compile": worker_compile}


def run_worker(section: str, config_path: Path, result_path: Path) -> None:
    cfg = json.loads(config_path.read_text())
    torch.manual_seed(0)
    if cfg["threads"]:  # one thread: on a shared CPU, more threads wait for each other
        torch.set_num_threads(cfg["threads"])
    if cfg["device"] == "cuda":
        torch.backends.cudnn.benchmark = True  # as mmseg trains; the warm-up absorbs the tuning
    WORKERS[section](cfg, _writer(result_path))


# ---------------------------------------------------------------------------- driver
def run_section(section: str, cfg: dict, budget: float, scratch: Path) -> dict:
    """One section in a fresh process, stopped at ``budget`` seconds (rows kept)."""
    start = time.monotonic()
    out = {"status": "ok", "budget_s": budget, "notes": [], "rows": []}
    if section == "train":
        runs = Path(cfg["runs_dir"])
        if cfg["train_parallel"]:  # the CPU smoke run: two small processes side by side
            with ThreadPoolExecutor(2) as pool:
                jobs = [
                    pool.submit(run_training, cfg, runs, ddp=d, timeout=budget)
                    for d in (False, True)
                ]
                out["rows"] = [job.result() for job in jobs]
        else:
            single = run_training(cfg, runs, ddp=False, timeout=budget * 0.6)
            left = budget - (time.monotonic() - start)
            out["rows"] = [single, run_training(cfg, runs, ddp=True, timeout=left)]
        if any(r["status"] != "ok" for r in out["rows"]):
            out["status"] = "partial"
    else:
        config_path = scratch / f"{section}-config.json"
        result_path = scratch / f"{section}-result.json"
        worker_cfg = {**cfg, "deadline": time.time() + budget - 3.0}
        config_path.write_text(json.dumps(worker_cfg))
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", section,
               "--worker-config", str(config_path), "--worker-result", str(result_path)]  # fmt: skip
        env = dict(os.environ)
        if cfg["device"] == "cpu":  # large freed blocks go back to the OS: RSS follows tensors
            env["MALLOC_MMAP_THRESHOLD_"] = "131072"
        done = run_with_timeout(cmd, budget, env)
        if result_path.is_file():
            out.update(json.loads(result_path.read_text()))
        if done["returncode"] is None:
            out["status"] = "timeout"
            out["notes"].append(f"stopped at its budget of {budget:.0f} s; rows measured "
                                "before are kept")  # fmt: skip
        elif done["returncode"] != 0:
            out["status"] = "failed"
            tail = " / ".join(done["output"].strip().splitlines()[-3:])
            out["notes"].append(f"the worker failed (exit {done['returncode']}): {tail}")
        elif out["notes"]:
            out["status"] = "partial"
    out["seconds"] = time.monotonic() - start
    return out


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            names = [line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")]
    except OSError:
        names = []
    return names[0] if names else platform.processor() or "unknown model"


def device_meta(cfg: dict, args: argparse.Namespace, command: str) -> dict:
    cuda = cfg["device"] == "cuda"
    props = torch.cuda.get_device_properties(0) if cuda else None
    return {
        "device": cfg["device"], "smoke": args.smoke,
        "device_name": props.name if cuda else f"CPU ({_cpu_name()}, {os.cpu_count()} cores)",
        "device_memory_gib": props.total_memory / 2**30 if cuda else None,
        "torch": torch.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command, "amp": cfg["amp"], "batch": cfg["batch"], "budget_s": cfg["budget"],
    }  # fmt: skip


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="every section on CPU with tiny sizes (figures mean nothing)",
    )
    parser.add_argument("--out-md", type=Path, help="the page (default docs/benchmarks/gpu.md)")
    parser.add_argument(
        "--out-json", type=Path, help="all figures (default docs/benchmarks/gpu.json)"
    )
    parser.add_argument("--budget", type=float, help="seconds for all sections (default 480)")
    parser.add_argument("--sections", nargs="+", choices=list(SHARES), default=list(SHARES))
    parser.add_argument("--models", nargs="+", help=f"registry names (default {SEGMENTORS})")
    parser.add_argument(
        "--runs-dir",
        type=Path,
        help="keep the training run folders here (default: a temporary folder)",
    )
    parser.add_argument("--worker", choices=list(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--worker-config", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--worker-result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke and not args.worker and (args.out_md is None or args.out_json is None):
        parser.error("--smoke needs --out-md and --out-json: its figures must not replace "
                     "docs/benchmarks/gpu.md")  # fmt: skip
    args.out_md = args.out_md or ROOT / "docs" / "benchmarks" / "gpu.md"
    args.out_json = args.out_json or ROOT / "docs" / "benchmarks" / "gpu.json"
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        run_worker(args.worker, args.worker_config, args.worker_result)
        return 0
    if not args.smoke and not torch.cuda.is_available():
        print("gpu_check.py: no CUDA device here; run it on a CUDA machine, or pass --smoke for "
              "the CPU self-test (whose figures mean nothing)", file=sys.stderr)  # fmt: skip
        return 2
    cfg = dict(SMOKE if args.smoke else GPU)
    if args.budget is not None:
        cfg["budget"] = args.budget
    if args.models:
        cfg["models"], cfg["second_models"] = args.models, None
    argv_shown = sys.argv[1:] if argv is None else list(argv)
    command = shlex.join(["python", "benchmarks/gpu_check.py", *argv_shown])
    start = time.monotonic()
    deadline = start + cfg["budget"] - RESERVE_S
    sections: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as scratch:
        stamp = time.strftime("gpu_check-%Y%m%d-%H%M%S")  # a new folder: runs never overwrite
        cfg["runs_dir"] = str((args.runs_dir or Path(scratch)) / stamp)
        todo = [s for s in SHARES if s in args.sections]
        for i, section in enumerate(todo):
            left = deadline - time.monotonic()
            share = SHARES[section] / sum(SHARES[s] for s in todo[i:])
            print(f"[gpu_check] {section}: {left * share:.0f} s budget", flush=True)
            sections[section] = run_section(section, cfg, max(left * share, 1.0), Path(scratch))
            print(f"[gpu_check] {section}: {sections[section]['status']} in "
                  f"{sections[section]['seconds']:.0f} s", flush=True)  # fmt: skip
    meta = {**device_meta(cfg, args, command), "total_seconds": time.monotonic() - start}
    result = {"meta": meta, "config": cfg, "sections": sections}
    page = render(result)
    for path, text in ((args.out_md, page), (args.out_json, json.dumps(result, indent=2))):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + ("" if text.endswith("\n") else "\n"))
    print(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
