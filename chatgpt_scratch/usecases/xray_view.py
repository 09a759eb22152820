"""How the X-ray views are laid out, for both front ends: which rows and columns each view has, their
headers, widths and number formats, the bars in eighths of a cell, the attention shades and the colour
scales of attention and surprise.

`lay_out(ray, ...)` turns one forward pass (chatgpt_scratch.usecases.xray) into a `Table` per view: lines
of (text, style) spans. `chatgpt-scratch xray` prints their text; the TUI's X-ray screen puts the same
lines, with the styles, in its widgets. So the two show the same rows, and a change of a column or a
format is made here once. Plain Python at import (no torch, no Textual): styles are strings ("bold",
"rgb(r,g,b)") that a front end may use or ignore; `lay_out` imports the library's views when called.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

BLOCKS = " ▏▎▍▌▋▊▉█"  # eighths of a character cell
SHADES = "·░▒▓█"  # attention weight, low to high; a masked (future) cell is blank
SHADE_LIMITS = (0.05, 0.15, 0.35, 0.6)  # a weight below SHADE_LIMITS[i] gets SHADES[i]


def bar(fraction: float, width: int) -> str:
    """A horizontal bar of `width` cells filled to `fraction`, in eighths of a cell."""
    eighths = round(max(0.0, min(1.0, fraction)) * width * 8)
    full, part = divmod(eighths, 8)
    return ("█" * full + (BLOCKS[part] if part else "")).ljust(width)


def fit(label: str, width: int) -> str:
    """Cut a label to `width` characters (… marks the cut) and pad it."""
    return (label if len(label) <= width else label[:width - 1] + "…").ljust(width)


def percent(p: float) -> str:
    """Seven characters: ' 31.20%', or '  3e-3%' for a tiny probability."""
    if p >= 0.0001 or p == 0:
        return f"{p * 100:6.2f}%"
    return (f"{p * 100:.0e}".replace("e-0", "e-") + "%").rjust(7)


def significant(x: float, small: float = 10_000.0, digits: int = 4) -> str:
    """A number for the eye: two decimals below `small`, else `digits` significant digits ('1.297e+11'),
    so a huge perplexity does not print float noise that differs between CPUs."""
    if abs(x) < small:
        return f"{x:.2f}"
    return f"{x:.{digits}g}"


def column_numbers(columns: range) -> list[str]:
    """Header rows numbering 2-cell columns: the units, with a tens row above once numbers reach 10."""
    units = "".join(f"{k % 10:>2d}" for k in columns)
    if columns.stop <= 10:
        return [units]
    return ["".join(f"{k // 10 % 10:>2d}" if k >= 10 else "  " for k in columns), units]


def shade(weight: float) -> str:
    """One shade character for an attention weight (absolute scale, same in every map)."""
    return next((c for c, limit in zip(SHADES, SHADE_LIMITS) if weight < limit), SHADES[-1])


SHADE_LEGEND = " ".join(f"{c}<{limit:.0%}" for c, limit in zip(SHADES, SHADE_LIMITS)) + f" {SHADES[-1]}≥{SHADE_LIMITS[-1]:.0%}"



def describe_sampling(s) -> str:
    parts = ["greedy (temperature 0)" if s.greedy else f"temperature {s.temperature:g}"]
    if s.top_k is not None:
        parts.append(f"top-k {s.top_k}")
    if s.top_p is not None:
        parts.append(f"top-p {s.top_p:g}")
    if s.repetition_penalty != 1.0:
        parts.append(f"repetition penalty {s.repetition_penalty:g}")
    return " · ".join(parts)


def heat_style(weight: float) -> str:
    """Dark blue (0) to bright yellow (1)."""
    w = max(0.0, min(1.0, weight)) ** 0.5  # small weights still visible
    r, g, b = int(40 + 215 * w), int(60 + 180 * w), int(140 - 100 * w)
    return f"rgb({r},{g},{b})"


def surprise_style(bits: float | None) -> str:
    """Green (expected) to red (about as surprising as a uniform guess over GPT-2's vocabulary, 15.6 bits)."""
    if bits is None:
        return "white on grey30"
    x = max(0.0, min(1.0, bits / 15.6))
    r, g = int(40 + 180 * x), int(160 - 120 * x)
    return f"white on rgb({r},{g},40)"


# ----------------------------------------------------------------------------------------------
# Layout: the views as tables of styled lines, one decision for both front ends

TOP_CANDIDATES = 10  # next-token candidates listed (the CLI's --top default)
HEATMAP_TOKENS = 40  # the heatmap shows at most this many tokens, ending at the selected one (2 cells each)
ATTENDED = 5  # "attends most to" rows
NEXT_BAR, ATTENDED_BAR, LENS_BAR, LOSS_BAR = 16, 20, 16, 24  # bar widths in cells
LABEL = 14  # token label width in the tables

Span = tuple[str, str]  # (text, style); style "" = plain


@dataclass(frozen=True)
class Line:
    spans: tuple[Span, ...]
    kind: str = "row"  # "title", "header", "row" (one item of the view) or "note"

    @property
    def text(self) -> str:
        return "".join(t for t, _ in self.spans).rstrip()


@dataclass
class Table:
    """One view laid out: its lines, each a tuple of (text, style) spans."""

    name: str  # "tokens", "next", "attention", "lens" or "loss"
    lines: list[Line] = field(default_factory=list)

    def add(self, *spans: str | Span, kind: str = "row") -> None:
        self.lines.append(Line(tuple((s, "") if isinstance(s, str) else s for s in spans), kind))

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)

    def rows(self) -> list[str]:
        """The text of the view's item rows (a candidate, a token, a layer), without titles and notes."""
        return [line.text for line in self.lines if line.kind == "row"]


