"""The X-ray screen's views as rich Text: pure functions of the library's results (chatgpt_scratch.usecases.xray),
drawn with the scales of chatgpt_scratch.usecases.xray_view that `chatgpt-scratch xray` prints with too."""

from __future__ import annotations

import zlib
from typing import Any

from rich.style import Style
from rich.text import Text

from chatgpt_scratch.usecases.xray_view import (SHADE_LEGEND, bar, column_numbers, fit, heat_style, percent, shade,
                                       significant, surprise_style)

CHIP_COLOURS = ["#1f4e79", "#7b2d26", "#2e6b30", "#6a3d7c", "#8a5a00", "#005f6b", "#7a1f4d", "#4a5a12",
                "#3b3b98", "#8b3a00", "#00606a", "#5c2a86"]


def chip_colour(token_id: int) -> str:
    return CHIP_COLOURS[zlib.crc32(str(token_id).encode()) % len(CHIP_COLOURS)]


def render_chips(tokens, selected: int | None = None) -> Text:
    """Each token as a coloured chip: its visible text, then its id. Clicking a chip selects that token."""
    text = Text()
    for piece in tokens.pieces:
        style = Style.parse(f"bold white on {chip_colour(piece.id)}" + (" reverse" if piece.index == selected else ""))
        click = Style(meta={"@click": f"screen.select_token({piece.index})"})
        # no-break spaces inside a chip, so a line only wraps between chips
        text.append(f"\u00a0{piece.label}\u00a0", style=style + click)
        text.append(f"{piece.id}", style=Style(dim=True) + click)
        text.append(" ")
    return text


def render_next(view) -> Text:
    text = Text()
    text.append("step".ljust(20) + "kept".rjust(7) + "   entropy\n", style="bold")
    for s in view.stages:
        text.append(f"{s.name:<20}{s.survivors:7d}   {s.entropy_bits:6.2f} bits\n")
    text.append("\n")
    text.append(f" #  {'token':<14}{'id':>6}  {'model p':<24}  after sampling steps\n", style="bold")
    p_max = max(c.model_prob for c in view.candidates) or 1.0
    f_max = max(c.final_prob for c in view.candidates) or 1.0
    for c in view.candidates:
        text.append(f"{c.rank:2d}  ")
        text.append(fit(c.label, 14), style="bold" if c.survives else "dim")
        text.append(f"{c.id:6d}  ")
        text.append(bar(c.model_prob / p_max, 16), style="cyan")
        text.append(f" {percent(c.model_prob)}  ")
        if c.survives:
            text.append(bar(c.final_prob / f_max, 16), style="green")
            text.append(f" {percent(c.final_prob)}\n")
        else:
            text.append(f"cut by {c.cut_by}\n", style="red dim")
    text.append(f"pick top ▶ {view.top.label!r} (id {view.top.id})", style="bold")
    return text


def render_attention(views: Any) -> Text:
    labels = [p.label for p in views.tokens.pieces]
    first, shown = views.attention_start, range(views.attention_start, views.token + 1)
    which = "mean of heads" if views.head is None else f"head {views.head}"
    text = Text()
    text.append(f"layer {views.layer} · {which} · rows attend to columns; blank = future (masked)\n", style="bold")
    text.append(f"weight {SHADE_LEGEND}", style="dim")
    text.append(f" · tokens {first}..{views.token}\n" if first else "\n", style="dim")
    for header in column_numbers(shown):
        text.append(" " * 16 + header + "\n", style="dim")
    for q in shown:
        marker = "▶" if q == views.token else " "
        text.append(f"{marker}{q:2d} {fit(labels[q], 12)}", style="bold" if q == views.token else "")
        for k in shown:
            if k > q:
                text.append("  ")
            else:
                w = views.attention[q - first][k - first]
                text.append(shade(w) * 2, style=heat_style(w))
        text.append("\n")
    text.append(f"\ntoken {views.token} {labels[views.token]!r} attends most to:\n", style="bold")
    for a in views.attended:
        text.append(f"  {a.index:3d} {fit(a.label, 14)} ")
        text.append(bar(a.weight, 20), style="yellow")
        text.append(f" {a.weight:.3f}\n")
    return text


def render_lens(views: Any) -> Text:
    rows = views.lens
    final = rows[-1]
    text = Text()
    text.append(f"at token {views.token} {views.tokens.pieces[views.token].label!r}: "
                "the top guess after each block\n", style="bold")
    text.append(f"{'stream':<12}{'top guess':<16}{'p':>8}   p of final guess {final.top_label!r}\n", style="bold")
    peak = max(r.final_prob for r in rows) or 1.0
    for r in rows:
        name = "embeddings" if r.layer == 0 else f"block {r.layer - 1}"
        text.append(f"{name:<12}")
        text.append(fit(r.top_label, 16), style="bold green" if r.top_id == final.top_id else "")
        text.append(f"{percent(r.top_prob)}   ")
        text.append(bar(r.final_prob / peak, 16), style="magenta")
        text.append(f" {percent(r.final_prob)}\n")
    return text


def render_loss(view) -> Text:
    text = Text()
    for t in view.tokens:
        text.append(t.label.replace("·", " "), style=surprise_style(t.bits))
    text.append("\n")
    if view.perplexity is not None:
        text.append(f"perplexity {significant(view.perplexity)}", style="bold")
        text.append(f"  (mean loss {view.mean_nats:.3f} nats = {view.mean_bits:.3f} bits per token)\n\n")
    else:
        text.append("perplexity needs at least two tokens\n\n")
    text.append(f"{'#':>3}  {'token':<14}{'nats':>7}{'bits':>7}{'p':>9}  surprise\n", style="bold")
    worst = max((t.nats for t in view.tokens if t.nats is not None), default=1.0) or 1.0
    for t in view.tokens:
        if t.nats is None:
            text.append(f"{t.index:3d}  {fit(t.label, 14)}{'-':>7}{'-':>7}{'-':>9}  (first token)\n", style="dim")
            continue
        text.append(f"{t.index:3d}  {fit(t.label, 14)}{t.nats:7.2f}{t.bits:7.2f}  {percent(t.prob)}  ")
        text.append(bar(t.nats / worst, 20), style=surprise_style(t.bits).split(" on ")[1])
        text.append("\n")
    return text
