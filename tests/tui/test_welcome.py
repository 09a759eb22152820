"""The welcome panel (issue 14, beyond the list): on the first launch only, it says what each screen is for
and which model each opens with; Enter dismisses it, and the app's settings remember that."""

from __future__ import annotations

import json

from tests.tui.conftest import wait_until
from tests.tui.test_first_run import bundle  # noqa: F401 (the fixture: tiny built-ins under the shipped names)
from tui import settings
from tui.app import ScratchApp
from tui.screens.welcome import WelcomeScreen, welcome_markdown


async def test_the_welcome_shows_on_the_first_launch_only_and_enter_dismisses_it(first_launch, bundle, tiny_base):
    app = ScratchApp(detect_device=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, WelcomeScreen) and app.screen.query("#welcome-text"),
                         what="the welcome panel")
        welcome = app.screen
        text = welcome.query_one("#welcome-text")
        await wait_until(pilot, lambda: "being looked up" not in text.source, what="the models found")
        shown = text.source
        await pilot.press("x")  # not the close key: the panel stays
        stayed = app.screen is welcome
        await pilot.press("enter")
        await wait_until(pilot, lambda: not isinstance(app.screen, WelcomeScreen), what="the panel to close")
        under = app.screen.MODE
    saved = json.loads(settings.settings_path().read_text())

    second = ScratchApp(detect_device=False)
    async with second.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.5)
        again = isinstance(second.screen, WelcomeScreen)

    assert stayed and under == "chat" and saved == {"welcome_seen": True} and not again
    for line in ["**1 Chat**: talk to an instruction-tuned model", "**2 Spam**: paste messages",
                 "**3 Train**: pretrain or fine-tune", "**4 Checkpoints**: your models",
                 "**5 X-ray**: see inside the model"]:
        assert line in shown, line
    # The model each screen opens with: the built-in defaults, or the user's own where it wins (tiny-base
    # has no metric, so the built-in base stays X-ray's; a chat model is instruct first).
    assert "Model: `default-instruct` (built-in)" in shown.split("**2 Spam**")[0]
    assert "Model: `default-spam` (built-in)" in shown.split("**2 Spam**")[1].split("**3 Train**")[0]
    assert "Model: `default-base` (built-in)" in shown.split("**5 X-ray**")[1]


async def test_quitting_without_dismissing_shows_the_welcome_again(first_launch):
    app = ScratchApp(start="train", detect_device=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, WelcomeScreen) and app.screen.query("#welcome-close"),
                         what="the welcome panel")
        close_line = str(app.screen.query_one("#welcome-close").render())
        await pilot.press("ctrl+q")
    assert settings.welcome_due() and not settings.settings_path().exists()
    assert close_line.startswith("Press Enter to start")
    # With no models at all the panel says where to get one.
    assert "none yet (train one in Train, or import GPT-2 in Checkpoints)" in welcome_markdown(True, {})
