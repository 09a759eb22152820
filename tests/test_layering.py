"""The dependency direction DESIGN.md fixes: tui -> chatgpt_scratch, never back."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "chatgpt_scratch"
UI_MODULES = {"textual", "tui", "textual_plotext"}


def imported_top_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_core_library_never_imports_the_ui():
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(imported_top_modules(path) & UI_MODULES)
        for path in PACKAGE.rglob("*.py")
        if path.name != "__init__.py" or path.parent.name != "cli"  # cli/__init__ opens the TUI lazily
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_cli_help_does_not_import_torch():
    """`chatgpt-scratch --help` must stay instant: subcommands import torch only when they run."""
    code = (
        "import sys; from chatgpt_scratch.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('torch', 'textual', 'tiktoken') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
