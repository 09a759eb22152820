"""Text from files and users, made safe to print on a terminal.

A message to classify, a checkpoint header edited by hand or a file name may hold escape sequences
(`ESC ] 0 ; title BEL` retitles the window, `ESC [ 2 J` clears the screen) or other control
characters. Everything the CLI prints that it did not write itself goes through `printable`.
"""

from __future__ import annotations

import re

# C0 controls, DEL and the C1 block (U+0080-U+009F: 8-bit CSI and friends), plus the bidirectional
# overrides and isolates that reorder what follows them on screen.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_CONTROL_BUT_LINES = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\x1b": "\\e"}


def _escape(match: re.Match) -> str:
    ch = match.group()
    return _NAMED.get(ch) or (f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")


def printable(text: object, keep_lines: bool = False) -> str:
    """`text` with every control character shown as an escape (`\\e]0;title\\x07`), never acted on.

    keep_lines: leave newlines and tabs as they are (multi-line text a user wrote); by default the
    result is one line.
    """
    return (_CONTROL_BUT_LINES if keep_lines else _CONTROL).sub(_escape, str(text))
