"""Arguments shared by several subcommands (no torch import here: --help must stay fast)."""

from __future__ import annotations

import argparse


def add_device_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", metavar="{auto,cpu,cuda,mps}",
                        help="where to run: auto picks cuda, then mps, then cpu (default: auto; cuda:N also works)")
