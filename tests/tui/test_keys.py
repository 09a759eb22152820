"""Issue 14 #1: screen keys never eat typed text. F1-F5 switch from every screen, even while typing; the
digits switch only when no text box has the focus (in one they are typed); About says exactly that."""

from __future__ import annotations

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
