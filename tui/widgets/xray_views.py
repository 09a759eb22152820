"""The X-ray screen's drawing: the laid-out tables of chatgpt_scratch.usecases.xray_view as rich Text (the
rows, columns and formats `chatgpt-scratch xray` prints), and the token chips, a TUI-only view."""

from __future__ import annotations

import zlib

from rich.style import Style
from rich.text import Text

# Re-exported so a test can check both front ends draw with the library's helpers (no copies here).
from chatgpt_scratch.usecases.xray_view import (SHADE_LEGEND, Table, bar, column_numbers, fit,  # noqa: F401
                                                percent, shade)

CHIP_COLOURS = ["#1f4e79", "#7b2d26", "#2e6b30", "#6a3d7c", "#8a5a00", "#005f6b", "#7a1f4d", "#4a5a12",
                "#3b3b98", "#8b3a00", "#00606a", "#5c2a86"]


def chip_colour(token_id: int) -> str:
    return CHIP_COLOURS[zlib.crc32(str(token_id).encode()) % len(CHIP_COLOURS)]


def table_text(table: Table) -> Text:
    """The table's lines with their styles (the CLI prints the same lines without them)."""
    text = Text()
    for i, line in enumerate(table.lines):
        if i:
            text.append("\n")
        for piece, style in line.spans:
            text.append(piece, style=style or None)
    text.rstrip()
    return text


def render_chips(tokens, selected: int | None = None) -> Text:
    """Each token as a coloured chip: its visible text, then its id. Clicking a chip posts TokenChips.Picked."""
    text = Text()
    for piece in tokens.pieces:
        style = Style.parse(f"bold white on {chip_colour(piece.id)}" + (" reverse" if piece.index == selected else ""))
        click = Style(meta={"@click": f"pick({piece.index})"})  # the chips widget's own action
        # no-break spaces inside a chip, so a line only wraps between chips
        text.append(f"\u00a0{piece.label}\u00a0", style=style + click)
        text.append(f"{piece.id}", style=Style(dim=True) + click)
        text.append(" ")
    return text
