"""`chatgpt-scratch SUBCOMMAND ...`; with no subcommand, the TUI opens.

Each module in this package that defines `register(subparsers)` adds its
subcommands; handlers import torch lazily so `--help` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

from chatgpt_scratch import __version__
from chatgpt_scratch.errors import ScratchError


# Folder flags become environment variables, so that everything this process starts
# (training jobs launched from the TUI, torchrun workers) uses the same folders.
FOLDER_FLAGS = {
    "checkpoints-dir": "CHATGPT_SCRATCH_CHECKPOINTS",
    "datasets-dir": "CHATGPT_SCRATCH_DATASETS",
    "runs-dir": "CHATGPT_SCRATCH_RUNS",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chatgpt-scratch",
        description="A GPT built from scratch: chat, classify spam, train and manage checkpoints. "
        "Run with no command to open the terminal app.",
    )
    parser.add_argument("--version", action="version", version=f"chatgpt-scratch {__version__}")
    folders = parser.add_argument_group("folders (before the command; default: the env var, else ./NAME)")
    for flag, env in FOLDER_FLAGS.items():
        folders.add_argument(f"--{flag}", metavar="DIR", help=f"overrides ${env}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "register"):
            module.register(sub)
    return parser


def argument_error(argv: list[str]) -> str | None:
    """The parser's complaint about `argv` (e.g. "unrecognized arguments: --fast"), or None if it parses.

    For front ends that build a command line (the TUI's Train form) and want to check it first.
    """
    import contextlib
    import io

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(argv)
    except SystemExit as e:
        if e.code == 0:
            return "--help and --version print and exit; they do not start a run"
        lines = err.getvalue().strip().splitlines()
        return lines[-1].split("error: ", 1)[-1] if lines else "invalid arguments"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for flag, env in FOLDER_FLAGS.items():
        value = getattr(args, flag.replace("-", "_"))
        if value:
            os.environ[env] = os.path.abspath(value)
    try:
        if args.command is None:
            from tui.app import run_app

            return run_app() or 0
        return args.func(args) or 0
    except ScratchError as e:
        from chatgpt_scratch.system.terminal_text import printable

        try:  # one line, whatever file names or header text the message quotes
            print(f"error: {printable(e)}", file=sys.stderr)
        except OSError:
            pass
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `chatgpt-scratch ... | head`
        return 0
    except OSError as e:  # an environment fault no command foresaw (disk, permissions): one line, no traceback
        from chatgpt_scratch.storage.fileio import os_error_text
        from chatgpt_scratch.system.terminal_text import printable

        try:
            print(f"error: {printable(os_error_text(e))}", file=sys.stderr)
        except OSError:
            pass
        return 1
