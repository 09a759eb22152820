"""The Train screen's New-run form as plain data: the tasks, the fields and their starting values, and
TrainForm, which validates what was typed and builds the CLI command a job runs. No widgets here
(tests drive it directly); the widget is tui/widgets/train_form.py."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TASKS = [("Pretrain (next-token)", "pretrain"), ("Spam fine-tune (classifier)", "finetune-spam"),
         ("Instruction fine-tune", "finetune-instruct"), ("Preference tune (DPO)", "finetune-dpo")]
# What each task may start from: pretraining continues a base model (or makes a new one from a preset),
# fine-tuning starts from a base or instruct model, preference tuning from an instruct model only.
START_KINDS = {"pretrain": ("base",), "finetune-spam": ("base", "instruct"),
               "finetune-instruct": ("base", "instruct"), "finetune-dpo": ("instruct",)}
NEEDS_CHECKPOINT = {"finetune-dpo"}  # no preset: the frozen reference is the --init model itself
PRESETS = ["cpu-mini", "cpu-small", "test-tiny", "gpt2-small"]  # the ones worth training from scratch here
DEVICES = ["auto", "cpu", "cuda", "mps"]



def _flag_text(value: Any) -> str:
    """A default as the form shows it: 4e-4 (as typed on a command line), 8, or blank for None."""
    if value is None:
        return ""
    if isinstance(value, float) and 0 < abs(value) < 1e-3:
        mantissa, exponent = f"{value:e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _form_defaults(command: str, data: str, **watching: str) -> dict[str, str]:
    """The form's starting values: the command's own defaults (training/config.COMMAND_DEFAULTS, shared with
    the CLI), then `watching`: what the form changes for a run one watches live (more epochs of a small
    corpus, evals and samples often enough to see the curve move)."""
    from chatgpt_scratch.training.config import trainer_defaults

    d = trainer_defaults(command)
    values = {name: _flag_text(d[name]) for name in ("epochs", "max_steps", "batch_size", "lr", "eval_every",
                                                     "sample_every")}
    return {"data": data, "context": "", "lora_rank": "0", "extra": "", **values, **watching}


DEFAULTS: dict[str, dict[str, str]] = {
    "pretrain": _form_defaults("pretrain", "the-verdict", epochs="10", eval_every="5", sample_every="20"),
    "finetune-spam": _form_defaults("finetune-spam", "sms-spam"),
    "finetune-instruct": _form_defaults("finetune-instruct", "instruction-data", sample_every="50"),
    "finetune-dpo": _form_defaults("finetune-dpo", "instruction-preference", sample_every="50"),
}
FIELDS = [  # (name, label, kind) kind: int | int? | int0 | float | name | flags
    ("epochs", "epochs", "int"),
    ("context", "context", "int?"),
    ("max_steps", "max steps", "int?"),
    ("batch_size", "batch size", "int"),
    ("lr", "learning rate", "float"),
    ("eval_every", "eval every", "int0"),
    ("sample_every", "sample every", "int0"),
    ("lora_rank", "LoRA rank", "int0"),
    ("out", "output name", "name"),
    ("extra", "more flags", "flags"),  # any other CLI flags, checked by the CLI's own parser
]


@dataclass
class TrainForm:
    """The form's values as text, and what they become on the command line."""

    task: str = "pretrain"
    start: str = "preset:cpu-mini"  # "preset:NAME" or "checkpoint:PATH"
    data: str = "the-verdict"  # a registry name or a path
    device: str = "auto"
    values: dict[str, str] = field(default_factory=dict)

    def validate(self) -> dict[str, str]:
        """Per-field error messages; empty when the form is good."""
        errors: dict[str, str] = {}
        for name, _, kind in FIELDS:
            text = self.values.get(name, "").strip()
            if kind == "int?" and not text:
                continue
            if kind == "name":
                if text and ("/" in text or text.startswith(".") or " " in text):
                    errors[name] = "a plain name: no '/', spaces or leading dot"
                continue
            if kind == "flags":
                try:
                    shlex.split(text)
                except ValueError as e:
                    errors[name] = str(e)
                continue
            try:
                number = float(text) if kind == "float" else int(text)
            except ValueError:
                errors[name] = "a number" if kind == "float" else "a whole number"
                continue
            if kind in ("int", "int?", "float") and number <= 0:
                errors[name] = "must be > 0"
            elif kind == "int0" and number < 0:
                errors[name] = "must be >= 0 (0 = off)"
        if name_errors := self._start_error():
            errors["start"] = name_errors
        if not self.data.strip():
            errors["data"] = "pick a dataset or give a path"
        elif ("/" in self.data or self.data.startswith(".")) and not Path(self.data).expanduser().exists():
            errors["data"] = f"no such file: {self.data}"
        if (self.task == "pretrain" and "lora_rank" not in errors
                and self.values.get("lora_rank", "0").strip() not in ("", "0")):
            errors["lora_rank"] = "LoRA is for fine-tuning; use 0 to pretrain"
        if not errors and self.values.get("extra", "").strip():
            from chatgpt_scratch.cli import argument_error

            if problem := argument_error(self.args("check", Path("checkpoints"))):
                errors["extra"] = problem
        return errors

    def _start_error(self) -> str | None:
        kind, _, value = self.start.partition(":")
        if kind == "checkpoint" and not Path(value).is_file():
            return f"checkpoint not found: {value}"
        if kind not in ("preset", "checkpoint"):
            if self.task in NEEDS_CHECKPOINT:
                return "no instruct checkpoint yet: make one with Instruction fine-tune first"
            return "pick a preset or a checkpoint"
        if kind == "preset" and self.task in NEEDS_CHECKPOINT:
            return "preference tuning starts from an instruct checkpoint"
        return None

    default_name: str = ""

    def new_default_name(self) -> None:
        """TASK-N, the first N no checkpoint or job has: the CLI adds the date to the run folder
        (runs/TASK-N-YYYYmmdd-HHMMSS), so the name itself carries none."""
        n = 1
        while name_taken(f"{self.task}-{n}"):
            n += 1
        self.default_name = f"{self.task}-{n}"

    def run_name(self) -> str:
        out = self.values.get("out", "").strip().removesuffix(".safetensors")
        if out:
            return out
        if self.default_name.rpartition("-")[0] != self.task:  # none yet, or made for another task
            self.new_default_name()
        return self.default_name

    def args(self, name: str, checkpoints: Path, model_context: int | None = None) -> list[str]:
        """The CLI arguments (after `chatgpt-scratch`); the checkpoint is written to CHECKPOINTS/NAME.safetensors."""
        v = {k: s.strip() for k, s in self.values.items()}
        kind, _, start = self.start.partition(":")
        args = [self.task]
        args += ["--preset", start] if kind == "preset" else ["--init", start]
        args += ["--data", self.data.strip()]
        if v.get("max_steps"):
            args += ["--max-steps", v["max_steps"]]
        else:
            args += ["--epochs", v["epochs"]]
        context = v.get("context") or (str(min(256, model_context)) if model_context else "")
        if context:
            args += ["--context" if self.task == "pretrain" else "--max-length", context]
        args += ["--batch-size", v["batch_size"], "--lr", v["lr"], "--eval-every", v["eval_every"]]
        if self.task != "finetune-spam" and v.get("sample_every", "0") != "0":
            args += ["--sample-every", v["sample_every"]]
        if self.task != "pretrain" and v.get("lora_rank", "0") not in ("", "0"):
            args += ["--lora-rank", v["lora_rank"]]
        args += ["--device", self.device, "--out", str(checkpoints / f"{name}.safetensors")]
        return args + shlex.split(v.get("extra", ""))  # last: they override the fields above


def name_taken(name: str) -> bool:
    """A run name is taken when a checkpoint or a job started from the app has it."""
    from chatgpt_scratch.storage.paths import checkpoints_dir, runs_dir
    from tui import jobs

    return (checkpoints_dir() / f"{name}.safetensors").exists() or (jobs.jobs_dir(runs_dir()) / f"{name}.json").exists()
