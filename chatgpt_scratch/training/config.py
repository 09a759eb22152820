"""TrainConfig: every knob of the training loop, task-agnostic (batch size and data belong to the Task)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from chatgpt_scratch.errors import ScratchError

DTYPES = ("auto", "float32", "bfloat16")


@dataclass
class TrainConfig:
    epochs: int = 1
    max_steps: int | None = None      # optimizer steps; overrides epochs when set
    lr: float = 4e-4                  # peak learning rate (after warmup)
    warmup_steps: int = 0             # linear warmup from ~0 to lr
    min_lr: float | None = None       # cosine floor; None = lr (constant after warmup, like the book's ch05)
    weight_decay: float = 0.1         # AdamW decay on matrices only (not biases, norms, embeddings)
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float | None = 1.0     # max global grad norm; None or 0 = no clipping
    grad_accum: int = 1               # micro-batches per optimizer step
    eval_every: int = 100             # steps between evals (0 = only at the end)
    eval_batches: int | None = 20     # val batches per eval (None = all)
    sample_every: int = 0             # steps between text samples (0 = none)
    sample_prompt: str = "Every effort moves you"
    sample_tokens: int = 40
    save_every: int = 0               # steps between checkpoints (0 = only at the end and on stop)
    seed: int = 123
    device: str = "auto"
    dtype: str = "auto"               # auto: bf16 autocast on CUDA, float32 elsewhere
    compile: bool = False             # torch.compile the model for the training steps
    activation_checkpointing: bool = False  # recompute each block in backward: less memory, ~1/3 more compute
    log_every: int = 1                # steps between `step` events
    peak_tflops: float | None = None  # GPU peak for MFU; None = look it up from the CUDA device name

    def __post_init__(self) -> None:
        if self.max_steps is None and self.epochs < 1:
            raise ScratchError(f"--epochs must be at least 1, got {self.epochs}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ScratchError(f"--max-steps must be at least 1, got {self.max_steps}")
        if not self.lr > 0:
            raise ScratchError(f"--lr must be > 0, got {self.lr}")
        if self.min_lr is not None and not 0 <= self.min_lr <= self.lr:
            raise ScratchError(f"--min-lr must be between 0 and --lr ({self.lr}), got {self.min_lr}")
        if self.warmup_steps < 0:
            raise ScratchError(f"--warmup must be >= 0, got {self.warmup_steps}")
        if self.weight_decay < 0:
            raise ScratchError(f"--weight-decay must be >= 0, got {self.weight_decay}")
        if self.grad_accum < 1:
            raise ScratchError(f"--grad-accum must be at least 1, got {self.grad_accum}")
        if self.grad_clip is not None and self.grad_clip < 0:
            raise ScratchError(f"--grad-clip must be >= 0 (0 = off), got {self.grad_clip}")
        for name in ("eval_every", "sample_every", "save_every"):
            if getattr(self, name) < 0:
                raise ScratchError(f"--{name.replace('_', '-')} must be >= 0 (0 = off), got {getattr(self, name)}")
        if self.eval_batches is not None and self.eval_batches < 1:
            raise ScratchError(f"--eval-batches must be at least 1, got {self.eval_batches}")
        if self.peak_tflops is not None and not self.peak_tflops > 0:
            raise ScratchError(f"--peak-tflops must be > 0, got {self.peak_tflops}")
        if self.dtype not in DTYPES:
            raise ScratchError(f"--dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d


# What each training command changes from TrainConfig's defaults (plus its batch size, which belongs to
# the task). The CLI's flags (cli/train_common.add_trainer_args) and the TUI's New-run form read these:
# a default is written here once. The book's values: ch05 pretraining 4e-4, ch06/ch07 fine-tuning 5e-5.
COMMAND_DEFAULTS: dict[str, dict[str, Any]] = {
    "pretrain": dict(lr=4e-4, batch_size=2, epochs=1, eval_every=100, eval_batches=20),
    "finetune-spam": dict(lr=5e-5, batch_size=8, epochs=5, eval_every=50, eval_batches=None),
    "finetune-instruct": dict(lr=5e-5, batch_size=8, epochs=2, eval_every=50, eval_batches=None),
    # The book's DPO settings (bonus ch07): AdamW lr 5e-6, no weight decay, batch 8, one epoch.
    "finetune-dpo": dict(lr=5e-6, batch_size=8, epochs=1, eval_every=20, eval_batches=None, weight_decay=0.0),
}
DEFAULT_BATCH_SIZE = 8


def trainer_defaults(command: str | None = None) -> dict[str, Any]:
    """The training flags' defaults by flag name (warmup, not warmup_steps): TrainConfig's, then the command's."""
    base = {f.name: f.default for f in fields(TrainConfig)}
    base["warmup"] = base.pop("warmup_steps")
    base["batch_size"] = DEFAULT_BATCH_SIZE
    return {**base, **(COMMAND_DEFAULTS[command] if command is not None else {})}
