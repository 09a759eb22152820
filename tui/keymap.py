"""Which key does what on which screen: the one table the app's and every main screen's BINDINGS come from.

A screen's table has a row per binding, in the order of its footer, its columns apart by two or more spaces:
the key (several joined by commas), the action it runs, the label the footer and the command palette show,
and optionally flags: `hidden` (not in the footer), `priority` (checked before the focused widget, so it
works even while typing). A line starting with # is a comment.
"""

from __future__ import annotations

import re

from textual.binding import Binding

KEYMAP: dict[str, str] = {
    "app": """
        # 1-5 when no text field has the focus; F1-F5 always (priority: even while typing).
        1          open('chat')           Chat          hidden
        2          open('spam')           Spam          hidden
        3          open('train')          Train         hidden
        4          open('checkpoints')    Checkpoints   hidden
        5          open('xray')           X-ray         hidden
        f1         open('chat')           Chat          hidden priority
        f2         open('spam')           Spam          hidden priority
        f3         open('train')          Train         hidden priority
        f4         open('checkpoints')    Checkpoints   hidden priority
        f5         open('xray')           X-ray         hidden priority
        f10        about                  About
        ctrl+t     toggle_theme           Light/dark    hidden
        ctrl+q     quit                   Quit          priority
    """,
    "chat": """
        escape     stop                   Stop reply
        ctrl+r     regenerate             Regenerate
        ctrl+n     new_conversation       New chat
        ctrl+y     copy_message           Copy msg
        ctrl+up    select_message(-1)     Pick msg
        ctrl+down  select_message(1)      Next msg      hidden
        f6         rename_conversation    Rename chat
        ctrl+d     delete_conversation    Delete chat
        ctrl+e     export_conversation    Export
        ctrl+b     toggle_sidebar         Sidebar
        # Hidden: the footer has no room left at 120 columns; the palette (ctrl+p) and the README list it.
        f7         toggle_fast_decode     Fast decode on/off  hidden
    """,
    "spam": """
        ctrl+enter,ctrl+j,f6  classify    Classify      priority
        ctrl+l     clear                  Clear
    """,
    "train": """
        f6         start                  Start
        f7         stop                   Stop
        f8         resume                 Resume
        # The plot's keys (Monitor tab only), before ctrl+o so that 80 columns still show them.
        m          metric                 Metric
        c          compare                Compare
        ctrl+o     toggle_tab             Form/monitor
    """,
    "checkpoints": """
        enter      use('chat')            Chat with it
        s          use('spam')            Use for spam
        r          rename                 Rename
        d          duplicate              Duplicate
        delete,x   delete                 Delete
        i          import_gpt2            Import GPT-2
        e          export_hf              Export HF
        m          merge_lora             Merge LoRA
        f9,ctrl+r  refresh                Refresh
    """,
    "xray": """
        # F1-F5 switch screens (app keys), so stepping starts at F6.
        f6         step('top')            Pick top ▶
        f7         step('sample')         Sample ▶
        f8         back                   ◀ Back
    """,
}

FLAGS = {"hidden", "priority"}


def bindings(screen: str) -> list[Binding]:
    """The BINDINGS of `screen` ("app" or a main screen's MODE), in the table's order."""
    result = []
    for line in KEYMAP[screen].strip().splitlines():
        if line.strip().startswith("#"):
            continue
        key, action, label, *rest = re.split(r"\s{2,}", line.strip())
        flags = set(rest[0].split()) if rest else set()
        if len(rest) > 1 or not flags <= FLAGS:
            raise ValueError(f"keymap {screen!r}: cannot read {line.strip()!r}")
        result.append(Binding(key, action, label, show="hidden" not in flags, priority="priority" in flags))
    return result
