"""How the X-ray views draw, for both front ends: bars in eighths of a cell, fixed-width labels and
percentages, the attention shades and their legend, and the colour scales of attention and surprise.
`chatgpt-scratch xray` prints with these and the TUI's X-ray screen draws with them, so the two
show the same scales. Plain Python (no torch, no Textual): colours are style strings ("rgb(r,g,b)")
that a front end may use or ignore.
"""

from __future__ import annotations

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
