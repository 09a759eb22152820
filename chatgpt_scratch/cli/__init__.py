"""`chatgpt-scratch SUBCOMMAND ...`; with no subcommand, the TUI opens.

Each module in this package that defines `register(subparsers)` adds its
subcommands; handlers import torch lazily so `--help` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from chatgpt_scratch import __version__
from chatgpt_scratch.errors import ScratchError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chatgpt-scratch",
        description="A GPT built from scratch: chat, classify spam, train and manage checkpoints. "
        "Run with no command to open the terminal app.",
    )
    parser.add_argument("--version", action="version", version=f"chatgpt-scratch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "register"):
            module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command is None:
            from tui.app import run_app

            return run_app() or 0
        return args.func(args) or 0
    except ScratchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `chatgpt-scratch ... | head`
        return 0
