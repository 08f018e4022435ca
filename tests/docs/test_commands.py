"""Every documented ``semantic-anchors ...`` command parses with the real parser and runs, safely.

Collected by ``tests/_helpers/doc_commands.py`` (see there how shell lines are read): the shell blocks and
inline code spans of README.md and docs/**/*.md, the comments of the shipped recipes and the help
texts of ``semantic_anchors.cli.build_parser``'s parser. Left out: everything inside a
``<details>`` block of ``docs/results/**``, i.e. the per-run ``train`` lines a published report
lists (records that ``bench`` wrote, not commands to type). In a transcript block (``$ ``
prompts) the lines after a command are its expected output: each must be a line it prints
(``...`` matches anything), and an ``error:`` line means exit status 2.

Every occurrence is parsed (``test_command_parses``, one test per occurrence, ``FILE:LINE``).
Identical commands (after substitution) run once (``test_command_runs``, named by the first
occurrence), in a temporary working directory:

* ``train RECIPE ...``: plus ``--print-config``; the training module is then built from the
  printed config, read back as a recipe file: on the CPU with the real dataset where it needs
  nothing on disk (``synthlt``, Fashion-MNIST), else on the meta device with a stand-in dataset
  description (paper-scale models). ``model.pretrained`` / ``finetune.init_from`` are loaded.
* ``train --resume DIR ...``: the resume is resolved (``resume_config``: checkpoint read, changes
  allowed or refused) and the module built; nothing is trained.
* ``bench SUITE ...``: plus ``--dry-run``. ``demo ...``: plus ``--steps 2`` (slow).
* ``recipes``, ``--list``, ``--print-config``, ``eval``, ``export``, ``report``, ``viz``: as
  written.
* ``predict SOURCE INPUTS...``: as written, on tiny synthlt images written where the inputs are
  named (a file for an image name, else a folder of two images); a source ending in ``.pt`` /
  ``.onnx`` is the docs' run exported in that format, any other the run folder.

Placeholders are substituted, not skipped: any run folder a command reads (``runs/<run>``,
``runs/exp1``, ``RUN``, ``--resume DIR``) is a copy of one tiny SAR run, a bench folder a copy of
the one-run bench folder holding it (trained once per session); ``model.pretrained`` /
``finetune.init_from`` folders are tiny runs of the stage-1 command the docs give for them
(``STAGE1_RUNS``); recipe placeholders are in ``RECIPE_PLACEHOLDERS``. A command that cannot run
here (weight files, a dataset on disk) is in ``SKIP`` with its reason and is only parsed. An
inline span that only names a subcommand (``semantic-anchors eval``) is a mention: the subcommand
must exist. Expensive runs are slow (``SLOW``).
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from semantic_anchors.cli import main
from tests._helpers.doc_commands import (
    DocCommand,
    all_commands,
    is_mention,
    parse,
    shell_commands,
    subcommands,
    without_elisions,
)
from tests._helpers.fabricate import TINY_SET

COMMANDS = all_commands()

# ----------------------------------------------------------------------------- the tables
SKIP = {
    "convert-official": "needs the authors' released checkpoint (.pth) and the Cityscapes data",
    "finetune.init_from=runs/ade-sar": "stage 2 of a paper-scale ADE20K run (GPUs, the dataset)",
    "model.pretrained=/path/to/": "needs the ImageNet weight file",
    "model.pretrained=/weights/": "needs the ImageNet weight file",
    "model.pretrained=checkpoints/mit-b2": "needs the SegFormer-B2 checkpoint folder",
}
"""Command text (a substring) -> why it is only parsed."""

SLOW = {
    "demo": "two training runs on the full synthlt data",
    "regularizer.anchors=text": "embeds the class names with the sentence-transformers model",
    "viz ": "plots with a UMAP embedding",
}
"""Command text (a substring) -> why it runs with the slow tests."""

RECIPE_PLACEHOLDERS = {"NAME": "synthlt-fcn-quick", "RECIPE": "synthlt-fcn-quick"}
"""A recipe argument standing for any recipe. ``my-recipe.yaml`` (your own recipe file) is
written into the working directory: the resolved ``synthlt-fcn-quick``, or in the transcript of
its YAML error a file with that error (``BROKEN_RECIPE``)."""

BROKEN_RECIPE = "# two keys on one line\nname: mine\nbase: synthlt-fcn-quick\nseed: 1 name: x\n"

STAGE1_RUNS = {
    "runs/fashion-lt-smallcnn-quick": ("fashion-lt-smallcnn-quick", ()),
    "runs/fashion-scenes-fcn-quick": ("fashion-scenes-fcn-quick", ("regularizer.name=sar",)),
    "runs/fashion-lt-smallcnn-mislas-stage1": ("fashion-lt-smallcnn-mislas-stage1", ()),
    "runs/pre-sar": ("fashion-lt-smallcnn-quick", ("regularizer.name=sar",)),
}
"""A ``model.pretrained`` / ``finetune.init_from`` run folder -> the documented stage-1 command
that makes it (recipe, overrides); trained tiny on first use."""

PREDICT_SOURCES = {".pt": "{EXPORTED}", ".onnx": "{ONNX}"}
"""A ``predict`` source's suffix -> the docs' run exported in that format (else the run folder)."""

WEIGHT_KEYS = ("model.pretrained", "finetune.init_from")
LOCAL_DATA = {"synthlt", "fashion-lt", "fashion-mnist", "fashion-scenes-lt"}  # nothing on disk
TINY_DATA = {
    "synthlt": ["data.options={num_images: 24}", "data.val_options={num_images: 8}"],
    "fashion-lt": ["data.options={imbalance_factor: 10, n_max: 20}"],
    "fashion-scenes-lt": ["data.options={num_train_images: 24, num_val_images: 8}"],
}
TINY_TRAINING = [
    "data.num_workers=0", "data.batch_size=8", "data.val_batch_size=8", "trainer.max_steps=2",
    "trainer.val_every=2", "trainer.log_every=1", "trainer.progress_bar=false",
    "trainer.limit_val_batches=1",
]  # fmt: skip
# SAR's gate opens by the third step (a strong anchor CE, every anchor classified as its own
# class): the run has semantic anchors for `eval --set eval.anchor_fusion=...` and
# `export --with-anchors`.
DOC_RUN_SUITE = {
    "name": "docs", "seeds": [0], "set": TINY_SET,
    "datasets": {"synthlt": {"recipe": "synthlt-fcn-quick"}},
    "methods": {"sar": {"set": [
        "regularizer.name=sar", "regularizer.delta=0.01", "regularizer.lambda_aux=10",
        "trainer.max_steps=4", "trainer.val_every=4",
    ]}},
}  # fmt: skip


def _reason(text: str, table: dict[str, str]) -> str | None:
    return next((why for key, why in table.items() if key in text), None)


# ----------------------------------------------------------------------------- planning
@dataclass(frozen=True)
class Plan:
    """How a documented command runs here: ``kind`` is ``cli`` (``main(argv)`` as is),
    ``train`` (``--print-config`` + the module), ``resume`` or ``skip``; ``argv`` holds
    ``{RUN}`` / ``{BENCH}`` where a fixture folder goes."""

    kind: str
    argv: tuple[str, ...]
    expected: tuple[str, ...] = ()
    reason: str = ""
    stage1: tuple[str, ...] = ()  # STAGE1_RUNS folders the config loads weights from

    @property
    def slow(self) -> str | None:
        if self.stage1:
            return "trains its stage-1 run first"
        if self.argv[0] == "report" and "--no-diagnostics" not in self.argv:
            return "representation diagnostics of the run"
        return _reason(" ".join(self.argv) + " ", SLOW)


# option -> its number of values
DRY_RUN_MOOT = {"--out": 1, "--report-dir": 1, "--no-diagnostics": 0, "--embedding": 1,
                "--max-images": 1}  # fmt: skip


def _drop_options(argv: list[str], options: dict[str, int]) -> list[str]:
    out, pending = [], 0  # pending: values of a dropped option still to drop
    for token in argv:
        if pending:
            pending -= 1
        elif token in options:
            pending = options[token]
        else:
            out.append(token)
    return out


def _stage1_folders(recipe: str, overrides: list[str]) -> tuple[str, ...]:
    """The run folders the resolved config loads weights from (``WEIGHT_KEYS``), each one of
    ``STAGE1_RUNS``; none for a recipe that does not resolve (an error the run test expects)."""
    from semantic_anchors.train.config import load_config

    try:
        with contextlib.redirect_stderr(io.StringIO()):  # notes of dropped options
            config = load_config(recipe, overrides)
    except (ValueError, FileNotFoundError):
        return ()
    folders = [config["model"].get("pretrained"), config["finetune"]["init_from"]]
    for key, folder in zip(WEIGHT_KEYS, folders, strict=True):
        if folder is not None and folder not in STAGE1_RUNS:
            raise ValueError(f"{key}={folder}: add the folder to STAGE1_RUNS or the command to "
                             "SKIP")  # fmt: skip
    return tuple(f for f in folders if f is not None)


def plan(cmd: DocCommand) -> Plan:
    text = cmd.text
    argv = list(without_elisions(cmd.argv))
    args = parse(tuple(argv))
    skip = _reason(text, SKIP)
    if skip:
        return Plan("skip", tuple(argv), reason=skip)

    def put(old: str, new: str) -> None:
        argv[argv.index(old)] = new

    kind, stage1 = "cli", ()
    if args.command == "train":
        if args.resume is not None:
            put(str(args.resume), "{RUN}")
            kind = "resume"
        elif args.recipe in RECIPE_PLACEHOLDERS:
            put(args.recipe, RECIPE_PLACEHOLDERS[args.recipe])
        if args.recipe is not None and not (args.list or args.print_config):
            kind = "train"
            argv = _drop_options(argv, {"--out": 1})  # --print-config writes no run folder
        if kind == "train":
            stage1 = _stage1_folders(argv[1], args.set)
    elif args.command in ("eval", "export"):
        put(str(args.path), "{RUN}")
    elif args.command == "predict":
        source = str(args.source)
        put(source, PREDICT_SOURCES.get(Path(source).suffix, "{RUN}"))
    elif args.command == "viz":
        put(str(args.run_dir), "{RUN}")
    elif args.command == "report":
        put(str(args.dir), "{BENCH}")
        if args.report_dir is not None:  # a folder it writes: any name will do
            put(str(args.report_dir), "report")
    elif args.command == "bench":
        # A dry run only resolves the plan: what the options after training change is moot.
        argv = _drop_options(argv, DRY_RUN_MOOT)
        argv += [] if args.dry_run else ["--dry-run"]
        for folder in args.reuse_from:  # a finished bench to reuse runs from: the fixture's
            put(str(folder), "{BENCH}")
    elif args.command == "demo" and args.steps is None:
        argv += ["--steps", "2"]
    return Plan(kind, tuple(argv), cmd.expected, stage1=stage1)


def _plans() -> tuple[list, dict[Plan, list[str]]]:
    """pytest params of the unique plans, and the commands of each (their ids)."""
    seen: dict[Plan, list[str]] = {}
    for cmd in COMMANDS:
        with contextlib.suppress(ValueError):  # test_command_parses says why
            if not (cmd.problem or is_mention(cmd)):
                seen.setdefault(plan(cmd), []).append(cmd.id)
    params = []
    for p, ids in seen.items():
        marks = []
        if p.kind == "skip":
            marks.append(pytest.mark.skip(reason=f"{ids[0]}: parsed only: {p.reason}"))
        elif p.slow:
            marks.append(pytest.mark.slow)
        params.append(pytest.param(p, id=ids[0], marks=marks))
    return params, seen


PLANS, PLAN_SOURCES = _plans()


# ----------------------------------------------------------------------------- fixtures
def _tiny(recipe: str) -> list[str]:
    from semantic_anchors.train.config import load_config

    return [*TINY_DATA[load_config(recipe)["data"]["name"]], *TINY_TRAINING]


@pytest.fixture(scope="session")
def doc_bench(tmp_path_factory) -> Path:
    """A bench folder of one tiny SAR run (``runs/synthlt/sar/seed0``), as ``bench`` leaves it."""
    from semantic_anchors.bench import expand_runs, load_suite, run_suite
    from semantic_anchors.bench.runner import resolve_overrides
    from semantic_anchors.train import train

    out = tmp_path_factory.mktemp("doc-bench") / "bench"
    suite = load_suite(DOC_RUN_SUITE)
    (spec,) = expand_runs(suite, out)
    overrides, _ = resolve_overrides(spec)
    with contextlib.redirect_stdout(io.StringIO()):
        train(spec.recipe, overrides, out_dir=spec.run_dir)  # in-process: no start-up cost
    (result,) = run_suite(suite, out, jobs=1, echo=lambda _: None)
    assert result.status == "skipped", result  # the run above is the suite's run
    with open(spec.run_dir / "logs" / "train" / "metrics.csv") as log:
        gate = [row["reg/gate_open"] for row in csv.DictReader(log) if row["reg/gate_open"]]
    assert gate[-1] == "1.0", f"SAR's gate of the docs' run never opened: {gate}"
    return out


@pytest.fixture(scope="session")
def stage1_runs(tmp_path_factory):
    """``folder -> path`` of the tiny ``STAGE1_RUNS``, each trained on first use."""
    from semantic_anchors.train import train

    made: dict[str, Path] = {}

    def get(folder: str) -> Path:
        if folder not in made:
            recipe, overrides = STAGE1_RUNS[folder]
            out = tmp_path_factory.mktemp("stage1") / Path(folder).name
            with contextlib.redirect_stdout(io.StringIO()):
                train(recipe, [*overrides, *_tiny(recipe)], out_dir=out)
            made[folder] = out
        return made[folder]

    return get


@pytest.fixture(scope="session")
def doc_exports(doc_bench, tmp_path_factory):
    """``placeholder -> file`` of the docs' run exported as a torch file / an ONNX file, each
    written on first use."""
    from semantic_anchors.train.export import export_run

    run = doc_bench / "runs" / "synthlt" / "sar" / "seed0"
    made: dict[str, Path] = {}

    def get(placeholder: str) -> Path:
        if placeholder not in made:
            suffix = next(k for k, v in PREDICT_SOURCES.items() if v == placeholder)
            out = tmp_path_factory.mktemp("doc-export") / f"model{suffix}"
            made[placeholder] = export_run(
                run, out, format="onnx" if suffix == ".onnx" else "torch"
            )
        return made[placeholder]

    return get


def _predict_inputs(argv: list[str], folder: Path) -> None:
    """Tiny synthlt images where a ``predict`` command names its inputs."""
    from PIL import Image

    from semantic_anchors.data import build_dataset
    from semantic_anchors.train.predict_io import IMAGE_SUFFIXES

    dataset = build_dataset("synthlt", split="val", num_images=2)
    pictures = [Image.fromarray(dataset[i][0].permute(1, 2, 0).numpy()) for i in range(2)]
    for name in parse(tuple(argv)).inputs:
        path = folder / name
        if path.suffix.lower() in IMAGE_SUFFIXES:
            path.parent.mkdir(parents=True, exist_ok=True)
            pictures[0].save(path)
        else:
            path.mkdir(parents=True, exist_ok=True)
            for i, picture in enumerate(pictures):
                picture.save(path / f"image{i}.png")


# ----------------------------------------------------------------------------- running
def _data_info(config: dict) -> tuple[dict, str]:
    """The training set's description and the device the module is built on: the real dataset
    where it needs nothing on disk, else a stand-in of the model's task on the meta device."""
    from semantic_anchors.data.longtail import head_body_tail
    from semantic_anchors.models import get_model_entry
    from semantic_anchors.train.data import AnchorDataModule

    if config["data"]["name"] in LOCAL_DATA and config["data"]["root"] is None:
        return AnchorDataModule(config["data"], int(config["seed"])).info(), "cpu"
    frequencies = [400.0, 200.0, 100.0, 50.0, 25.0]
    return {
        "task": get_model_entry(config["model"]["name"]).task, "num_classes": 5,
        "in_channels": 3, "class_names": [f"c{i}" for i in range(5)],
        "groups": head_body_tail(frequencies), "class_frequencies": frequencies,
        "ignore_index": 255,
    }, "meta"  # fmt: skip


