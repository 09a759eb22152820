"""The README's key table and tui/keymap.py (where every screen's BINDINGS come from) agree: each key a
footer shows is in the README's row for its screen, so the documentation cannot drift from the app."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tui.keymap import KEYMAP, bindings

README = Path(__file__).resolve().parents[1] / "README.md"
WHERE = {"app": "everywhere", "chat": "Chat", "spam": "Spam", "train": "Train", "checkpoints": "Checkpoints",
         "xray": "X-ray"}
NAMES = {"escape": "Esc", "enter": "Enter", "delete": "Del"}


def _readme_rows() -> list[tuple[str, str]]:
    text = README.read_text(encoding="utf-8")
    table = text.split("| Key | Where | Does |", 1)[1].split("\n\n", 1)[0]
    rows = []
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows.append((cells[0], cells[1]))
    return rows


def _shown(key: str) -> str:
    if re.fullmatch(r"f\d+", key):
        return key.upper()
    return NAMES.get(key, key)


def _documented(key: str, cell: str) -> bool:
    if f"`{_shown(key)}`" in cell:
        return True
    for first, last in re.findall(r"`F(\d+)`–`F(\d+)`", cell):  # a range such as `F1`–`F5`
        if re.fullmatch(r"f\d+", key) and int(first) <= int(key[1:]) <= int(last):
            return True
    return False


@pytest.mark.parametrize("screen", list(KEYMAP))
def test_every_footer_key_is_in_the_readme_row_of_its_screen(screen):
    rows = [keys for keys, where in _readme_rows() if where.startswith(WHERE[screen])]
    assert rows, f"the README key table has no row for {WHERE[screen]}"
    for binding in bindings(screen):
        if not binding.show:
            continue
        alternatives = binding.key.split(",")
        assert any(_documented(k, cell) for k in alternatives for cell in rows), \
            f"{screen}: {binding.key} ({binding.description}) is not in the README's key table"
