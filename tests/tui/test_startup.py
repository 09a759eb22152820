"""The app must paint at once: importing it must not import torch (or textual-free core modules that do)."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_app_does_not_import_torch():
    code = "import tui.app, sys; print(sorted(m for m in ('torch', 'tiktoken', 'safetensors') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_tui_module_imports_without_torch():
    code = (
        "import pkgutil, importlib, sys, tui, tui.screens, tui.widgets\n"
        "for pkg in (tui, tui.screens, tui.widgets):\n"
        "    for m in pkgutil.iter_modules(pkg.__path__):\n"
        "        if m.name != 'xray': importlib.import_module(f'{pkg.__name__}.{m.name}')\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