def build_module(config: dict) -> torch.nn.Module:
    """The training module of ``config`` as ``train`` builds it (stage-1 weights loaded)."""
    from semantic_anchors.train.finetune import load_init_from
    from semantic_anchors.train.module import AnchorModule

    info, device = _data_info(config)
    with torch.device(device):
        module = AnchorModule(config, info)
    init_from = config["finetune"]["init_from"]
    if init_from is not None:
        load_init_from(module, init_from)
    return module


def _fill(p: Plan, tmp_path: Path, doc_bench: Path, stage1_runs, doc_exports) -> list[str]:
    """``p.argv`` with the fixture folders in place (copies of the ones a command may write)."""
    run = doc_bench / "runs" / "synthlt" / "sar" / "seed0"
    argv = []
    for token in p.argv:
        if token in PREDICT_SOURCES.values():
            token = str(doc_exports(token))
        if "{RUN}" in token:
            shutil.copytree(run, tmp_path / "run", dirs_exist_ok=True)
            token = token.replace("{RUN}", str(tmp_path / "run"))
        if "{BENCH}" in token:
            shutil.copytree(doc_bench, tmp_path / "bench", dirs_exist_ok=True)
            token = token.replace("{BENCH}", str(tmp_path / "bench"))
            if "--rerender" in p.argv:  # a published report folder: one with its results.json
                from semantic_anchors.bench import write_report

                write_report(tmp_path / "bench", plots=False, diagnostics=False)
        argv.append(token)
    for folder in p.stage1:  # where the documented stage-1 command wrote it
        (tmp_path / folder).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / folder).symlink_to(stage1_runs(folder), target_is_directory=True)
    if "my-recipe.yaml" in argv:
        broken = any("could not parse YAML" in line for line in p.expected)
        with contextlib.redirect_stdout(io.StringIO()) as printed:
            assert main(["train", "synthlt-fcn-quick", "--print-config"]) == 0
        (tmp_path / "my-recipe.yaml").write_text(BROKEN_RECIPE if broken else printed.getvalue())
    if argv[0] == "predict":
        _predict_inputs(argv, tmp_path)
    return argv


