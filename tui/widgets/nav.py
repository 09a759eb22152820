"""The tab bar at the top of every main screen: shows where you are, click or press 1-5 to move."""

from __future__ import annotations

from textual.widgets import Tab, Tabs

# (mode name, label) in key order: the label's number is the key that opens it.
SCREENS: list[tuple[str, str]] = [
    ("chat", "1 Chat"),
    ("spam", "2 Spam"),
    ("train", "3 Train"),
    ("checkpoints", "4 Checkpoints"),
]


class NavBar(Tabs):
    """Tabs that switch the app's mode instead of showing panes."""

    DEFAULT_CSS = """
    NavBar { height: 2; }
    """

    def __init__(self, current: str, screens: list[tuple[str, str]]) -> None:
        super().__init__(*[Tab(label, id=f"nav-{mode}") for mode, label in screens], active=f"nav-{current}")
        self.current = current
        self.can_focus = False

    def on_tabs_tab_activated(self, event: Tabs.TabActivated) -> None:
        event.stop()
        mode = (event.tab.id or "").removeprefix("nav-")
        if mode and mode != self.current:
            self.app.switch_mode(mode)
            self.active = f"nav-{self.current}"  # this screen's bar keeps showing this screen
