"""Griffe extension for the docs build: read the project's docstrings as they are written.

* The docstrings (Google style) title their doctest sections ``Example:``; griffe knows only
  ``Examples:`` as a section and renders anything else as an admonition, where ``>>>`` lines
  become markdown text (and outputs such as ``[6000, 3596]`` are mistaken for cross-references).
  The title is renamed before griffe parses the docstring.
* Sphinx roles (``:func:`~pkg.name```) would show as literal ``:func:`` text; they become inline
  code (the last component only, for ``~``).
* A reST literal-block marker (a line ending in ``::``, the indented block after it is already a
  markdown code block) loses one colon.

The sources stay as they are; the extension only changes what the site shows.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE_TITLE = re.compile(r"^(\s*)Example:\s*$", flags=re.MULTILINE)
_SPHINX_ROLE = re.compile(r":(?:func|meth|class|mod|attr|data|obj|exc):`(~?)([^`]+)`")
_LITERAL_MARKER = re.compile(r"(\S)::$", flags=re.MULTILINE)


def _role_to_code(match: re.Match[str]) -> str:
    target = match.group(2)
    return f"`{target.rsplit('.', 1)[-1] if match.group(1) else target}`"


class ExampleSections(griffe.Extension):
    """Turn ``Example:`` titles into ``Examples:``, Sphinx roles into code, ``::`` into ``:``."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            value = _EXAMPLE_TITLE.sub(r"\1Examples:", obj.docstring.value)
            value = _SPHINX_ROLE.sub(_role_to_code, value)
            obj.docstring.value = _LITERAL_MARKER.sub(r"\1:", value)