def _import_umap_quietly() -> None:
    """umap-learn warns on import that TensorFlow (for its ParametricUMAP) is absent: not ours."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ImportWarning)
        with contextlib.suppress(ModuleNotFoundError):
            import umap  # noqa: F401


def _matches(expected: str, lines: list[str]) -> bool:
    pattern = ".*".join(re.escape(part) for part in expected.split("..."))
    return any(re.fullmatch(pattern, line.strip()) for line in lines)


def test_commands_are_found():
    """Each source yields commands; the README's own lines are among them."""
    sources = {c.source.split(":")[0].split("/")[0] for c in COMMANDS}
    assert {"README.md", "docs", "src", "cli"} <= sources
    readme = {c.text for c in COMMANDS if c.source == "README.md"}
    assert "semantic-anchors bench quick --out runs/bench-quick" in readme
    assert not any("<details" in c.source for c in COMMANDS)


def test_shell_lines_are_read_as_the_shell_would():
    block = [
        "RUN=runs/a  # a comment", "for m in none sar; do", "  semantic-anchors eval $RUN/$m",
        "done", "ARGS=(--resume \"$RUN\")", "OMP_NUM_THREADS=1 srun semantic-anchors train \\",
        '    "${ARGS[@]}" | tee log && semantic-anchors recipes',
        "pip install semantic-anchors[viz]", "semantic-anchors train: error: not a command",
        "python -m semantic_anchors.cli demo --quick", "semantic-anchors eval $UNSET",
    ]  # fmt: skip
    found = [(c.line, c.argv, c.problem) for c in shell_commands("x", block, 1)]
    assert found == [
        (3, ("eval", "runs/a/none"), ""), (3, ("eval", "runs/a/sar"), ""),
        (6, ("train", "--resume", "runs/a"), ""), (6, ("recipes",), ""),
        (10, ("demo", "--quick"), ""), (11, ("eval", "$UNSET"), "unresolved shell variable $UNSET"),
    ]  # fmt: skip
    (cmd,) = shell_commands("x", ["$ semantic-anchors recipes", "recipes (...):", "$ ls"], 1)
    assert cmd.argv == ("recipes",) and cmd.expected == ("recipes (...):",)


