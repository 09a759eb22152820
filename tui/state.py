"""What the screens share, in one small immutable object the App holds in a reactive field.

A screen never sets attributes on the App: it replaces the state (`app.update_state(chat=...)`), the
App's watcher redraws the header and publishes `app.state_changed` (a Textual Signal) for any
widget that wants to follow. In the style of elia's RuntimeConfig + signal.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path


@dataclass(frozen=True)
class ModelInUse:
    """The checkpoint a screen uses (or should open), and the short name the header shows."""

    path: Path | None = None
    name: str | None = None


@dataclass(frozen=True)
class SharedState:
    chat: ModelInUse = field(default_factory=ModelInUse)
    spam: ModelInUse = field(default_factory=ModelInUse)
    device: str = "auto"  # resolved in a worker at start-up (needs torch)

    def model(self, role: str) -> ModelInUse:
        return getattr(self, role)

    def with_model(self, role: str, path: Path | None, name: str | None = None) -> SharedState:
        return replace(self, **{role: ModelInUse(path, name)})

    def header(self) -> str:
        return f"chat: {self.chat.name or '-'} · spam: {self.spam.name or '-'} · device: {self.device}"
