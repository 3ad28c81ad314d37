"""Griffe extension for the API reference: docstrings as markdown.

pkpd's docstrings are prose with reStructuredText touches: Sphinx roles (``:func:`x```), double
backticks and simple tables (the plasticity core's equations). This rewrites each docstring with
:func:`hooks.md` (roles and double backticks to code spans, simple tables to markdown tables)
before mkdocstrings renders it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import griffe

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hooks import md  # noqa: E402


class MarkdownDocstrings(griffe.Extension):
    """Rewrite every loaded docstring with :func:`hooks.md`."""

    def on_instance(self, *, node, obj, agent, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = md(obj.docstring.value)
