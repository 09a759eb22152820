"""What every main screen shares: header, tab bar, footer."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, Header

from tui.widgets.nav import NavBar


class MainScreen(Screen):
    """A main screen: subclasses set MODE and implement compose_body()."""

    MODE = ""

    def compose(self) -> ComposeResult:
        yield Header()
        yield NavBar(self.MODE, self.app.nav_screens())
        yield from self.compose_body()
        yield Footer(compact=True)  # compact: the chat screen's hints fit in 120 columns

    def compose_body(self) -> ComposeResult:
        yield from ()
