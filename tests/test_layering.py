"""The dependency direction DESIGN.md fixes: tui -> chatgpt_scratch, never back."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

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


def imported_modules(path: Path) -> set[str]:
    """Every absolute module an import statement in `path` names (at any depth: lazy imports count)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_only_the_cli_imports_the_cli():
    """The CLI is a front end: library modules never take logic from it (a rule with two front ends
    lives in the library, and the CLI and the TUI both call it)."""
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(m for m in imported_modules(path) if m.startswith("chatgpt_scratch.cli"))
        for path in PACKAGE.rglob("*.py")
        if "cli" not in path.relative_to(PACKAGE).parts and path.name != "__main__.py"  # `python -m` runs the CLI
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_tui_takes_no_logic_from_cli_commands():
    """The TUI checks a command line it builds with the CLI's parser (chatgpt_scratch.cli.argument_error) and
    starts jobs as CLI subprocesses; it never imports a command module (chatgpt_scratch.cli.xray, ...)."""
    tui = PACKAGE.parent / "tui"
    offenders = {
        str(path.relative_to(tui)): sorted(m for m in imported_modules(path) if m.startswith("chatgpt_scratch.cli."))
        for path in tui.rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_core_model_does_not_depend_on_use_cases():
    """The model core (config, attention, model, tokenizer, generation, sampling) imports nothing from the
    storage or use-case layers at module level, so the book's chapters read on their own."""
    core = ("config", "attention", "model", "tokenizer", "generation", "sampling")
    upper = ("checkpoints", "storage", "usecases", "chat", "conversation", "classify", "lora", "training", "data",
             "cli")
    offenders = {}
    for name in core:
        tree = ast.parse((PACKAGE / f"{name}.py").read_text(encoding="utf-8"))
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        mods = {a.name for n in top if isinstance(n, ast.Import) for a in n.names}
        mods |= {n.module for n in top if isinstance(n, ast.ImportFrom) and n.module}
        bad = sorted(m for m in mods if m.split(".")[:2][-1] in upper and m.startswith("chatgpt_scratch."))
        if bad:
            offenders[name] = bad
    assert offenders == {}


def _imports_by_file(folder: str) -> dict[str, set[str]]:
    return {str(path.relative_to(PACKAGE)): {m for m in imported_modules(path) if m.startswith("chatgpt_scratch.")}
            for path in (PACKAGE / folder).rglob("*.py")}


# The subpackages are layers. Each may import, at any depth (lazy imports count), only what is below it:
#   system/ (the machine)  <  model core (config, tokenizer, attention, model, generation, sampling)
#   < storage/ (files and formats: checkpoint_format, checkpoints' helpers, builtin, gpt2_weights, chat_store, fileio)
#   < data/ < training/ and usecases/ (and the root use-cases chat, conversation, classify, lora) < cli/, tui/.
LAYER_RULES = {
    "system": ("chatgpt_scratch.errors",),
    "storage": ("chatgpt_scratch.errors", "chatgpt_scratch.system", "chatgpt_scratch.storage",
                "chatgpt_scratch.config", "chatgpt_scratch.model", "chatgpt_scratch.tokenizer",
                "chatgpt_scratch.attention", "chatgpt_scratch.checkpoints"),
    "data": ("chatgpt_scratch.errors", "chatgpt_scratch.system", "chatgpt_scratch.storage", "chatgpt_scratch.data",
             "chatgpt_scratch.config", "chatgpt_scratch.model", "chatgpt_scratch.tokenizer"),
}


@pytest.mark.parametrize("folder", sorted(LAYER_RULES))
def test_each_subpackage_imports_only_the_layers_below_it(folder):
    allowed = LAYER_RULES[folder]
    offenders = {f: sorted(m for m in mods if not m.startswith(allowed)) for f, mods in _imports_by_file(folder).items()}
    assert {f: bad for f, bad in offenders.items() if bad} == {}


def test_nothing_below_the_use_cases_imports_them():
    """usecases/ and training/ sit above storage/ and data/; the front ends (cli/, tui/) above everything."""
    offenders = {}
    for folder in ("system", "storage", "data"):
        for f, mods in _imports_by_file(folder).items():
            bad = sorted(m for m in mods if m.startswith(("chatgpt_scratch.usecases", "chatgpt_scratch.training",
                                                          "chatgpt_scratch.cli", "chatgpt_scratch.chat")))
            if bad:
                offenders[f] = bad
    assert offenders == {}