def test_tables_are_used():
    """No stale entry: every SKIP / SLOW key and STAGE1_RUNS folder matches a command."""
    texts = [c.text + " " for c in COMMANDS]
    for key in [*SKIP, *SLOW, *STAGE1_RUNS]:
        assert any(key in t for t in texts), f"{key!r} matches no documented command"


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: c.id)
def test_command_parses(cmd: DocCommand):
    assert not cmd.problem, f"{cmd.id}: {cmd.problem}: {cmd.text}"
    if is_mention(cmd):
        assert cmd.argv[0] in subcommands(), f"{cmd.id}: no subcommand {cmd.argv[0]!r}"
        return
    try:
        plan(cmd)
    except ValueError as err:
        pytest.fail(f"{cmd.id}: {cmd.text}: {err}")


@pytest.mark.parametrize("p", PLANS)
def test_command_runs(p: Plan, tmp_path, monkeypatch, capsys, doc_bench, stage1_runs,
                      doc_exports):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    where = ", ".join(PLAN_SOURCES[p])
    argv = _fill(p, tmp_path, doc_bench, stage1_runs, doc_exports)
    if p.kind == "resume":
        from semantic_anchors.train.resume import resume_config

        # A run to resume was killed (crash, Ctrl-C): its last checkpoint, no metrics.json.
        (tmp_path / "run" / "metrics.json").unlink()
        args = parse(tuple(argv))
        config, ckpt, _, _ = resume_config(args.resume, args.set, args.allow_change, True)
        assert ckpt is not None, where
        build_module(config)
        return
    if argv[0] in ("viz", "report"):
        _import_umap_quietly()
    code = main([*argv, "--print-config"] if p.kind == "train" else argv)
    captured = capsys.readouterr()
    lines = (captured.out + captured.err).splitlines()
    printed = "\n".join(lines)
    for line in p.expected:
        assert _matches(line, lines), f"{where}: {line!r} is not in what it printed:\n{printed}"
    failed = any(": error:" in line for line in p.expected)
    assert code == (2 if failed else 0), f"{where}: exit status {code}\n{captured.err}"
    if p.kind == "train" and not failed:
        (tmp_path / "printed.yaml").write_text(captured.out)
        from semantic_anchors.train.config import load_config

        build_module(load_config(tmp_path / "printed.yaml"))
