"""The ``semantic-anchors`` command: ``train``, ``eval``, ``predict``, ``demo``, ``bench``, ..."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

__all__ = ["main"]


def _fmt(value) -> str:
    return (
        "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"
    )


def _summary(metrics: dict) -> str:
    keys = [k for k in ("mIoU", "aAcc", "mAcc", "top1", "head_mIoU", "body_mIoU", "tail_mIoU",
                        "head_Acc", "body_Acc", "tail_Acc") if k in metrics]  # fmt: skip
    return "  ".join(f"{k} {_fmt(metrics[k])}" for k in keys)


def _cmd_train(args: argparse.Namespace) -> int:
    import signal

    import yaml

    if args.list:
        return _cmd_recipes(args)
    if args.print_config:
        from semantic_anchors.train.config import load_config

        if args.recipe is None:
            raise ValueError("--print-config needs a RECIPE")
        print(yaml.safe_dump(load_config(args.recipe, args.set), sort_keys=False), end="")
        return 0
    if args.resume is None and args.recipe is None:
        raise ValueError("give a RECIPE (see `semantic-anchors recipes`) or --resume DIR")
    if args.resume is not None and args.recipe is not None:
        raise ValueError("give either a RECIPE or --resume DIR, not both")
    from semantic_anchors.train import TrainingInterrupted, train
    from semantic_anchors.train.divergence import TrainingDiverged
    from semantic_anchors.train.runfolder import is_global_zero_process

    run_dir: list[Path] = []

    def started(folder: Path) -> None:
        run_dir.append(folder)
        print(f"run folder: {folder}", flush=True)

    try:
        metrics = train(
            args.recipe, args.set, out_dir=args.out, resume=args.resume,
            allow_change=args.allow_change, on_start=started,
        )  # fmt: skip
    except TrainingDiverged as err:
        if is_global_zero_process():
            print(f"semantic-anchors train: {err.message()}", file=sys.stderr)
        return 3
    except TrainingInterrupted as stop:
        folder = stop.checkpoint.parent.parent
        if is_global_zero_process():
            print(
                f"semantic-anchors train: {signal.Signals(stop.signum).name} at step {stop.step}; "
                f"checkpoint saved to {stop.checkpoint}; resume with: "
                f"semantic-anchors train --resume {folder}",
                file=sys.stderr,
            )
        return 128 + int(stop.signum)
    if not is_global_zero_process():
        return 0
    folder = run_dir[0] if run_dir else args.resume or args.out
    if "paused_at_step" in metrics:
        print(
            f"paused at step {metrics['paused_at_step']}; continue with: "
            f"semantic-anchors train --resume {folder}"
        )
        return 0
    print(f"final validation at step {metrics.get('step')}: {_summary(metrics)}")
    print(f"evaluate again with: semantic-anchors eval {folder}")
    print(f"train on with: semantic-anchors train --resume {folder} --set trainer.max_steps=N")
    return 0


def _cmd_recipes(args: argparse.Namespace) -> int:
    from semantic_anchors._resources import RECIPES_DIR, SUITES_DIR, describe, list_yaml

    for title, folder, command in (
        ("recipes", RECIPES_DIR, "semantic-anchors train NAME"),
        ("benchmark suites", SUITES_DIR, "semantic-anchors bench NAME"),
    ):
        names = list_yaml(folder)
        print(f"{title} ({command}; files in {folder}):")
        width = max((len(n) for n in names), default=0)
        for name in names:
            print(f"  {name:{width}s}  {describe(folder / f'{name}.yaml')}")
    print("show a resolved recipe to copy and edit: semantic-anchors train --print-config NAME")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from semantic_anchors.catalog import KINDS, listing

    kinds = list(KINDS) if args.kind == "all" else [args.kind]
    print("\n\n".join(listing(kind, options=args.options) for kind in kinds))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from semantic_anchors.train import evaluate

    metrics = evaluate(args.path, args.set)
    print(f"{args.path} (step {metrics.get('step')}): {_summary(metrics)}")
    if args.json:
        Path(args.json).write_text(json.dumps(metrics, indent=2))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from semantic_anchors.train.export import export_run

    out = export_run(args.path, args.out, best=args.best, with_anchors=args.with_anchors,
                     format=args.format)  # fmt: skip
    size = out.stat().st_size / 2**20
    what = "with SAR's semantic anchors" if args.with_anchors else "no regularizer state"
    how = "onnxruntime" if args.format == "onnx" else "semantic_anchors.models.load_exported"
    print(f"exported the model ({what}) to {out} ({size:.1f} MB); load it with {how}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from semantic_anchors.train.predict import predict

    options = {k: getattr(args, k) for k in ("batch_size", "topk", "probs", "device")}
    done = predict(args.source, args.inputs, args.out, **options)
    print(f"predicted {len(done['images'])} images; outputs and predictions.json in {args.out}")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from semantic_anchors.train.convert import convert_official

    out = convert_official(args.checkpoint, args.recipe, args.out, args.set)
    print(f"converted {args.checkpoint} into the run folder {out}; evaluate it with: "
          f"semantic-anchors eval {out}")  # fmt: skip
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from semantic_anchors.train.demo import run_demo

    out = Path(args.out) if args.out else Path("runs") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    run_demo(out_dir=out, steps=args.steps, seed=args.seed, quick=args.quick)
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    import shlex

    from semantic_anchors.bench import (
        load_suite,
        record_invocation,
        run_suite,
        summarize,
        write_report,
    )

    suite = load_suite(args.suite).with_overrides(args.set)
    out = Path(args.out) if args.out else Path("runs") / "bench" / suite.name
    reuse = tuple(args.reuse_from)
    if not args.dry_run:
        run_suite(  # bad input? (nothing is reused or written in a dry run)
            suite, out, jobs=args.jobs, dry_run=True, echo=lambda _: None, reuse_from=reuse
        )
        record_invocation(suite, out, shlex.join(["semantic-anchors", "bench", *args.argv]))
    try:
        results = run_suite(suite, out, jobs=args.jobs, dry_run=args.dry_run, reuse_from=reuse)
    except KeyboardInterrupt:
        print(
            "\ninterrupted: the runs in progress were stopped; run the same command again to go "
            "on (finished runs are kept, interrupted ones resume from their last checkpoint)",
            file=sys.stderr,
        )
        return 130
    print(summarize(results))
    if args.dry_run:
        return 0
    if any(r.status != "failed" for r in results):
        report = write_report(
            out, report_dir=args.report_dir, embedding=args.embedding,
            diagnostics=not args.no_diagnostics, max_images=args.max_images, echo=print,
        )  # fmt: skip
        print(f"report: {report}")
    return 1 if any(r.status == "failed" for r in results) else 0


def _cmd_report(args: argparse.Namespace) -> int:
    from semantic_anchors.bench import write_report

    if args.rerender:
        from semantic_anchors.bench.rerender import rerender_report

        print(f"report: {rerender_report(args.dir)}")
        return 0
    report = write_report(
        args.dir, report_dir=args.report_dir, embedding=args.embedding,
        recompute=args.recompute, plots=not args.no_plots,
        diagnostics=not args.no_diagnostics, max_images=args.max_images, echo=print,
    )  # fmt: skip
    print(f"report: {report}")
    return 0


def _cmd_viz(args: argparse.Namespace) -> int:
    from semantic_anchors.bench.run_plots import plot_run

    for path in plot_run(args.run_dir, out_dir=args.out, embedding=args.embedding):
        print(path)
    return 0


class _Formatter(argparse.RawDescriptionHelpFormatter):
    pass


def _add_set_option(p: argparse.ArgumentParser, help: str) -> None:
    """``--set a=1 b=2 --set c=3``: every pair applies, in order (a later pair for a key wins)."""
    p.add_argument("--set", action="extend", nargs="*", default=[], metavar="KEY=VALUE",
                   help=f"{help} (may be given many times)")  # fmt: skip


def _names(kind: str) -> list[str]:
    from semantic_anchors._resources import RECIPES_DIR, SUITES_DIR, list_yaml

    return list_yaml(RECIPES_DIR if kind == "recipes" else SUITES_DIR)


def _add_diagnostics_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-images", type=int, default=1000, metavar="N",
                   help="validation images per run for the diagnostics (default 1000)")  # fmt: skip
    p.add_argument("--no-diagnostics", action="store_true",
                   help="skip the representation diagnostics (no checkpoint is loaded)")  # fmt: skip


def _add_bench_commands(sub) -> None:
    embedding = {
        "choices": ["auto", "umap", "pca"],
        "default": "auto",
        "help": "feature-embedding method (auto: UMAP if umap-learn is installed)",
    }
    p = sub.add_parser(
        "bench", help="run a benchmark suite (resumable, parallel) and report it",
        epilog=f"suites: {', '.join(_names('suites'))}", formatter_class=_Formatter,
    )  # fmt: skip
    p.add_argument("suite", help="a suite name (see `semantic-anchors recipes`) or a YAML path")
    p.add_argument("--out", type=Path, help="bench folder (default runs/bench/<suite>)")
    p.add_argument("--jobs", type=int, default=None, help="parallel runs (default: CPU cores)")
    p.add_argument("--reuse-from", type=Path, action="append", default=[], metavar="DIR",
                   help="another bench folder: a run with the same config and seed as one of its "
                   "finished runs is copied (hard links), not trained again")  # fmt: skip
    _add_set_option(p, "overrides for every run, after the suite's own")
    p.add_argument("--report-dir", type=Path, help="write the report here (default: --out)")
    p.add_argument("--embedding", **embedding)
    _add_diagnostics_options(p)
    p.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("report", help="(re)write the report of a bench folder")
    p.add_argument("dir", type=Path, help="bench folder (holds runs/)")
    p.add_argument("--report-dir", type=Path, help="write the report here (default: DIR)")
    p.add_argument("--embedding", **embedding)
    p.add_argument("--recompute", action="store_true", help="recompute cached diagnostics")
    _add_diagnostics_options(p)
    p.add_argument("--no-plots", action="store_true", help="tables only")
    p.add_argument("--rerender", action="store_true",
                   help="DIR is a published report folder: write its report.md again from its "
                   "results.json (no run folders needed; plots and commands kept)")  # fmt: skip
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("viz", help="plots of one run: embedding, similarity, training curves")
    p.add_argument("run_dir", type=Path, help="a run folder (holds checkpoints/last.ckpt)")
    p.add_argument("--out", type=Path, help="folder for the PNGs (default RUN_DIR/plots)")
    p.add_argument("--embedding", **embedding)
    p.set_defaults(func=_cmd_viz)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="semantic-anchors",
        description="Semantic Anchor Regularization: train, evaluate and compare.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "train", help="train a recipe, or resume a run folder",
        epilog=f"recipes: {', '.join(_names('recipes'))}", formatter_class=_Formatter,
    )  # fmt: skip
    p.add_argument("recipe", nargs="?", help="a recipe name (see --list) or a YAML path")
    p.add_argument("--out", type=Path, help="run folder (default runs/<name>-<time>)")
    p.add_argument("--resume", type=Path, metavar="DIR",
                   help="continue the run in DIR from its last checkpoint")  # fmt: skip
    p.add_argument("--allow-change", action="store_true",
                   help="on --resume, accept changes of seed, lr, batch size, ... (recorded in "
                        "DIR/changes.yaml with the step they took effect)")  # fmt: skip
    _add_set_option(p, "override config keys, e.g. trainer.max_steps=40 regularizer.name=sar")
    p.add_argument("--list", action="store_true", help="list the recipes and exit")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config of RECIPE (with --set applied) and exit")  # fmt: skip
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("recipes", help="list the shipped recipes and benchmark suites")
    p.set_defaults(func=_cmd_recipes)

    from semantic_anchors.catalog import KINDS

    p = sub.add_parser("list", help="list the registered names of a kind (models, losses, ...)")
    p.add_argument("kind", choices=[*KINDS, "all"], help="what to list")
    p.add_argument("--options", action="store_true", help="show each name's options and defaults")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("eval", help="re-evaluate a run folder or a checkpoint")
    p.add_argument("path", type=Path, help="run folder or .ckpt file")
    _add_set_option(
        p, "override config keys, e.g. eval.mode=slide eval.crop_size=480 eval.stride=320"
    )
    p.add_argument("--json", type=Path, help="also write the metrics here")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("export", help="write a run's model as a plain file (no SAR state)")
    p.add_argument("path", type=Path, help="run folder or .ckpt file")
    p.add_argument("--out", type=Path, required=True, help="the output file, e.g. model.pt")
    p.add_argument("--best", action="store_true", help="export checkpoints/best.ckpt")
    p.add_argument("--with-anchors", action="store_true",
                   help="also store SAR's semantic anchors, for anchor-aware inference with "
                        "load_exported(FILE, anchor_fusion=BETA)")  # fmt: skip
    p.add_argument("--format", choices=["torch", "onnx"], default="torch", help="(default torch)")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("predict", help="label maps or top-k classes of new images")
    p.add_argument("source", type=Path, help="a run folder, an exported file or an .onnx file")
    p.add_argument("inputs", nargs="+", type=Path, help="images, and folders of .png/.jpg images")
    p.add_argument("--out", type=Path, required=True, help="a new folder for the outputs")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default 8)")
    p.add_argument("--topk", type=int, default=5, help="classification: classes per image (5)")
    p.add_argument("--probs", action="store_true", help="segmentation: also probs/NAME.npy")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, ... (PyTorch sources)")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser(
        "convert-official", help="a checkpoint of the SAR authors' code as a run folder"
    )
    p.add_argument("checkpoint", type=Path, help="the official .pth (mmseg layout)")
    p.add_argument("--recipe", required=True, help="its recipe, e.g. cityscapes-fcn-hr48")
    p.add_argument("--out", type=Path, required=True, help="the run folder to write")
    _add_set_option(p, "overrides, e.g. data.root=/data/cityscapes")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("demo", help="CE vs CE + SAR on the embedded synthlt data (CPU, minutes)")
    p.add_argument("--out", default=None, help="folder for the two runs (default runs/demo-<time>)")
    p.add_argument("--steps", type=int, default=None, help="training steps per run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true",
                   help="150 steps per run: checks that everything works (numbers mean little)")  # fmt: skip
    p.set_defaults(func=_cmd_demo)

    _add_bench_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv[1:]  # what followed the subcommand, recorded by `bench`
    try:
        return args.func(args)
    except BrokenPipeError:  # e.g. `semantic-anchors recipes | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (ValueError, FileNotFoundError, FileExistsError, ModuleNotFoundError) as err:  # fmt: skip
        message = " ".join(str(err).split())  # one line (RunFolderBusy, a missing extra included)
        print(f"semantic-anchors {args.command}: error: {message}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk or an unwritable folder: one line, no traceback
        from semantic_anchors.train.checkpoint import WRITE_ERRNOS

        if err.errno not in WRITE_ERRNOS:
            raise
        where = f" ({err.filename})" if getattr(err, "filename", None) else ""
        message = " ".join(str(err.strerror or err).split())
        print(f"semantic-anchors {args.command}: error: {message}{where}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
