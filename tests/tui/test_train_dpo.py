"""Train screen, preference tuning (issue 15): the DPO task starts from the best instruct model, and a bad
preference file is named by the CLI's own check, shown as for the other tasks (notification + panel)."""

from __future__ import annotations

import json

from textual.widgets import Input, Select

from tests.tui.conftest import FIXED_CREATED, wait_until
from tui.app import ScratchApp


def _instruct(folder, name: str, val_loss: float):
    import torch

    from chatgpt_scratch.checkpoints import save_checkpoint
    from chatgpt_scratch.config import PRESETS
    from chatgpt_scratch.model import GPTModel

    torch.manual_seed(2)
    return save_checkpoint(folder / f"{name}.safetensors", GPTModel(PRESETS["test-tiny"]), kind="instruct",
                           template="alpaca", created=FIXED_CREATED, val_loss=val_loss)


async def test_dpo_task_starts_from_the_best_instruct_model_and_shows_the_clis_data_error(
        tiny_base, checkpoints_folder, tmp_path):
    _instruct(checkpoints_folder, "a-instruct", val_loss=2.5)
    best = _instruct(checkpoints_folder, "b-instruct", val_loss=1.5)  # not first by name: picked for its loss
    bad = tmp_path / "pairs.json"
    entries = [{"instruction": f"Say {i}.", "input": "", "chosen": f"{i}.", "rejected": "No."} for i in range(20)]
    del entries[6]["rejected"]
    bad.write_text(json.dumps(entries))

    app = ScratchApp(start="train", detect_device=False)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        screen.query_one("#train-tabs").active = "train-form-pane"
        screen.query_one("#f-task", Select).value = "finetune-dpo"
        await wait_until(pilot, lambda: screen.form.start.startswith("checkpoint:"), what="the start choices")
        start = screen.query_one("#f-start", Select)
        offered = [value for _, value in start._options if isinstance(value, str)]
        picked = screen.form.start
        data_default = screen.query_one("#f-data-known", Select).value
        for name, value in [("max_steps", "2"), ("batch_size", "2"), ("out", "dpo-bad")]:
            screen.query_one(f"#f-{name}", Input).value = value
        screen.query_one("#f-data", Input).value = str(bad)
        await pilot.pause(0.1)
        command = str(screen.query_one("#train-command").render())
        await pilot.press("f6")
        await wait_until(pilot, lambda: any("dpo-bad failed" in n.message for n in app._notifications),
                         timeout=120, what="the failure notification")
        failure = next(n.message for n in app._notifications if "dpo-bad failed" in n.message)
        await wait_until(pilot, lambda: "missing key" in str(screen.query_one("#train-metrics").render()),
                         timeout=30, what="the error in the side panel")

    assert offered == [f"checkpoint:{checkpoints_folder / 'a-instruct.safetensors'}", f"checkpoint:{best}"]
    assert picked == f"checkpoint:{best}" and data_default == "instruction-preference"
    assert command.startswith(f"chatgpt-scratch finetune-dpo --init {best} --data {bad}")
    assert f"{bad}: entry 6: missing key 'rejected'" in failure, failure  # the bad entry is named
