"""The layout rules of ``src/``: no import circle between modules, no source file over 400 lines.

Read statically with :mod:`ast` (no package module is imported), so the check is fast and runs
without the optional extras. An import counts when it runs as its module is imported: at module
level, including inside ``try`` / ``if`` blocks, but not inside a function or under
``if TYPE_CHECKING:``. A lazy import inside a function is no way around a circle either, so a
second check counts those too: move what both sides need to the module that owns it.
"""

from __future__ import annotations

import ast
import importlib
import re
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "semantic_anchors"
MAX_LINES = 400


def _modules(src: Path, package: str) -> dict[str, Path]:
    """``{dotted module name: file}``; a package is the name of its ``__init__.py``."""
    out = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(tree: ast.Module, in_functions: bool) -> list[ast.Import | ast.ImportFrom]:
    """The import statements that run when the module is imported (and, with ``in_functions``,
    those inside its functions too); never those under ``if TYPE_CHECKING:``."""
    found = []

    def visit(nodes: list[ast.AST]) -> None:
        for node in nodes:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found.append(node)
            elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
            elif in_functions or not isinstance(
                node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
            ):
                visit(list(ast.iter_child_nodes(node)))

    visit(tree.body)
    return found


def import_graph(
    src: Path = SRC, package: str = PACKAGE, *, in_functions: bool = False
) -> dict[str, set[str]]:
    """``{module: the package modules it imports at import time (or also in its functions)}``."""
    modules = _modules(src, package)

    def known(name: str) -> str | None:  # the module a dotted name lives in
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in _imports(ast.parse(path.read_text(), str(path)), in_functions):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = here[: len(here) - node.level + 1]
                    base = ".".join([*anchor, *([node.module] if node.module else [])])
                # `from pkg import sub` imports the module pkg.sub; `from mod import name`, mod
                targets = [f"{base}.{alias.name}" for alias in node.names]
            for target in targets:
                if target.split(".")[0] == package and (found := known(target)) not in (None, name):
                    graph[name].add(found)
    return graph


def tangles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative):
    each module of one imports, directly or not, every other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(component)
    return components


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle ``[a, b, ..., a]`` per tangle, starting from its first module by name."""
    return [_path_through(sorted(c)[0], c, graph) for c in tangles(graph)]


def _path_through(start: str, component: set[str], graph: dict[str, set[str]]) -> list[str]:
    """The shortest circle from ``start`` back to itself inside ``component`` (breadth first)."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node] & component):
                if child == start:  # back home: walk the path from `node` to `start` backwards
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"{start} is in no circle of {sorted(component)}")  # pragma: no cover


def _listed(graph: dict[str, set[str]]) -> str:
    lines = []
    for component in tangles(graph):
        circle = _path_through(sorted(component)[0], component, graph)
        lines.append("  " + " -> ".join(circle))
        if len(component) > len(circle) - 1:
            lines.append(f"    (one circle of a tangle of {len(component)}: {sorted(component)})")
    return "\n".join(lines)


def test_no_import_circles():
    graph = import_graph()
    assert not tangles(graph), (
        f"import circles in src/{PACKAGE} (module-level imports; move what both sides need to "
        f"the module that owns it):\n{_listed(graph)}"
    )


def test_no_lazy_import_closes_a_circle():
    graph = import_graph(in_functions=True)
    assert not tangles(graph), (
        f"import circles in src/{PACKAGE} once the imports inside functions are counted: a lazy "
        f"import that dodges a circle still is one (move what both sides need to the module "
        f"that owns it):\n{_listed(graph)}"
    )


def test_no_source_file_over_the_limit():
    over = []
    for path in _modules(SRC, PACKAGE).values():
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES:
            over.append(f"  {path.relative_to(SRC.parent)}: {lines} lines")
    listed = "\n".join(over)
    assert not over, f"source files over {MAX_LINES} lines (split them by concept):\n{listed}"


