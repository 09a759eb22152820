"""ReportsWorkerErrors: what every screen and widget with @work workers inherits.

A worker's StateChanged goes to the node that started it and does not bubble; this hands it to the App's
one place that turns a worker's error into a notification (ScratchApp.on_worker_state_changed).
"""

from __future__ import annotations


class ReportsWorkerErrors:
    """Mixin (first among the bases): forward this node's worker state changes to the App."""

    def on_worker_state_changed(self, event) -> None:
        self.app.on_worker_state_changed(event)
