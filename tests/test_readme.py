"""The README's command lines stay true: every `chatgpt-scratch ...` line in its code blocks parses with the
real CLI parser, and every file it names either ships with the repository or is written by an earlier line."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from chatgpt_scratch.cli import argument_error

REPO = Path(__file__).resolve().parents[1]


def readme_commands() -> list[list[str]]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.split("  #")[0].strip()
            if not line.startswith("chatgpt-scratch "):
                continue
            if "..." in line or "[" in line:  # an elided or optional-part sketch, not a runnable line
                continue
            line = line.split(" | ")[0]
            commands.append(shlex.split(line)[1:])
    return commands


def test_the_readme_has_commands():
    assert len(readme_commands()) >= 20


def test_every_readme_command_parses():
    bad = {" ".join(argv): error for argv in readme_commands() if (error := argument_error(argv)) is not None}
    assert bad == {}


def test_what_you_can_do_runs_on_shipped_files():
    """The first block's checkpoint paths exist in the repository or are made by an earlier line of it."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = text.split("## What you can do", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    made: set[str] = set()
    for line in block.splitlines():
        argv = shlex.split(line.split("  #")[0])
        for flag, value in zip(argv, argv[1:]):
            if flag in ("--checkpoint", "--init") and value not in made:
                assert (REPO / value).is_file(), f"{line}: {value} is neither shipped nor made above"
            if flag == "--out":
                made |= {f"{value}.safetensors", f"{value}.best.safetensors"}
