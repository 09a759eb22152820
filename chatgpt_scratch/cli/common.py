"""Arguments shared by several subcommands (no torch import here: --help must stay fast)."""

from __future__ import annotations

import argparse
import inspect

# What each command needs when --checkpoint is left out, in order of preference (one home, used by the TUI too).
from chatgpt_scratch.storage.checkpoint_format import DEFAULT_KINDS  # noqa: F401 (public here too)


def command_doc(run) -> tuple[str, str, list[str]]:
    """The --help line, description and examples of the command `run` carries out, from its docstring: the
    first line is the help; then the description's paragraphs (split by blank lines; the lines of one
    paragraph are joined with single spaces, so the source can wrap them anywhere); a last paragraph headed
    `examples:` lists example commands, one a line. (As click does; under `python -OO`, which drops
    docstrings, the command is declared without them.)"""
    head, _, body = inspect.cleandoc(run.__doc__ or "").partition("\n\n")
    paragraphs = body.split("\n\n")
    examples = []
    if paragraphs[-1].startswith("examples:\n"):
        examples = [line.strip() for line in paragraphs.pop().splitlines()[1:]]
    description = "\n\n".join(" ".join(line.strip() for line in part.splitlines()) for part in paragraphs)
    return head, description, examples


def add_command(subparsers, name: str, run=None, *, help: str | None = None, description: str | None = None,
                examples: str | list[str] = (), before: str = "", after: str = "") -> argparse.ArgumentParser:
    """Declare subcommand `name` (its --help line, description and examples) that `run(args)` carries out.

    Without description, help, description and examples come from run's docstring (command_doc). One
    example (a str) is shown as `example: ...`, wrapped like the description. A list is an `example(s):`
    block, one command a line, and then description and epilog are printed as written
    (RawDescriptionHelpFormatter), with `before` (a paragraph) above the block and `after` (lines) below it."""
    if description is None:
        help, description, examples = command_doc(run)
    extra = {}
    if isinstance(examples, str):
        extra["epilog"] = f"example: {examples}"
    elif examples:
        block = f"example{'s' if len(examples) > 1 else ''}:\n" + "\n".join(f"  {e}" for e in examples)
        extra["epilog"] = (f"{before}\n\n" if before else "") + block + (f"\n{after}" if after else "")
        extra["formatter_class"] = argparse.RawDescriptionHelpFormatter
    parser = subparsers.add_parser(name, help=help, description=description, **extra)
    if run is not None:
        parser.set_defaults(func=run)
    return parser


def add_new_file_args(parser: argparse.ArgumentParser, what: str) -> None:
    """--out and --force of a command that writes one new checkpoint (checkpoints.output_path's rule)."""
    parser.add_argument("--out", required=True, metavar="PATH", help=f"where to write {what} (.safetensors added)")
    parser.add_argument("--force", action="store_true", help="overwrite PATH if it exists")


def add_device_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", metavar="{auto,cpu,cuda,mps}",
                        help="where to run: auto picks cuda, then mps, then cpu (default: auto; cuda:N also works)")


def add_sampling_args(parser: argparse.ArgumentParser, names=None, **defaults) -> None:
    """--temperature, --top-k, --top-p, --max-new-tokens, --repetition-penalty, --seed (or those in `names`),
    generated from sampling.SAMPLING_PARAMS; `defaults` changes a default (xray shows temperature 1)."""
    from chatgpt_scratch.sampling import sampling_params

    for param in sampling_params(names):
        default = defaults.get(param.name, param.default)
        shown = "off" if default is None else ("0 = greedy" if param.name == "temperature" and default == 0
                                               else default)
        parser.add_argument(param.flag, type=param.type, default=default, metavar=param.metavar,
                            help=f"{param.help} (default: {shown})")


def args_device(args: argparse.Namespace) -> str:
    """The device --device names, resolved (auto -> cuda, mps or cpu)."""
    from chatgpt_scratch.system.device import resolve_device

    return str(resolve_device(args.device))


def add_checkpoint_arg(parser: argparse.ArgumentParser, command: str) -> None:
    """--checkpoint PATH for a command that falls back to a default model (DEFAULT_KINDS[command])."""
    kinds = DEFAULT_KINDS[command]
    parser.add_argument("--checkpoint", metavar="PATH",
                        help=f"a {' or '.join(sorted(kinds))} .safetensors checkpoint, or a lora-adapter of one "
                        f"(merged on load); default: your best {kinds[0]} model, else the built-in one")


def checkpoint_or_default(checkpoint: str | None, command: str) -> str:
    """--checkpoint as given, else the default model for `command` (the user's own best first, then the
    built-in one), named in one line on stderr so the user knows which model answered."""
    import sys

    if checkpoint:
        return checkpoint
    from chatgpt_scratch.checkpoints import adapted_kind, default_checkpoint
    from chatgpt_scratch.errors import ScratchError

    kinds = DEFAULT_KINDS[command]
    info = default_checkpoint(kinds)
    if info is None:
        raise ScratchError(f"{command}: no {' or '.join(kinds)} model found in the checkpoints folder and no "
                           "built-in one; pass --checkpoint PATH (`chatgpt-scratch checkpoints list` shows yours)")
    origin = "built-in default" if info.builtin else "your best"
    print(f"using {info.path} ({origin} {adapted_kind(info.metadata)} model; "
          "--checkpoint PATH picks another)", file=sys.stderr)
    return str(info.path)
