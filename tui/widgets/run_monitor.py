"""The Train screen's metrics panel: a run's events folded into what it shows (Monitor.add, .render)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.content import Content

from tui import jobs

@dataclass
class Monitor:
    """What the metrics panel shows, folded from the selected run's events."""

    total_steps: int | None = None
    start_step: int = 0
    step: int | None = None
    epoch: float | None = None
    lr: float | None = None
    tokens_per_s: float | None = None
    elapsed_s: float | None = None
    train_loss: float | None = None
    best_val: float | None = None
    best_acc: float | None = None
    mfu: float | None = None
    # preference tuning (DPO): the latest training reward margin/accuracy and the val ones at the best val loss
    reward_margin: float | None = None
    reward_acc: float | None = None
    val_reward_margin: float | None = None
    val_reward_acc: float | None = None
    device: str | None = None
    state: str = ""
    message: str = ""

    def add(self, e: dict[str, Any]) -> None:
        kind = e.get("type")
        if kind == "start":
            self.total_steps = e.get("total_steps") or self.total_steps
            self.start_step = int(e.get("step") or 0)
            amp = e.get("amp_dtype")
            self.device = f"{e.get('device')}, {amp} autocast" if amp and amp != "float32" else e.get("device")
            self.state = "running"
        elif kind == "step":
            for key in ("step", "epoch", "lr", "tokens_per_s", "elapsed_s", "train_loss", "mfu", "reward_margin",
                        "reward_acc"):
                if e.get(key) is not None:
                    setattr(self, key, e[key])
        elif kind == "eval":
            for key in ("val_reward_margin", "val_reward_acc"):  # the latest eval's, as the plot's last point
                if isinstance(e.get(key), (int, float)):
                    setattr(self, key, e[key])
            if isinstance(e.get("val_loss"), (int, float)):
                self.best_val = e["val_loss"] if self.best_val is None else min(self.best_val, e["val_loss"])
            if isinstance(e.get("val_acc"), (int, float)):
                self.best_acc = e["val_acc"] if self.best_acc is None else max(self.best_acc, e["val_acc"])
        elif kind in jobs.TERMINAL_EVENTS:
            self.state = kind
            self.message = str(e.get("message", "")) if kind == "error" else ""

    def eta_s(self) -> float | None:
        if not (self.total_steps and self.step and self.elapsed_s):
            return None
        done = self.step - self.start_step
        if done <= 0:
            return None
        return (self.total_steps - self.step) * self.elapsed_s / done

    def render(self, state: str | None = None) -> Content:
        """The metrics panel, for the run in `state` (the runs list's; default: the one the events say).
        Run state, device and messages are $variables: shown as written, never as markup."""
        def fmt(v, spec="", none="-"):
            return none if v is None else format(v, spec)

        state = self.state if state is None else state
        eta = self.eta_s() if state in ("running", "starting") else None  # an ended run has no ETA
        lines = [
            "[b]state[/b]  $state",
            f"[b]step[/b]   {fmt(self.step)}/{fmt(self.total_steps)}",
            f"[b]epoch[/b]  {fmt(self.epoch, '.2f')}",
            f"[b]loss[/b]   {fmt(self.train_loss, '.4f')}",
            f"[b]lr[/b]     {fmt(self.lr, '.2e')}",
            f"[b]tok/s[/b]  {fmt(self.tokens_per_s, ',.0f')}",
            f"[b]ETA[/b]    {'-' if eta is None else _duration(eta)}",
            f"[b]best val[/b] {fmt(self.best_val, '.4f')}" + (
                f" acc {self.best_acc:.1%}" if self.best_acc is not None else ""),
        ]
        if self.reward_margin is not None or self.val_reward_margin is not None:
            lines.append(f"[b]reward[/b] margin {fmt(self.reward_margin, '+.3f')} acc {fmt(self.reward_acc, '.0%')}")
            lines.append(f"[b]val reward[/b] {fmt(self.val_reward_margin, '+.3f')} "
                         f"acc {fmt(self.val_reward_acc, '.0%')}")
        if self.mfu is not None:
            lines.append(f"[b]MFU[/b]    {self.mfu:.1%}")
        if self.device:
            lines.append("[b]device[/b] $device")
        if self.message:
            lines.append("[red]$message[/red]")
        return Content.from_markup("\n".join(lines), state=state or "-", device=self.device or "",
                                   message=self.message)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"
