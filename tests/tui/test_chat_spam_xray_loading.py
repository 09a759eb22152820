"""Issue 14 #6 and #10, issue 12 (one X-ray layout): Pilot tests of the Chat, Spam and X-ray screens.

- While a model loads, each screen's status line names it, its size, the seconds so far and the stage
  (reading the weights N MB of M, building the model with what the header says), then its ready line.
- X-ray after F6 appends a newline token: the prompt box shows it as ↵, no rendered line of the screen
  holds a raw newline (which moved the terminal's cursor and blanked the statistics line), and the
  statistics stay.
- The CLI's `xray` output and the X-ray screen's tables show the same rows for the same prompt and model.
"""

from __future__ import annotations

import re
import threading

import pytest
from textual.widgets import Input

from tests.tui.conftest import wait_until
from tui.app import ScratchApp


def _seconds(status: str) -> float:
    """The seconds in a loading line: 'loading NAME, SIZE… 1.5 s · stage' -> 1.5."""
    return float(re.search(r"… ([0-9.]+) s · ", status).group(1))


def _hold(monkeypatch, owner, name: str) -> threading.Event:
    """Make owner.name (a classmethod or function building the model) wait until the event is set."""
    release = threading.Event()
    real = getattr(owner, name)

    def slow(*args, **kwargs):
        release.wait(20)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, slow)
    return release


@pytest.mark.parametrize("mode, status_id, ready", [
    ("chat", "#chat-status", "Type a message."),
    ("spam", "#spam-status", "Type a message, press ctrl+enter"),
    ("xray", "#xr-status", "4 tokens · 22 characters"),
])
async def test_loading_says_what_loads_and_how_far_it_is(tiny_base, tiny_classifier, monkeypatch, mode, status_id,
                                                          ready):
    from chatgpt_scratch import chat, classify
    from chatgpt_scratch.usecases import inference

    if mode == "chat":
        release = _hold(monkeypatch, chat.ChatSession, "from_checkpoint")
        name, about = "tiny-base.safetensors", "(base, test-tiny, "
    elif mode == "spam":
        release = _hold(monkeypatch, classify.SpamClassifier, "load")
        name, about = "tiny-spam.safetensors", "(classifier, test-tiny, "
    else:
        release = _hold(monkeypatch, inference, "load_for_inference")
        name, about = "tiny-base.safetensors", "(base, test-tiny, "
    app = ScratchApp(start=mode, detect_device=False)
    async with app.run_test(size=(140, 30)) as pilot:
        screen = app.screen
        status = lambda: str(screen.query_one(status_id).render())  # noqa: E731
        await wait_until(pilot, lambda: "building the model" in status(), what="the building stage")
        building = status()
        # The clock ticks every 0.5 s; on a loaded machine the tick's message may come late, so wait for it.
        await wait_until(pilot, lambda: _seconds(status()) > _seconds(building), timeout=10, what="the seconds to move on")
        later = status()
        stages = list(screen.query_one(f"#{ {'chat': 'chat', 'spam': 'spam', 'xray': 'xr'}[mode]}-loader").stages)
        release.set()
        await wait_until(pilot, lambda: ready in status(), what="the ready line")
        done = status()
    size = "6.2 MB" if mode == "spam" else "12.4 MB"  # test-tiny with a 2-class head, or with the LM head
    assert building.startswith(f"loading {name}, {size}… ") and about in building
    assert _seconds(later) > _seconds(building) and "building the model" in later  # the seconds move on while it waits
    assert "reading the header" in stages and stages[-1].startswith("building the model")
    assert [s for s in stages if s.startswith("reading the weights")][-1] == f"reading the weights {size} of {size}"
    assert "loading" not in done


async def test_xray_newline_tokens_show_as_arrows_and_keep_the_statistics(tiny_base, monkeypatch):
    from chatgpt_scratch.usecases import xray as X

    monkeypatch.setattr(X, "choose_next", lambda *a, **k: 198)  # "\n": F6 appends a newline token
    app = ScratchApp(start="xray", detect_device=False)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = app.screen
        await wait_until(pilot, lambda: screen.views is not None, what="the first views")
        await pilot.press("f6")
        await wait_until(pilot, lambda: len(screen.ids) == 5, what="the first newline")
        await pilot.press("f6")
        await wait_until(pilot, lambda: len(screen.ids) == 6, what="the second newline")
        await pilot.pause(0.2)
        box = screen.query_one("#xr-text", Input)
        box_line = "".join(segment.text for segment in box.render_line(0))
        stats = str(screen.query_one("#xr-status").render())
        screen_lines = ["".join(segment.text for segment in strip) for strip in app.screen._compositor.render_strips()]
        meant = getattr(box, "text", None)  # XrayPrompt: the text the box means
    assert not [line for line in screen_lines if "\n" in line or "\r" in line]  # nothing moves the cursor
    assert box.value == "Every effort moves you↵↵" and "you↵↵" in box_line
    assert meant == "Every effort moves you\n\n"
    assert stats.startswith("6 tokens · 24 characters · 4.00 characters per token · perplexity ")


