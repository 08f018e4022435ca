"""Find the ``semantic-anchors ...`` command lines of the docs, the recipes and the CLI's help.

Used by ``tests/docs/test_commands.py``. Where commands are looked for:

* markdown: fenced blocks in ``bash``, ``sh``, ``shell``, ``console`` or no language, and inline
  code spans (one may wrap onto the next line); in ``docs/results/**`` not inside ``<details>``;
* recipe comments: inline spans, command lines, and ``--set K=V`` fragments (see
  :func:`recipe_commands`);
* the parser's help texts: inline spans, and the ``e.g.`` example of a ``--set`` option.

Shell lines are read as far as the docs use shell: ``\\`` continuations, ``#`` comments, ``$ ``
prompts (a transcript: the lines after a prompt are its output), ``VAR=value`` prefixes and
``srun``, pipes, ``&&`` / ``||`` / ``;`` (the ``semantic-anchors`` part is taken), ``python -m
semantic_anchors.cli`` and ``torchrun ... -m semantic_anchors.cli``, a block's own variables and
``"${ARRAY[@]}"`` arrays (one command per assignment), trivial ``for x in a b; do`` ... ``done``
loops. A variable the block does not set is a problem the parse test reports. A line the program
printed (``semantic-anchors train: error: ...``) is output, not a command.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "src" / "semantic_anchors" / "recipes"

PROGRAM = "semantic-anchors"
MODULE = "semantic_anchors.cli"  # `python -m semantic_anchors.cli ...`, `torchrun ... -m ...`
SHELL_LANGUAGES = {"bash", "sh", "shell", "console", ""}  # fenced blocks scanned for commands
OPERATORS = {"&&", "||", "|", ";"}  # a command ends at these
WRAPPERS = {"srun", "time", "nohup", "exec"}  # may stand before the program
FENCE = re.compile(r"^\s*```(\w*)")
INLINE = re.compile(r"`([^`]+)`")
ASSIGNMENT = re.compile(r"^[A-Za-z_]\w*=")
ARRAY = re.compile(r"\b([A-Za-z_]\w*)=\(([^)]*)\)", re.DOTALL)
FOR_LOOP = re.compile(r"^\s*for (\w+) in ([^;]+); do\s*$")
VARIABLE = re.compile(r"\$\{?(\w+)\}?")


@dataclass(frozen=True)
class DocCommand:
    """One documented command line.

    Attributes:
        source: where it is written, relative to the repository (``README.md``, a recipe) or
            ``cli:SUBCOMMAND`` for the parser's help texts.
        line: its 1-based line (0 for help texts).
        argv: the arguments after the program name, shell-split, variables expanded.
        inline: written in an inline code span or a help text (not in a code block).
        expected: for a ``$ command`` of a transcript block, the output lines shown after it.
        problem: why the line could not be read as a command (an unresolved variable, ...).
        variant: the index of this command among those one line yields (arrays, loops).
    """

    source: str
    line: int
    argv: tuple[str, ...]
    inline: bool = False
    expected: tuple[str, ...] = ()
    problem: str = ""
    variant: int = 0

    @property
    def id(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        return where if self.variant == 0 else f"{where} ({self.variant + 1})"

    @property
    def text(self) -> str:
        return shlex.join([PROGRAM, *self.argv])


# ----------------------------------------------------------------------------- shell lines
def _program_args(tokens: list[str]) -> list[list[str]]:
    """The argument lists of every ``semantic-anchors`` command among shell ``tokens``."""
    found, segment = [], []
    for token in [*tokens, ";"]:
        if token not in OPERATORS:
            segment.append(token)
            continue
        for i, word in enumerate(segment):
            if word == "-m" and segment[i + 1 : i + 2] == [MODULE]:
                found.append(segment[i + 2 :])
                break
            if word == PROGRAM:
                if all(ASSIGNMENT.match(w) or w in WRAPPERS for w in segment[:i]):
                    found.append(segment[i + 1 :])
                break
        segment = []
    return found


def _is_output(args: list[str]) -> bool:
    """``semantic-anchors train: error: ...``: a message the program printed, not a command."""
    return bool(args) and args[0].endswith(":")


def _expand(args: list[str], scalars: dict, arrays: dict) -> tuple[list[list[str]], str]:
    """``args`` with ``$NAME`` / ``"${NAME[@]}"`` expanded; one list per array value."""
    variants: list[list[str]] = [[]]
    for token in args:
        whole = re.fullmatch(r"\$\{(\w+)\[@\]\}", token)
        if whole and whole.group(1) in arrays:
            variants = [v + value for v in variants for value in arrays[whole.group(1)]]
            continue
        unknown = [n for n in VARIABLE.findall(token) if n not in scalars]
        if unknown:
            return [args], f"unresolved shell variable ${unknown[0]}"
        token = VARIABLE.sub(lambda m: scalars[m.group(1)], token)
        variants = [v + [token] for v in variants]
    return variants, ""


def _logical_lines(lines: list[str], first: int) -> list[tuple[int, str]]:
    """``(line number, text)`` with ``\\`` continuations joined and trivial ``for`` loops
    unrolled (``for m in a b; do`` ... ``done``: the body once per value)."""
    joined: list[tuple[int, str]] = []
    i = 0
    while i < len(lines):
        start, text = first + i, lines[i]
        while text.rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            text = text.rstrip()[:-1] + " " + lines[i].strip()
        joined.append((start, text))
        i += 1
    out: list[tuple[int, str]] = []
    i = 0
    while i < len(joined):
        loop = FOR_LOOP.match(joined[i][1])
        end = next((j for j in range(i + 1, len(joined)) if joined[j][1].strip() == "done"), None)
        if loop and end is not None:
            for value in loop.group(2).split():
                for number, text in joined[i + 1 : end]:
                    out.append((number, re.sub(rf"\$\{{?{loop.group(1)}\}}?", value, text)))
            i = end + 1
            continue
        out.append(joined[i])
        i += 1
    return out


def shell_commands(source: str, lines: list[str], first: int) -> list[DocCommand]:
    """The commands of a shell block (``lines``; ``first`` is the line number of ``lines[0]``).

    A block with ``$ `` prompts is a transcript: only the prompted lines are commands, and the
    lines after each one, up to the next prompt, are its expected output.
    """
    text = "\n".join(lines)
    scalars = {}
    for line in lines:
        words = line.split("#", 1)[0].split()
        if words and all(ASSIGNMENT.match(w) and "(" not in w for w in words):
            scalars.update(w.split("=", 1) for w in words)
    arrays: dict[str, list[list[str]]] = {}
    for name, body in ARRAY.findall(text):
        values, _ = _expand(shlex.split(body, comments=True), scalars, {})
        arrays.setdefault(name, []).append(values[0])
    transcript = any(line.startswith("$ ") for line in lines)
    commands: list[DocCommand] = []
    logical = _logical_lines(lines, first)
    for k, (number, line) in enumerate(logical):
        if transcript:
            if not line.startswith("$ "):
                continue
            line = line[2:]
            output = []
            for _, after in logical[k + 1 :]:
                if after.startswith("$ "):
                    break
                if after.strip():
                    output.append(after.strip())
            expected = tuple(output)
        else:
            expected = ()
        if PROGRAM not in line and MODULE not in line:
            continue
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError as err:
            commands.append(DocCommand(source, number, (line,), problem=f"shell syntax: {err}"))
            continue
        variant = 0
        for args in _program_args(tokens):
            if _is_output(args):
                continue
            expansions, problem = _expand(args, scalars, arrays)
            for argv in expansions:
                commands.append(DocCommand(source, number, tuple(argv), expected=expected,
                                           problem=problem, variant=variant))  # fmt: skip
                variant += 1
    return commands


def inline_commands(source: str, text: str, first_line: int = 1) -> list[DocCommand]:
    """The commands of the inline code spans of ``text`` (a span may wrap onto the next line)."""
    commands = []
    for match in INLINE.finditer(text):
        span = match.group(1)
        if "\n\n" in span:  # an unpaired backtick: the span would cross a paragraph
            continue
        number = first_line + text.count("\n", 0, match.start())
        try:
            tokens = shlex.split(span.replace("\n", " "))
        except ValueError:
            continue
        for variant, args in enumerate(_program_args(tokens)):
            if args and not _is_output(args):
                commands.append(DocCommand(source, number, tuple(args), inline=True,
                                           variant=variant))  # fmt: skip
    return commands


# ----------------------------------------------------------------------------- sources
def markdown_commands(path: Path) -> list[DocCommand]:
    """Fenced shell blocks and inline spans of a markdown file.

    In ``docs/results/**`` everything inside ``<details>`` ... ``</details>`` is left out: those
    are the per-run ``train`` lines a published report lists (records, written by ``bench``).
    """
    source = str(path.relative_to(ROOT))
    lines = path.read_text().splitlines()
    if source.startswith("docs/results/"):
        inside = False
        for i, line in enumerate(lines):
            if "<details" in line:
                inside = True
            if inside:
                lines[i] = ""
            if "</details>" in line:
                inside = False
    prose = list(lines)  # the lines outside code blocks (blocks blanked, numbers kept)
    commands: list[DocCommand] = []
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].lstrip().startswith("```"))
        if fence.group(1) in SHELL_LANGUAGES:
            commands += shell_commands(source, lines[i + 1 : end], i + 2)
        prose[i : end + 1] = [""] * (end + 1 - i)
        i = end + 1
    return commands + inline_commands(source, "\n".join(prose))


def recipe_commands(path: Path) -> list[DocCommand]:
    """The commands in a recipe's comments: inline spans, comment lines that are a command
    (``#   semantic-anchors train ...``, also after a label such as ``CE baseline:``), and
    ``--set K=V ...`` shown on its own (an indented comment line) or after ``: `` or ``; ``
    ("Baseline: --set regularizer.name=none"), which is ``train THIS_RECIPE --set K=V ...``.
    A ``--set`` inside a sentence ("when that run trained with --set ...") is about another run
    and is left out."""
    source = str(path.relative_to(ROOT))
    commands = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.startswith("#"):
            continue
        comment = line[1:]
        commands += inline_commands(source, comment, number)
        shown = re.match(rf"\s*(?:[\w +-]+:\s+)?({PROGRAM} .*)$", comment)
        if shown and "`" not in shown.group(1):
            commands += shell_commands(source, [shown.group(1)], number)
            continue
        for match in re.finditer(r"(?:^\s{2,}|: |; )--set ((?:[\w.-]+=[^\s,;)]+\s?)+)", comment):
            pairs = [pair.rstrip(".") for pair in match.group(1).split()]
            commands.append(DocCommand(source, number, ("train", path.stem, "--set", *pairs)))
    return commands


def cli_commands() -> list[DocCommand]:
    """The commands in the help texts of the real parser (descriptions, epilogs, option help).

    The ``e.g.`` examples of a ``--set`` option's help become ``SUB [positional] --set ...``
    (the positionals a placeholder from ``HELP_POSITIONALS``).
    """
    parser = build_parser()
    commands = []
    subparsers = next(a for a in parser._actions if a.choices and isinstance(a.choices, dict))
    pages = [("cli", parser), *((f"cli:{name}", p) for name, p in subparsers.choices.items())]
    summaries = {a.dest: a.help or "" for a in subparsers._choices_actions}
    for source, page in pages:
        texts = [page.description or "", page.epilog or "", summaries.get(source[4:], "")]
        texts += [a.help or "" for a in page._actions]
        for text in texts:
            commands += inline_commands(source, text)
        sub = source[4:]
        for action in page._actions:
            example = re.search(r"e\.g\. ((?:\S+=\S+\s?)+)", action.help or "")
            if "--set" in action.option_strings and example:
                argv = (sub, *HELP_POSITIONALS[sub], "--set", *example.group(1).split())
                commands.append(DocCommand(f"{source} --set", 0, argv, inline=True))
    seen: dict[str, int] = {}
    numbered = []
    for c in commands:
        numbered.append(DocCommand(c.source, 0, c.argv, c.inline, variant=seen.get(c.source, 0)))
        seen[c.source] = seen.get(c.source, 0) + 1
    return numbered


HELP_POSITIONALS = {
    "train": ("NAME",),
    "eval": ("RUN",),
    "convert-official": ("CHECKPOINT", "--recipe", "cityscapes-fcn-hr48", "--out", "RUN"),
}
"""What stands before ``--set`` when a help text's ``e.g.`` example becomes a command."""


# ----------------------------------------------------------------------------- the parser
def build_parser() -> argparse.ArgumentParser:
    from semantic_anchors.cli import build_parser as real_parser

    return real_parser()


def subcommands() -> set[str]:
    return set(build_parser()._subparsers._group_actions[0].choices)


def parse(argv: tuple[str, ...]) -> argparse.Namespace:
    """The real parser's namespace; ``ValueError`` with its message when it refuses."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            return build_parser().parse_args(list(argv))
        except SystemExit:
            pass
    raise ValueError(err.getvalue().strip().splitlines()[-1])


def without_elisions(argv: tuple[str, ...]) -> tuple[str, ...]:
    """A synopsis made concrete: ``[--set ...]`` groups and ``...`` dropped."""
    out, optional = [], False
    for token in argv:
        optional = optional or token.startswith("[-")
        if not optional and token != "...":
            out.append(token)
        optional = optional and not token.endswith("]")
    return tuple(out)


def is_mention(cmd: DocCommand) -> bool:
    """An inline span that names a subcommand (``semantic-anchors eval``, ``semantic-anchors
    train ...``) rather than giving a command: only the subcommand, or elided arguments, and
    not complete (the parser refuses it, or ``train`` has no recipe, ``--resume`` or
    ``--list``)."""
    argv = without_elisions(cmd.argv)
    if not cmd.inline or (len(argv) > 1 and "..." not in cmd.argv):
        return False
    try:
        args = parse(argv)
    except ValueError:
        return True
    return args.command == "train" and not (args.recipe or args.resume or args.list)


# ----------------------------------------------------------------------------- everything
def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def recipe_files() -> list[Path]:
    return sorted(RECIPES.rglob("*.yaml"))


def all_commands() -> list[DocCommand]:
    commands = [c for path in markdown_files() for c in markdown_commands(path)]
    commands += [c for path in recipe_files() for c in recipe_commands(path)]
    return commands + cli_commands()
