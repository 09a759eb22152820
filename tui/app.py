"""The Textual app: Chat, Spam, Train and Checkpoints screens (plus X-ray when present).

Start-up stays fast because nothing here imports torch: screens import the model
stack inside thread workers, the first time they need it.
"""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path
from typing import Iterable

from textual import on, work
from textual.app import App, SystemCommand
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.signal import Signal
from textual.worker import Worker, WorkerState

from tui import keymap, settings
from tui.state import SharedState
from tui.widgets.nav import SCREENS


def _lazy_screen(module: str, name: str):
    """A screen factory that imports the screen's module the first time it is opened (faster start)."""

    def make() -> Screen:
        return getattr(importlib.import_module(module), name)()

    return make


def _xray_available() -> bool:
    return importlib.util.find_spec("tui.screens.xray") is not None


class ScratchApp(App):
    """chatgpt-scratch in the terminal."""

    TITLE = "chatgpt-scratch"
    CSS_PATH = "app.tcss"
    MODES = {
        "chat": _lazy_screen("tui.screens.chat", "ChatScreen"),
        "spam": _lazy_screen("tui.screens.spam", "SpamScreen"),
        "train": _lazy_screen("tui.screens.train", "TrainScreen"),
        "checkpoints": _lazy_screen("tui.screens.checkpoints", "CheckpointsScreen"),
    }
    BINDINGS = keymap.bindings("app")

    # What the screens share (models in use, device): replaced, never mutated; see tui/state.py.
    state: reactive[SharedState] = reactive(SharedState, init=False, always_update=False)

    def __init__(self, start: str = "chat", detect_device: bool = True) -> None:
        super().__init__()
        self.state_changed: Signal[SharedState] = Signal(self, "state-changed")
        self.start_mode = start
        self.detect_device = detect_device  # off in snapshot tests: the header must not depend on the machine
        self.has_xray = _xray_available()
        if self.has_xray:
            self.add_mode("xray", _lazy_screen("tui.screens.xray", "XrayScreen"))  # the X-ray helper's screen

    # --- navigation ----------------------------------------------------------------------------

    def nav_screens(self) -> list[tuple[str, str]]:
        return SCREENS + ([("xray", "5 X-ray")] if self.has_xray else [])

    def on_mount(self) -> None:
        self.switch_mode(self.start_mode)
        self.update_header()
        if settings.welcome_due():  # the first launch: what each screen is for, once
            self.call_after_refresh(self.action_welcome, remember=True)
        if self.detect_device:
            # After the first paint: importing torch in a thread still holds the GIL for a while.
            self.call_after_refresh(self.resolve_device)

    def action_open(self, mode: str) -> None:
        if mode == "xray" and not self.has_xray:
            self.notify("The X-ray screen is not installed in this build.", severity="warning")
            return
        if self.current_mode != mode:
            self.switch_mode(mode)

    def action_about(self) -> None:
        from tui.screens.about import AboutScreen

        self.push_screen(AboutScreen())

    def action_welcome(self, remember: bool = False) -> None:
        from tui.screens.welcome import WelcomeScreen

        self.push_screen(WelcomeScreen(), (lambda _: settings.welcome_seen()) if remember else None)

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.current_theme.dark else "textual-dark"

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for mode, label in self.nav_screens():
            name = label.split(" ", 1)[1]
            yield SystemCommand(f"Open {name}", f"Go to the {name} screen (key {label[0]} or F{label[0]})",
                                lambda m=mode: self.action_open(m))
        yield SystemCommand("About / settings", "Data folders, keys, theme", self.action_about)
        yield SystemCommand("Welcome", "What each screen is for, and the model it opens with", self.action_welcome)
        yield SystemCommand("Toggle light/dark", "Switch between the light and dark theme", self.action_toggle_theme)

    # --- shared state shown in the header ------------------------------------------------------

    def update_header(self) -> None:
        self.sub_title = self.state.header()

    def watch_state(self, state: SharedState) -> None:
        self.update_header()
        self.state_changed.publish(state)

    def set_model(self, role: str, path: Path | None, name: str | None) -> None:
        """Record the checkpoint in use for 'chat' or 'spam' (shown in the header)."""
        self.state = self.state.with_model(role, path, name)

    def use_checkpoint(self, role: str, path: Path) -> None:
        """From the Checkpoints screen: open `path` in the chat or spam screen."""
        self.state = self.state.with_model(role, path, self.state.model(role).name)
        self.switch_mode(role)

    class DeviceResolved(Message):
        """A worker found the device `--device auto` picks (cuda, mps or cpu)."""

        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

    @work(thread=True, exit_on_error=False)
    def resolve_device(self) -> None:
        from chatgpt_scratch.system.device import resolve_device

        self.post_message(self.DeviceResolved(str(resolve_device("auto"))))

    @on(DeviceResolved)
    def device_resolved(self, message: DeviceResolved) -> None:
        self.state = replace(self.state, device=message.name)

    # --- the one place where background work reports back ------------------------------------
    # Every thread worker (an @work method of the App, a screen or a widget) posts typed messages with
    # its results; its errors end here (screens and widgets forward their Worker.StateChanged).

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            self.notify(error_text(event.worker.error), title="Error", severity="error", markup=False,
                        timeout=8)


def error_text(error: BaseException | None) -> str:
    """A ScratchError's message is meant for the user as it is; anything else gets its type."""
    from chatgpt_scratch.errors import ScratchError

    if error is None:
        return "unknown error"
    return str(error) if isinstance(error, ScratchError) else f"{type(error).__name__}: {error}"


def run_app(start: str = "chat") -> int:
    ScratchApp(start=start).run()
    return 0
