"""What every main screen shares: header, tab bar, footer, where its workers' errors go, its model's path."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, Header

from tui import keymap
from tui.widgets.model_picker import ModelPicker
from tui.widgets.nav import NavBar
from tui.workers import ReportsWorkerErrors


class MainScreen(ReportsWorkerErrors, Screen):
    """A main screen: subclasses set MODE and implement compose_body(). MODE also names the screen's keys
    (its rows in tui/keymap.py) and its stylesheet (MODE.tcss, beside the subclass's module: Textual
    resolves a relative CSS_PATH from the file of the instance's class)."""

    MODE = ""

    def __init_subclass__(cls, **kwargs) -> None:
        # Before Textual's __init_subclass__, which merges the class's BINDINGS.
        cls.CSS_PATH = f"{cls.MODE}.tcss"
        cls.BINDINGS = keymap.bindings(cls.MODE)
        super().__init_subclass__(**kwargs)

    def compose(self) -> ComposeResult:
        yield Header()
        yield NavBar(self.MODE, self.app.nav_screens())
        yield from self.compose_body()
        yield Footer(compact=True)  # compact: the chat screen's hints fit in 120 columns

    def compose_body(self) -> ComposeResult:
        yield from ()

    @property
    def loaded_path(self) -> Path | None:
        """The checkpoint of the model this screen holds (its ModelPicker keeps it); None without one."""
        pickers = self.query(ModelPicker)
        return pickers.first().current if pickers else None

