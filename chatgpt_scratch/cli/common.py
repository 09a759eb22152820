"""Arguments shared by several subcommands."""

from __future__ import annotations

import argparse

from chatgpt_scratch.device import DEVICE_CHOICES


def add_device_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", metavar="{auto,cpu,cuda,mps}",
                        help="where to run: auto picks cuda, then mps, then cpu (default: auto; cuda:N also works)")


__all__ = ["add_device_arg", "DEVICE_CHOICES"]