def token_stats(tokens: Any, perplexity: float | None | bool = False) -> str:
    """'4 tokens · 22 characters · 5.50 characters per token', then ' · perplexity P' when one is given
    (None: '-', too few tokens); the CLI's TOKENS title and the TUI's status line."""
    text = f"{tokens.n_tokens} tokens · {tokens.n_chars} characters · {tokens.chars_per_token:.2f} characters per token"
    if perplexity is False:
        return text
    return text + f" · perplexity {'-' if perplexity is None else significant(perplexity)}"


def heatmap_window(token: int) -> range:
    """The tokens the heatmap shows: at most HEATMAP_TOKENS, ending at the selected one."""
    return range(max(0, token + 1 - HEATMAP_TOKENS), token + 1)


def tokens_table(tokens: Any) -> Table:
    t = Table("tokens")
    t.add(("TOKENS  " + token_stats(tokens), "bold"), kind="title")
    t.add("│" + "│".join(p.label for p in tokens.pieces) + "│", kind="note")
    t.add("", kind="note")
    t.add(("   #      id  token", "bold"), kind="header")
    for p in tokens.pieces:
        t.add(f"{p.index:4d}  {p.id:6d}  {p.label}")
    return t


def next_table(view: Any, after_label: str) -> Table:
    t = Table("next")
    t.add((f"NEXT TOKEN  after token {view.position} {after_label!r} · {describe_sampling(view.sampling)}", "bold"),
          kind="title")
    t.add((f"{'step':<20}{'kept':>7}   entropy", "bold"), kind="header")
    for s in view.stages:
        t.add(f"{s.name:<20}{s.survivors:7d}   {s.entropy_bits:6.2f} bits", kind="note")
    t.add("", kind="note")
    t.add((f" #  {'token':<{LABEL}}{'id':>6}  {'model p':<{NEXT_BAR + 8}}  after sampling steps", "bold"),
          kind="header")
    p_max = max(c.model_prob for c in view.candidates) or 1.0
    f_max = max(c.final_prob for c in view.candidates) or 1.0
    for c in view.candidates:
        final: tuple[Span, ...] = (
            ((bar(c.final_prob / f_max, NEXT_BAR), "green"), f" {percent(c.final_prob)}") if c.survives
            else ((f"cut by {c.cut_by}", "red dim"),))
        t.add(f"{c.rank:2d}  ", (fit(c.label, LABEL), "bold" if c.survives else "dim"), f"{c.id:6d}  ",
              (bar(c.model_prob / p_max, NEXT_BAR), "cyan"), f" {percent(c.model_prob)}  ", *final)
    t.add((f"pick top: {view.top.label!r} (id {view.top.id})", "bold"), kind="note")
    return t


def attention_table(labels: list[str], layer: int, head: int | None, token: int, window: list[list[float]],
                    attended: list[Any]) -> Table:
    """labels: every token's; window: the weights among heatmap_window(token) (row q attends to column k)."""
    shown = heatmap_window(token)
    first = shown.start
    which = "mean of heads" if head is None else f"head {head}"
    t = Table("attention")
    t.add((f"ATTENTION  layer {layer} · {which} · rows attend to columns; blank = future (masked)", "bold"),
          kind="title")
    t.add((f"  weight: {SHADE_LEGEND}" + (f" · tokens {first}..{token}" if first else ""), "dim"), kind="note")
    for header in column_numbers(shown):
        t.add((" " * 18 + header, "dim"), kind="header")
    for q in shown:
        cells: list[Span] = []
        for k in shown:
            w = window[q - first][k - first]
            cells.append(("  ", "") if k > q else (shade(w) * 2, heat_style(w)))
        t.add(("▶" if q == token else " ") + f"{q:3d} ", (fit(labels[q], 12), "bold" if q == token else ""), " ",
              *cells)
    t.add("", kind="note")
    t.add((f"  token {token} {labels[token]!r} attends most to:", "bold"), kind="note")
    for a in attended:
        t.add(f"    {a.index:3d} {fit(a.label, LABEL)} ", (bar(a.weight, ATTENDED_BAR), "yellow"), f" {a.weight:.3f}",
              kind="note")
    return t


