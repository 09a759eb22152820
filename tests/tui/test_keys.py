"""Issue 14 #1: screen keys never eat typed text. F1-F5 switch from every screen, even while typing; the
digits switch only when no text box has the focus (in one they are typed); About says exactly that."""

from __future__ import annotations

import re

from textual.widgets import Input, Markdown

from tui.app import ScratchApp


async def test_digits_type_in_text_boxes_and_f_keys_switch_from_everywhere(checkpoints_folder):
    app = ScratchApp(start="chat", detect_device=False)
    async with app.run_test(size=(100, 30)) as pilot:
        chat = app.screen
        box = chat.query_one("#chat-input", Input)
        box.focus()
        await pilot.press("2")
        typed, stayed = box.value, app.current_mode
        await pilot.press("f4")  # while a text box has the focus
        after_f4 = app.current_mode
        app.screen.set_focus(None)
        await pilot.press("2")  # no text box focused: the digit switches
        after_digit = app.current_mode
        await pilot.press("f10")
        about = app.screen.query_one("#about-text", Markdown).source
        await pilot.press("escape")
    assert (typed, stayed) == ("2", "chat")
    assert after_f4 == "checkpoints" and after_digit == "spam"
    assert "| F1 F2 F3 F4 F5 | Chat, Spam, Train, Checkpoints, X-ray: from every screen, also while typing |" in about
    assert "| 1 2 3 4 5 | the same, when no text box has the focus (in a text box a digit is typed) |" in about
    assert "Esc or F10 closes it" in about


async def test_home_and_end_move_the_checkpoints_selection_and_d_copies_that_row(tiny_base, tiny_classifier):
    """Issue 14 #8: Home/End moved the view sideways and d duplicated a model the user did not see selected."""
    from textual.widgets import DataTable

    from tests.tui.conftest import wait_until

    app = ScratchApp(start="checkpoints", detect_device=False)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        table = screen.query_one("#ckpt-table", DataTable)
        await wait_until(pilot, lambda: table.row_count == 2, what="the table")
        table.focus()
        await pilot.press("end")
        at_end = table.cursor_row, screen.selected_path()
        await pilot.press("home")
        at_home = table.cursor_row, screen.selected_path()
        await pilot.press("end", "d")
        await wait_until(pilot, lambda: (tiny_classifier.parent / "tiny-spam-copy.safetensors").exists()
                         or any("Copied" in n.message for n in app._notifications), what="the copy")
        copied = [n.message for n in app._notifications if "Copied" in n.message]
    assert at_end == (1, tiny_classifier) and at_home == (0, tiny_base)
    assert copied and "tiny-spam" in copied[0]


async def test_a_new_classification_replaces_the_spam_table(tiny_classifier):
    """Issue 14 #8: the rows of an earlier classification stayed under a new multi-line one."""
    from textual.widgets import DataTable, TextArea

    from tests.tui.conftest import wait_until

    app = ScratchApp(start="spam", detect_device=False)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await wait_until(pilot, lambda: screen.classifier is not None, what="the classifier")
        box = screen.query_one("#spam-input", TextArea)
        box.text = "an earlier message"
        await pilot.press("ctrl+j")
        await wait_until(pilot, lambda: screen.results, what="the first result")
        box.text = "first line\nsecond line"
        await pilot.press("ctrl+j")
        await wait_until(pilot, lambda: screen.results and screen.results[0][2] == "first line", what="the batch")
        table = screen.query_one("#spam-table", DataTable)
        rows = [str(table.get_row_at(i)[2]) for i in range(table.row_count)]
    assert rows == ["first line", "second line"]


async def test_chat_says_what_it_loads_and_for_how_long(tiny_base, monkeypatch):
    """Issue 14 #10: while a model loads the status line names it, its size and the seconds so far."""
    import threading

    from chatgpt_scratch import chat as chat_module
    from tests.tui.conftest import wait_until

    release = threading.Event()
    real = chat_module.ChatSession.from_checkpoint.__func__

    def slow(cls, *args, **kwargs):
        release.wait(10)
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(chat_module.ChatSession, "from_checkpoint", classmethod(slow))
    app = ScratchApp(start="chat", detect_device=False)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = app.screen
        status = lambda: str(screen.query_one("#chat-status").render())  # noqa: E731
        await wait_until(pilot, lambda: "loading tiny-base.safetensors" in status(), what="the loading line")
        first = status()
        # The clock ticks every 0.5 s; on a loaded machine the tick's message may come late, so wait for it.
        secs = lambda line: float(re.search(r"… ([0-9.]+) s", line).group(1))  # noqa: E731
        await wait_until(pilot, lambda: secs(status()) > secs(first), timeout=10, what="the seconds to move on")
        later = status()
        release.set()
        await wait_until(pilot, lambda: screen.session is not None, what="the model")
        await pilot.pause(0.7)
        done = status()
    assert "tiny-base.safetensors, 12.4 MB…" in first and secs(later) > secs(first)  # the seconds move on
    assert "Type a message." in done and "loading" not in done