async def test_the_cli_and_the_xray_screen_show_the_same_rows(tiny_base, capsys):
    """One layout (usecases/xray_view) for both front ends: every view's lines are equal, row for row."""
    from chatgpt_scratch.cli import main
    from tui.screens.xray import DEFAULT_TEXT

    assert main(["xray", "--checkpoint", str(tiny_base), DEFAULT_TEXT, "--layer", "0", "--head", "1",
                 "--token", "2", "--top-k", "3", "--top-p", "0.95"]) == 0  # the screen's top-p
    cli = capsys.readouterr().out.rstrip("\n").split("\n\n")  # tokens, next, attention, lens, loss
    app = ScratchApp(start="xray", detect_device=False)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        await wait_until(pilot, lambda: screen.views is not None, what="the first views")
        screen.query_one("#xr-top_k", Input).value = "3"
        screen.query_one("#xr-layer").value = 0
        screen.query_one("#xr-head").value = 1
        screen.query_one("#xr-token", Input).value = "2"
        await wait_until(pilot, lambda: (screen.views.layer, screen.views.head, screen.views.token,
                                         screen.views.next.sampling.top_k) == (0, 1, 2, 3), what="the settings")
        await pilot.pause(0.2)
        shown = {pane: [line.rstrip() for line in str(screen.query_one(f"#xr-{pane}").render()).split("\n")]
                 for pane in ("next", "attention", "lens", "loss")}
        rows = {name: table.rows() for name, table in screen.views.tables.items()}
    cli_lines = {name: block.split("\n") for name, block in zip(("tokens", "next", "attention", "lens", "loss"),
                                                                  _blocks(cli))}
    for pane in ("next", "attention", "lens", "loss"):
        assert shown[pane] == cli_lines[pane], pane
        assert rows[pane] and all(row in cli_lines[pane] for row in rows[pane])
    assert len(rows["next"]) == 10 and sum("cut by top-k" in r for r in rows["next"]) == 7
    assert len(rows["attention"]) == 3 and rows["attention"][2].startswith("▶  2 ")


def _blocks(parts: list[str]) -> list[str]:
    """The CLI joins views with one blank line, and a view may hold blank lines itself: regroup by titles."""
    titles = ("TOKENS", "NEXT TOKEN", "ATTENTION", "LOGIT LENS", "LOSS")
    blocks: list[str] = []
    for part in parts:
        if part.startswith(titles):
            blocks.append(part)
        else:
            blocks[-1] += "\n\n" + part
    return blocks


async def test_fast_decode_is_on_by_default_compiles_in_the_background_and_replies_meanwhile(tiny_base, fast_decode):
    """A first run: the model is ready at once (no compile in the loader), a reply comes while the step compiles
    in another process, then the step is taken back between replies and the next reply decodes through it."""
    app = ScratchApp(start="chat", detect_device=False)
    async with app.run_test(size=(140, 30)) as pilot:
        screen = app.screen
        status = lambda: str(screen.query_one("#chat-status").render())  # noqa: E731
        await wait_until(pilot, lambda: "Type a message." in status(), what="the model")
        assert "compiling in the background" in status()
        assert screen.session.compile_deferred and getattr(screen.session.model, "decoder", None) is None
        assert not any(s.startswith("compiling the decode step") for s in screen.query_one("#chat-loader").stages)
        screen.send("Every effort moves")
        await wait_until(pilot, lambda: not screen.replying and screen.session.stats is not None, what="a reply")
        await wait_until(pilot, lambda: getattr(screen.session.model, "decoder", None) is not None, timeout=300,
                         what="the compiled step, back from the background")
        assert not screen.session.compile_deferred and screen.session.model.decoder.error is None
        screen.send("Every effort moves")
        await wait_until(pilot, lambda: not screen.replying and "compiled" in status(), what="a compiled reply")
        assert "(compiled, float32 weights)" in status()


async def test_quitting_while_fast_decode_compiles_stops_the_compile(tiny_base, fast_decode, monkeypatch):
    """The compile runs in another process: quitting does not wait for it, and leaves no process behind."""
    import asyncio

    started = []
    spawn = asyncio.create_subprocess_exec

    async def recording(*args, **kwargs):
        started.append(await spawn(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(asyncio, "create_subprocess_exec", recording)
    app = ScratchApp(start="chat", detect_device=False)
    async with app.run_test(size=(140, 30)) as pilot:
        await wait_until(pilot, lambda: bool(started), what="the background compile")
        assert started[0].returncode is None
    await asyncio.wait_for(started[0].wait(), 10)
    assert started[0].returncode != 0  # killed, not finished


async def test_f7_turns_fast_decode_on_and_off_and_remembers_it(tiny_base):
    """F7 saves the setting and loads the same model again: with it on, the step compiles in the background and
    comes back; F7 again loads the model without one."""
    from tui.settings import load_settings

    app = ScratchApp(start="chat", detect_device=False)
    async with app.run_test(size=(140, 30)) as pilot:
        screen = app.screen
        status = lambda: str(screen.query_one("#chat-status").render())  # noqa: E731
        await wait_until(pilot, lambda: "Type a message." in status(), what="the model")
        assert getattr(screen.session.model, "decoder", None) is None and not screen.session.compile_deferred
        await pilot.press("f7")
        await wait_until(pilot, lambda: getattr(screen.session.model, "decoder", None) is not None, timeout=300,
                         what="the model with a compiled decode step")
        assert load_settings()["fast_decode"] is True
        assert screen.session.model.decoder.error is None
        await pilot.press("f7")
        await wait_until(pilot, lambda: getattr(screen.session.model, "decoder", None) is None, timeout=30,
                         what="the model without it")
        assert load_settings()["fast_decode"] is False