def lens_table(rows: list[Any], token: int, label: str) -> Table:
    final = rows[-1]
    t = Table("lens")
    t.add((f"LOGIT LENS  at token {token} {label!r}: the top guess after each block", "bold"), kind="title")
    t.add(("  (the residual stream through the final norm and the output head)", "dim"), kind="note")
    t.add((f"  {'stream':<12}{'top guess':<16}{'p':>7}   p of final guess {final.top_label!r}", "bold"),
          kind="header")
    peak = max(r.final_prob for r in rows) or 1.0
    for r in rows:
        name = "embeddings" if r.layer == 0 else f"block {r.layer - 1}"
        t.add(f"  {name:<12}", (fit(r.top_label, 16), "bold green" if r.top_id == final.top_id else ""),
              f"{percent(r.top_prob)}   ", (bar(r.final_prob / peak, LENS_BAR), "magenta"),
              f" {percent(r.final_prob)}")
    return t


def loss_table(view: Any) -> Table:
    t = Table("loss")
    t.add(("LOSS  each token's surprise: the cross-entropy of its prediction from the tokens before", "bold"),
          kind="title")
    t.add(*((tok.label.replace("·", " "), surprise_style(tok.bits)) for tok in view.tokens), kind="note")
    if view.perplexity is None:
        t.add("  perplexity: needs at least two tokens", kind="note")
    else:
        t.add((f"  perplexity {significant(view.perplexity)}", "bold"),
              f"  (mean loss {view.mean_nats:.3f} nats = {view.mean_bits:.3f} bits per token over "
              f"{len(view.tokens) - 1} predicted tokens)", kind="note")
    t.add((f"     #  {'token':<{LABEL}}{'nats':>7}{'bits':>7}  {'p':>7}  surprise", "bold"), kind="header")
    worst = max((tok.nats for tok in view.tokens if tok.nats is not None), default=1.0) or 1.0
    for tok in view.tokens:
        if tok.nats is None:
            t.add((f"  {tok.index:4d}  {fit(tok.label, LABEL)}{'-':>7}{'-':>7}  {'-':>7}  (first token: nothing "
                   "predicts it)", "dim"))
        else:
            t.add(f"  {tok.index:4d}  {fit(tok.label, LABEL)}{tok.nats:7.2f}{tok.bits:7.2f}  {percent(tok.prob)}  ",
                  (bar(tok.nats / worst, LOSS_BAR), surprise_style(tok.bits).split(" on ")[1]))
    return t


@dataclass
class Shown:
    """What one X-ray shows: the library's views (plain numbers) and the tables laid out from them."""

    tokens: Any  # TokensView
    next: Any  # NextTokenView
    layer: int
    head: int | None
    token: int
    attention_start: int  # first token index of the heatmap window
    attention: list[list[float]]  # the weights among heatmap_window(token)
    attended: list[Any]  # Attended, heaviest first
    lens: list[Any]  # LensRow per stream position
    loss: Any  # LossView
    tables: dict[str, Table]


def lay_out(ray: Any, sampling: Any, layer: int | None = None, head: int | None = None, token: int | None = None,
            top: int = TOP_CANDIDATES, text: str | None = None, flag_names: bool = False) -> Shown:
    """Every view of one forward pass (`ray`), laid out. layer/token None = the last; head None = the mean.
    A token index outside the text is a ScratchError (named as the CLI's flag when flag_names)."""
    from chatgpt_scratch.errors import ScratchError
    from chatgpt_scratch.usecases import xray as X

    n = len(ray.ids)
    at = n - 1 if token is None else token
    if not 0 <= at < n:
        raise ScratchError(f"{'--token' if flag_names else 'token #'} must be 0..{n - 1} for this text"
                           + (f", got {token}" if flag_names else ""))
    layer = ray.n_layers - 1 if layer is None else layer
    shown = heatmap_window(at)
    window = X.attention_matrix(ray, layer, head)[shown.start:at + 1, shown.start:at + 1].tolist()
    tokens = X.tokens_of_ids(ray.ids, text)
    labels = [p.label for p in tokens.pieces]
    nxt = X.next_token_view(ray, sampling, top)
    attended = X.top_attended(ray, layer, head, at, k=ATTENDED)
    lens, loss = X.logit_lens(ray, at), X.loss_view(ray)
    tables = {"tokens": tokens_table(tokens), "next": next_table(nxt, labels[nxt.position]),
              "attention": attention_table(labels, layer, head, at, window, attended),
              "lens": lens_table(lens, at, labels[at]), "loss": loss_table(loss)}
    return Shown(tokens, nxt, layer, head, at, shown.start, window, attended, lens, loss, tables)


# ----------------------------------------------------------------------------------------------
# The prompt box: a one-line field shows newlines as ↵ (a raw newline in a terminal line moves the cursor
# down, and the rest of the line overwrote the statistics below it: issue 14 #6)

PROMPT_VISIBLE = {"\n": "↵", "\r": "␍", "\t": "⇥"}  # the marks the token chips use too


def prompt_shown(text: str) -> str:
    """The text as a one-line prompt field shows it: each newline as ↵, carriage return ␍, tab ⇥."""
    for raw, mark in PROMPT_VISIBLE.items():
        text = text.replace(raw, mark)
    return text


def prompt_text(shown: str) -> str:
    """The text a prompt field means: each mark the character it stands for again."""
    for raw, mark in PROMPT_VISIBLE.items():
        shown = shown.replace(mark, raw)
    return shown