def test_the_checks_find_what_they_look_for(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "from pkg import a\n",
        "a.py": "from . import b\n",
        "b.py": "import os\nfrom .sub.c import thing\n",
        "sub/__init__.py": "",
        "sub/c.py": (
            "from typing import TYPE_CHECKING\n"
            "try:\n    from ..a import x\nexcept ImportError:\n    pass\n"
            "if TYPE_CHECKING:\n    from pkg.lazy import y\n"
        ),
        "lazy.py": "def f():\n    from pkg.a import x\n",
    }
    for name, text in files.items():
        (package / name).write_text(text)
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.b"] == {"pkg.sub.c"} and graph["pkg.sub.c"] == {"pkg.a"}
    assert graph["pkg.lazy"] == set() and graph["pkg"] == {"pkg.a"}
    assert find_cycles(graph) == [["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]]
    assert import_graph(tmp_path, "pkg", in_functions=True)["pkg.lazy"] == {"pkg.a"}
    assert find_cycles({"x": {"y"}, "y": set()}) == []


# ----------------------------------------------------------------------------- layers
ARCHITECTURE = SRC.parent / "docs" / "architecture.md"


def documented_layers(text: str) -> dict[str, int]:
    """``{unit: layer}`` from the table between the ``layers`` markers of docs/architecture.md."""
    block = text.split("<!-- layers:begin", 1)[1].split("<!-- layers:end -->", 1)[0]
    layers: dict[str, int] = {}
    for row in block.splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0].isdigit():
            for unit in re.findall(r"`([^`]+)`", cells[1]):
                assert unit not in layers, f"{unit} is in two layers of docs/architecture.md"
                layers[unit] = int(cells[0])
    return layers


def unit_of(module: str) -> str:
    """The layer unit of a module: its top-level package or module below ``semantic_anchors``
    (the package's own ``__init__`` is the unit ``semantic_anchors``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def upward_imports(graph: dict[str, set[str]], layers: dict[str, int]) -> list[str]:
    """``"a (layer i) -> b (layer j)"`` for each import of a unit at or above its own layer."""
    found = []
    for module, targets in sorted(graph.items()):
        here = unit_of(module)
        for target in sorted(targets):
            there = unit_of(target)
            if there != here and layers[there] >= layers[here]:
                found.append(
                    f"  {module} (layer {layers[here]}) -> {target} (layer {layers[there]})"
                )
    return found


def test_every_unit_has_a_layer():
    units = {unit_of(m) for m in _modules(SRC, PACKAGE)}
    layers = documented_layers(ARCHITECTURE.read_text())
    assert units - set(layers) == set(), "give these a row in docs/architecture.md's layer table"
    assert set(layers) - units == set(), "docs/architecture.md names units that do not exist"


def test_no_import_goes_up_or_sideways():
    layers = documented_layers(ARCHITECTURE.read_text())
    found = upward_imports(import_graph(in_functions=True), layers)
    listed = "\n".join(found)
    assert not found, f"imports that break the layers of docs/architecture.md:\n{listed}"


def test_the_layer_check_finds_an_upward_import():
    table = (
        "<!-- layers:begin -->\n| 0 | `low` | x |\n| 1 | `high`, `side` | y |\n<!-- layers:end -->"
    )
    layers = documented_layers(table)
    assert layers == {"low": 0, "high": 1, "side": 1}
    graph = {"p.low.a": {"p.high"}, "p.high": {"p.low.a"}, "p.side": {"p.high"}}
    assert upward_imports(graph, layers) == [
        "  p.low.a (layer 0) -> p.high (layer 1)", "  p.side (layer 1) -> p.high (layer 1)",
    ]  # fmt: skip


def test_the_architecture_suite_example_plans(tmp_path, capsys):
    from semantic_anchors.cli import main

    text = ARCHITECTURE.read_text().split("### A benchmark suite", 1)[1]
    suite = tmp_path / "my-suite.yaml"
    suite.write_text(re.search(r"```yaml\n(.*?)```", text, flags=re.S).group(1))
    assert main(["bench", str(suite), "--out", str(tmp_path / "out"), "--dry-run"]) == 0
    assert "4 runs" in capsys.readouterr().out


OLD_PATHS = [  # (old module, a name it held, the module that holds it now)
    ("semantic_anchors.train.validation", "validate_config", "semantic_anchors.train.config_checks"),
    ("semantic_anchors.models.segmentor", "Segmentor", "semantic_anchors.models.segmentors"),
    ("semantic_anchors.models.dense", "DenseModel", "semantic_anchors.models.segmentors.dense"),
    ("semantic_anchors.models.multi_level_segmentor", "MultiLevelSegmentor",
     "semantic_anchors.models.segmentors.multi_level"),
    ("semantic_anchors.models.protoseg", "ProtoSegSegmentor",
     "semantic_anchors.models.segmentors.protoseg"),
    ("semantic_anchors.models.segmentation_models", "fcn_small",
     "semantic_anchors.models.segmentors.resnet"),
    ("semantic_anchors.models.hrnet_models", "build_hrnet_segmentor",
     "semantic_anchors.models.segmentors.hrnet"),
    ("semantic_anchors.models.hf_common", "build_hf_model", "semantic_anchors.models.hf.common"),
    ("semantic_anchors.models.hf_classifiers", "hf_vit_s16", "semantic_anchors.models.hf.classifiers"),
    ("semantic_anchors.models.hf_dense", "HFDenseSegmentor", "semantic_anchors.models.hf.dense"),
    ("semantic_anchors.models.hf_segmentors", "segformer_b0", "semantic_anchors.models.hf.segformer"),
    ("semantic_anchors.models.hf_segmentors", "HFUperNet", "semantic_anchors.models.hf.upernet"),
    ("semantic_anchors.models.hf_upernet", "build_upernet", "semantic_anchors.models.hf.upernet"),
    ("semantic_anchors.models.pretrained", "load_pretrained", "semantic_anchors.models.io.pretrained"),
    ("semantic_anchors.models.exported", "save_exported", "semantic_anchors.models.io.exported"),
]  # fmt: skip


@pytest.mark.parametrize(("old", "name", "new"), OLD_PATHS)
def test_a_moved_module_still_imports_from_its_old_path_with_a_warning(old, name, new):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=re.escape(old) + " moved to .*" + re.escape(new)):
        module = importlib.import_module(old)
    assert getattr(module, name) is getattr(importlib.import_module(new), name)
    assert name in module.__all__
    sys.modules.pop(old, None)  # the next test that imports it warns again


def test_an_old_path_points_at_one_place():
    from semantic_anchors._moved import keep_old_paths

    with pytest.raises(ValueError, match="already moved to"):
        keep_old_paths({"semantic_anchors.train.validation": "semantic_anchors.train.config"})


def test_no_module_file_is_left_at_an_old_path():
    for old, _, _ in OLD_PATHS:
        relative = Path(*old.split(".")[1:])
        assert not (SRC / PACKAGE / f"{relative}.py").exists(), (
            f"{old}: a file and an alias both claim it"
        )


def test_the_moved_paths_example_runs():
    import doctest

    import semantic_anchors._moved as moved

    sys.modules.pop("semantic_anchors.models.hrnet_models", None)
    result = doctest.testmod(moved)
    assert result.attempted >= 4 and result.failed == 0


# --- the tests' own layout -------------------------------------------------------------------

TESTS = SRC.parent / "tests"


def borrowed_test_imports(tests: Path = TESTS) -> list[str]:
    """Imports of one test module (or conftest) by another: shared code lives in tests/_helpers."""
    found = []
    for path in sorted(tests.rglob("*.py")):
        package = ["tests", *path.relative_to(tests).parent.parts]
        for node in _imports(ast.parse(path.read_text()), in_functions=True):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package[: len(package) - node.level + 1]
                targets = [".".join([*base, *([node.module] if node.module else [])])]
                if not node.module:  # from . import x
                    targets = [f"{targets[0]}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                targets = [node.module or ""]
            else:
                targets = [alias.name for alias in node.names]
            for target in targets:
                if target.split(".")[0] == "tests" and not target.startswith("tests._helpers"):
                    where = f"{path.relative_to(tests.parent)}:{node.lineno}"
                    found.append(f"{where} imports {target}")
    return found


def test_test_modules_share_code_only_through_helpers():
    borrowed = borrowed_test_imports()
    assert not borrowed, "move what they share into tests/_helpers:\n" + "\n".join(borrowed)


def test_the_helper_check_finds_a_borrowed_import(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "test_a.py").write_text("from .conftest import TINY\n")
    (tmp_path / "test_b.py").write_text(
        "def f():\n    from tests.train.test_a import x\n    from tests._helpers.runs import TINY\n"
    )
    (tmp_path / "test_c.py").write_text("from . import conftest\n")
    assert borrowed_test_imports(tmp_path) == [
        "tmp/test_b.py:2 imports tests.train.test_a".replace("tmp", tmp_path.name),
        "tmp/test_c.py:1 imports tests.conftest".replace("tmp", tmp_path.name),
        "tmp/train/test_a.py:1 imports tests.train.conftest".replace("tmp", tmp_path.name),
    ]


NOT_MIRRORED = {"_helpers", "docs", "benchmarks"}  # shared code; the repository's other folders
WHOLE_TREE = {"test_architecture"}  # tests of the layout itself


def unmirrored_tests(tests: Path = TESTS, src: Path = SRC / PACKAGE) -> list[str]:
    """Test modules whose place does not name what they test.

    ``tests/<package>/test_<name>[_<topic>].py`` tests ``<name>`` of ``src/.../<package>/`` (a
    module or subpackage anywhere below it, its leading underscore dropped), or the package's
    docstring examples (``test_doctests.py``); a module at the root of ``tests/`` tests a
    top-level module or package (a deeper one has its package's folder).
    """
    found = []
    for path in sorted(tests.rglob("test_*.py")):
        folder = path.relative_to(tests).parent
        if (folder.parts and folder.parts[0] in NOT_MIRRORED) or (
            not folder.parts and path.stem in WHOLE_TREE
        ):
            continue
        package = src.joinpath(*folder.parts)
        names = {"doctests"}
        if package.is_dir():
            below = package.rglob("*") if folder.parts else package.iterdir()
            for p in below:
                if p.is_dir():
                    names.add(p.name)
                elif p.suffix == ".py":
                    names.add(p.stem.lstrip("_"))
        words = path.stem.removeprefix("test_").split("_")
        if not any("_".join(words[:k]) in names for k in range(1, len(words) + 1)):
            found.append(str(path.relative_to(tests.parent)))
    return found


def test_tests_mirror_the_source_tree():
    stray = unmirrored_tests()
    assert not stray, "name each after the module it tests, in its package's folder:\n" + "\n".join(
        stray
    )


def test_the_mirror_check_finds_a_stray_test(tmp_path):
    src, tests = tmp_path / "src", tmp_path / "tests"
    (src / "train").mkdir(parents=True)
    (src / "train" / "run.py").write_text("")
    (src / "cli.py").write_text("")
    (tests / "train").mkdir(parents=True)
    for name in ("train/test_run_ddp.py", "train/test_doctests.py", "test_cli.py", "test_train.py",
                 "test_run.py", "train/test_cli.py", "test_fault_tolerance.py",
                 "docs/test_commands.py"):  # fmt: skip
        (tests / name).parent.mkdir(parents=True, exist_ok=True)
        (tests / name).write_text("")
    assert unmirrored_tests(tests, src) == [  # test_run.py: run is train.run, not a root module
        "tests/test_fault_tolerance.py",
        "tests/test_run.py",
        "tests/train/test_cli.py",
    ]
