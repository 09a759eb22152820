"""The one training loop. A Task supplies batches, the loss and eval metrics; the Trainer does the rest.

Per optimizer step: set the scheduled lr, run `grad_accum` micro-batches (forward under autocast,
backward of loss / n_micro; DDP syncs gradients only on the last one), average the loss across
ranks, clip the global gradient norm, check loss and norm are finite, AdamW step. Then, by cadence:
a `step` event, eval (+ best checkpoint), a text sample, a periodic checkpoint + resumable state,
and a stop check (SIGINT/SIGTERM set a flag; every rank stops at the same step).

Files (see docs/events.md):
  <out>.safetensors         the model at the last save (periodic, stop, end)
  <out>.best.safetensors    the model with the best task.best_metric seen at an eval
  <run dir>/events.jsonl    everything that happened
  <run dir>/state.safetensors  resumable state: weights, AdamW moments, RNGs, data position (no pickle)
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from chatgpt_scratch.system import procinfo
from chatgpt_scratch.checkpoints import model_tensors, save_checkpoint
from chatgpt_scratch.system.device import resolve_device
from chatgpt_scratch.errors import ScratchError
from chatgpt_scratch.training import distributed, state
from chatgpt_scratch.training.config import TrainConfig
from chatgpt_scratch.training.events import EVENTS_FILE, EventLog
from chatgpt_scratch.training.mfu import flops_per_token, mfu, peak_flops
from chatgpt_scratch.training.optim import build_optimizer, lr_at
from chatgpt_scratch.training.task import Task


class TrainingDiverged(ScratchError):
    """The loss or the gradient norm became NaN or infinite."""


def checkpoint_paths(out: str | Path) -> tuple[Path, Path]:
    """`checkpoints/NAME` (with or without .safetensors) -> (NAME.safetensors, NAME.best.safetensors)."""
    out = Path(out)
    stem = out.name.removesuffix(".safetensors")
    return out.with_name(stem + ".safetensors"), out.with_name(stem + ".best.safetensors")


@dataclass
class RunResult:
    status: str                      # "done" or "stopped"
    step: int
    tokens_seen: int
    checkpoint: Path | None
    best_checkpoint: Path | None
    metrics: dict[str, float] = field(default_factory=dict)   # the last eval
    train_losses: list[float] = field(default_factory=list)   # per optimizer step, this process's run only


class Trainer:
    """Trainer(task, model, cfg, run_dir, out=...).run() -> RunResult.

    out: checkpoint path stem (default `<run_dir>/model`). metadata: provenance merged into every
    checkpoint header (parent, train args, ...). resume=True continues from `<run_dir>/state.safetensors`.
    events: an EventLog (default: one writing `<run_dir>/events.jsonl`; on ranks other than 0 nothing is written).
    """

    def __init__(self, task: Task, model: torch.nn.Module, cfg: TrainConfig, run_dir: str | Path,
                 out: str | Path | None = None, events: EventLog | None = None,
                 metadata: dict[str, Any] | None = None, resume: bool = False):
        self.task, self.cfg, self.run_dir = task, cfg, Path(run_dir)
        self.dist = distributed.current()
        device = resolve_device(cfg.device)
        if device.type == "cuda" and self.dist.enabled:
            device = torch.device("cuda", self.dist.local_rank)
        self.device = device
        if device.type == "cuda":  # float32 matmuls outside autocast (--dtype float32, the loss) on tensor cores
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        self.model = model.to(device)
        if hasattr(self.model, "activation_checkpointing"):
            self.model.activation_checkpointing = cfg.activation_checkpointing
        self.checkpoint_path, self.best_path = checkpoint_paths(out if out is not None else self.run_dir / "model")
        self.metadata = dict(metadata or {})
        self.resume = resume
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.events = events if events is not None else EventLog(self.run_dir / EVENTS_FILE)
        else:
            self.events = EventLog(None)
        self.amp_dtype = self._amp_dtype()
        self.optimizer = build_optimizer(self.model, cfg.lr, cfg.weight_decay, cfg.betas)
        self.trainable = [p for g in self.optimizer.param_groups for p in g["params"]]

        self.micro_per_epoch = task.num_train_batches(self.dist.world_size)
        if self.micro_per_epoch < 1:
            raise ScratchError("the training data is too small for one batch; add data or lower --batch-size "
                               "(or --context)")
        self.steps_per_epoch = math.ceil(self.micro_per_epoch / cfg.grad_accum)
        self.total_steps = cfg.max_steps if cfg.max_steps is not None else cfg.epochs * self.steps_per_epoch

        # Progress: everything resume needs besides tensors.
        self.step = 0               # optimizer steps done
        self.epoch = 0              # current epoch (0-based)
        self.batch_in_epoch = 0     # micro-batches of this epoch already consumed
        self.tokens_seen = 0        # over all ranks
        self.best_value: float | None = None
        self.last_metrics: dict[str, float] = {}
        self.elapsed_before = 0.0   # wall time of earlier segments of a resumed run
        self._stop_requested = False
        self._stop_reason = ""
        self._save_failure: ScratchError | None = None  # a best-model save that failed (reported by _save)
        self._flops_per_token, self._peak = self._mfu_terms()

    # --- public -----------------------------------------------------------------------------------

    def request_stop(self, reason: str = "signal") -> None:
        """Ask the loop to save and stop after the current step (safe to call from a signal handler)."""
        self._stop_requested = True
        self._stop_reason = reason

    def run(self) -> RunResult:
        torch.manual_seed(self.cfg.seed + self.dist.rank)  # dropout; each rank its own stream
        resumed_from = self._load_state() if self.resume else None
        train_model = self._wrap_model()
        self.events.emit("start", task=self.task.name, run_dir=str(self.run_dir), total_steps=self.total_steps,
                         steps_per_epoch=self.steps_per_epoch, step=self.step, resumed_from_step=resumed_from,
                         device=str(self.device), world_size=self.dist.world_size,
                         amp_dtype=str(self.amp_dtype).removeprefix("torch.") if self.amp_dtype else "float32",
                         params=sum(p.numel() for p in self.trainable), config=self.cfg.to_dict(),
                         checkpoint=str(self.checkpoint_path),
                         **procinfo.own_identity())  # pid + start time + argv: how the TUI knows it
        self._t0 = time.perf_counter()
        losses: list[float] = []
        window_tokens, window_time = 0, 0.0
        self.model.train()
        evaluated_at = saved_at = -1
        while self.step < self.total_steps:
            batches = iter(self.task.train_batches(self.epoch, self.dist.rank, self.dist.world_size))
            if self.batch_in_epoch:  # resume mid-epoch: the order is fixed by (seed, epoch), skip what was done
                next(islice(batches, self.batch_in_epoch - 1, None), None)
            while self.step < self.total_steps:
                micro = list(islice(batches, self.cfg.grad_accum))
                if not micro:
                    break
                t = time.perf_counter()
                loss, grad_norm, lr, tokens, stop = self._train_step(train_model, micro)
                window_time += time.perf_counter() - t
                window_tokens += tokens
                self.batch_in_epoch += len(micro)
                self.step += 1
                self.tokens_seen += tokens
                losses.append(loss)
                if stop:
                    self._stop_requested = True
                if self.step % self.cfg.log_every == 0 or self.step == self.total_steps:
                    tokens_per_s = window_tokens / max(window_time, 1e-9)
                    extra = {}
                    if self._peak is not None:
                        extra["mfu"] = round(mfu(self._flops_per_token, tokens_per_s, self._peak), 4)
                    step_metrics = getattr(self.task, "step_metrics", None)  # e.g. DPO's reward margin
                    if step_metrics is not None:
                        extra |= step_metrics()
                    self.events.emit("step", step=self.step, epoch=round(self._epoch_float(), 4),
                                     tokens_seen=self.tokens_seen, train_loss=loss, lr=lr, grad_norm=grad_norm,
                                     tokens_per_s=round(tokens_per_s, 1), elapsed_s=round(self._elapsed(), 2),
                                     **extra)
                    window_tokens, window_time = 0, 0.0
                if self.cfg.eval_every and self.step % self.cfg.eval_every == 0:
                    self._evaluate()
                    evaluated_at = self.step
                if self.cfg.sample_every and self.step % self.cfg.sample_every == 0:
                    self._sample()
                if self._stop_requested:
                    self._save("stopped")
                    self.events.emit("stopped", step=self.step, tokens_seen=self.tokens_seen,
                                     elapsed_s=round(self._elapsed(), 2), reason=self._stop_reason or "signal",
                                     checkpoint=str(self.checkpoint_path), run_dir=str(self.run_dir))
                    return self._result("stopped", losses)
                if self.cfg.save_every and self.step % self.cfg.save_every == 0 and self.step < self.total_steps:
                    self._save("periodic")
                    saved_at = self.step
            else:
                break
            self.epoch += 1
            self.batch_in_epoch = 0
        if evaluated_at != self.step:
            self._evaluate()
        if saved_at != self.step or not self.checkpoint_path.exists():
            self._save("final")
        self.events.emit("done", step=self.step, tokens_seen=self.tokens_seen, elapsed_s=round(self._elapsed(), 2),
                         checkpoint=str(self.checkpoint_path),
                         best_checkpoint=str(self.best_path) if self.best_path.exists() else None,
                         **self.last_metrics)
        return self._result("done", losses)

    # --- one step ---------------------------------------------------------------------------------

    def _train_step(self, train_model: torch.nn.Module, micro: list) -> tuple[float, float, float, int, bool]:
        lr = lr_at(self.step, self.total_steps, self.cfg.lr, self.cfg.warmup_steps, self.cfg.min_lr)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss_sum = torch.zeros((), device=self.device)
        tokens = 0
        for i, batch in enumerate(micro):
            batch = tuple(t.to(self.device, non_blocking=True) if torch.is_tensor(t) else t for t in batch)
            last = i == len(micro) - 1
            # DDP: all-reduce gradients only once, on the last micro-batch of the step.
            sync = self._ddp.no_sync() if (self._ddp is not None and not last) else nullcontext()
            with sync:
                with self._autocast():
                    loss = self.task.loss(train_model, batch)
                (loss / len(micro)).backward()
            loss_sum += loss.detach().float()
            tokens += self.task.tokens_in(batch)
        mean_loss = loss_sum / len(micro)
        # One small all-reduce per step: the mean loss over ranks, and whether any rank wants to stop.
        stats = torch.stack([mean_loss, torch.tensor(float(self._stop_requested), device=self.device)])
        if self.dist.enabled:
            dist.all_reduce(stats)
            stats[0] /= self.dist.world_size
        loss_value, stop = stats[0].item(), bool(stats[1].item() > 0)
        max_norm = self.cfg.grad_clip if self.cfg.grad_clip else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.trainable, max_norm))
        if not (math.isfinite(loss_value) and math.isfinite(grad_norm)):
            self._diverged(loss_value, grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss_value, grad_norm, lr, tokens * self.dist.world_size, stop

    def _diverged(self, loss: float, grad_norm: float) -> None:
        what = f"loss is {loss}" if not math.isfinite(loss) else f"gradient norm is {grad_norm}"
        kept = (f"the last good checkpoint {self.checkpoint_path} is kept" if self.checkpoint_path.exists()
                else "no checkpoint had been saved yet")
        message = (f"training diverged at step {self.step + 1}: {what}; {kept}. "
                   "Lower --lr, add --warmup, or keep --grad-clip on")
        self.events.emit("error", step=self.step + 1, message=message, loss=loss, grad_norm=grad_norm)
        raise TrainingDiverged(message)

    # --- eval, samples, saving ----------------------------------------------------------------------

    def _evaluate(self) -> None:
        if not self.dist.is_main:
            return
        self.model.eval()
        with torch.no_grad(), self._autocast():
            metrics = dict(self.task.evaluate(self.model, self.cfg.eval_batches))
        self.model.train()
        # Perplexity means something for next-token tasks only, not for a classifier's loss.
        # A perplexity only where val_loss is a per-token LM loss (not a classifier's, not DPO's).
        if "val_loss" in metrics and "val_ppl" not in metrics and getattr(self.task, "loss_is_lm", True) \
                and self.task.checkpoint_kind != "classifier":
            metrics["val_ppl"] = math.exp(min(metrics["val_loss"], 700.0))
        metrics = {k: float(v) for k, v in metrics.items()}
        self.last_metrics = metrics
        self.events.emit("eval", step=self.step, epoch=round(self._epoch_float(), 4), tokens_seen=self.tokens_seen,
                         elapsed_s=round(self._elapsed(), 2), **metrics)
        value = metrics.get(self.task.best_metric)
        if value is not None and math.isfinite(value) and self._is_better(value):
            self.best_value = value
            try:
                self._save_model(self.best_path, "best")
            except ScratchError as e:  # e.g. a full disk: keep training; the next _save reports it, after saving what it can
                self._save_failure = self._save_failure or e

    def _is_better(self, value: float) -> bool:
        if self.best_value is None:
            return True
        return value < self.best_value if self.task.best_mode == "min" else value > self.best_value

    def _sample(self) -> None:
        if not self.dist.is_main:
            return
        custom = getattr(self.task, "sample", None)
        if custom is None and getattr(self.model.cfg, "n_classes", None) is not None:
            return  # a classifier cannot write text
        from chatgpt_scratch.generation import SamplingConfig, generate_text

        # Greedy (as the book's generate_and_print_sample): deterministic and touches no RNG, so resume stays exact.
        sampling = SamplingConfig(temperature=0.0, max_new_tokens=self.cfg.sample_tokens)
        with self._autocast():
            if custom is not None:
                text = custom(self.model, self.cfg.sample_prompt, sampling)
            else:
                text = generate_text(self.model, self.cfg.sample_prompt, sampling)
        self.model.train()
        if text is not None:
            self.events.emit("sample", step=self.step, prompt=self.cfg.sample_prompt, text=text)

    def _checkpoint_metadata(self, reason: str) -> dict[str, Any]:
        meta = {**self.metadata, **self.task.metadata(), "task": self.task.name, "steps": self.step,
                "epoch": round(self._epoch_float(), 4), "tokens_seen": self.tokens_seen,
                "run_dir": str(self.run_dir), "saved_because": reason}
        for key in ("val_loss", "val_ppl", "val_acc"):
            if key in self.last_metrics:
                meta[key] = self.last_metrics[key]
        if self.last_metrics:
            meta["metrics"] = self.last_metrics
        return meta

    def _save_model(self, path: Path, reason: str) -> None:
        meta = self._checkpoint_metadata(reason)
        custom = getattr(self.task, "save_model", None)
        if custom is not None:
            custom(path, self.model, meta)
        else:
            save_checkpoint(path, self.model, self.task.checkpoint_kind, **meta)
        self.events.emit("checkpoint", step=self.step, path=str(path), reason=reason)

    def _save(self, reason: str) -> None:
        """The model checkpoint and the resumable state (all ranks join: RNG states are gathered)."""
        self._rng_to_save = self._gathered_rng()
        if not self.dist.is_main:
            return
        # The model and the resumable state usually live in different folders (checkpoints/, runs/):
        # a full or read-only one must not cost the other its save. The first failure is raised after both.
        failure: ScratchError | None = None  # the first failure; a failed best-model save is reported here too
        saved = []
        for path, save in ((self.checkpoint_path, lambda: self._save_model(self.checkpoint_path, reason)),
                           (self.run_dir / state.STATE_FILE, self._save_state)):
            try:
                save()
                saved.append(str(path))
            except ScratchError as e:
                failure = failure or e
        failure = self._save_failure or failure
        if failure is not None:
            message = f"{failure}; " + (f"saved {', '.join(saved)}" if saved else "nothing could be saved")
            self.events.emit("error", step=self.step, message=message)
            raise ScratchError(message) from None

    def _save_state(self) -> None:
        rng = self._rng_to_save
        tensors = {f"model.{k}": v for k, v in model_tensors(self.model).items()}
        opt_tensors, opt_info = state.optimizer_tensors(self.optimizer)
        tensors |= {f"optim.{k}": v for k, v in opt_tensors.items()} | rng
        host_tensors, host_info = state.host_rng_state()
        tensors |= host_tensors
        progress = {"step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                    "tokens_seen": self.tokens_seen, "best_value": self.best_value,
                    "last_metrics": self.last_metrics, "elapsed_s": self._elapsed(),
                    "world_size": self.dist.world_size, "checkpoint": str(self.checkpoint_path)}
        state.save_state(self.run_dir, tensors, {"progress": progress, "optimizer": opt_info, "rng": host_info})

    def _gathered_rng(self) -> dict[str, torch.Tensor]:
        """Every rank's torch generator states as `rng.rank{R}.{torch,cuda}` (collective under DDP)."""
        mine = state.torch_rng_tensors(self.device)
        if not self.dist.enabled:
            return {f"rng.rank0.{k}": v for k, v in mine.items()}
        out = {}
        for key, value in mine.items():
            local = value.to(self.device)
            parts = [torch.empty_like(local) for _ in range(self.dist.world_size)]
            dist.all_gather(parts, local)
            out |= {f"rng.rank{r}.{key}": p.cpu() for r, p in enumerate(parts)}
        return out

    def _load_state(self) -> int:
        tensors, doc = state.load_state(self.run_dir)
        progress = doc["progress"]
        if progress.get("world_size", 1) != self.dist.world_size:
            raise ScratchError(f"this run was saved with {progress.get('world_size', 1)} processes; "
                               f"resume it with the same number (now {self.dist.world_size})")
        weights = state.subset(tensors, "model.")
        missing, unexpected = self.model.load_state_dict(weights, strict=False)
        tied = {"out_head.weight"} if getattr(self.model.cfg, "tie_embeddings", False) else set()
        if set(missing) - tied or unexpected:
            raise ScratchError(f"{self.run_dir}: the saved weights do not fit this model "
                               f"(missing {sorted(set(missing) - tied)[:3]}, unexpected {unexpected[:3]}); "
                               "resume with the same model options")
        state.load_optimizer_tensors(self.optimizer, state.subset(tensors, "optim."))
        state.restore_torch_rng(state.subset(tensors, f"rng.rank{self.dist.rank}."), self.device)
        state.restore_host_rng(tensors, doc["rng"])
        self.step = progress["step"]
        self.epoch = progress["epoch"]
        self.batch_in_epoch = progress["batch_in_epoch"]
        self.tokens_seen = progress["tokens_seen"]
        self.best_value = progress["best_value"]
        self.last_metrics = progress.get("last_metrics") or {}
        self.elapsed_before = progress.get("elapsed_s", 0.0)
        return self.step

    # --- helpers ----------------------------------------------------------------------------------

    def _wrap_model(self) -> torch.nn.Module:
        model: torch.nn.Module = self.model
        self._ddp = None
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            model = self._ddp = DDP(model, device_ids=ids)
        if self.cfg.compile:
            model = torch.compile(model)
        return model

    def _mfu_terms(self) -> tuple[float, float | None]:
        """(model FLOPs per token, peak FLOP/s of all ranks together), the peak None off CUDA or on an
        unknown GPU without --peak-tflops (then step events carry no `mfu`)."""
        mcfg = getattr(self.model, "cfg", None)
        if self.device.type != "cuda" or mcfg is None:
            return 0.0, None
        peak = self.cfg.peak_tflops * 1e12 if self.cfg.peak_tflops else peak_flops(
            torch.cuda.get_device_name(self.device))
        if peak is None:
            return 0.0, None
        n = self.model.num_flop_parameters()
        # tokens_per_s counts every rank's tokens, so the peak is every rank's too.
        # Attention's 12·L·d·T counts the sequences trained on, which may be shorter than the model's context.
        seq_len = getattr(self.task, "context", None) or mcfg.context_length
        return flops_per_token(n, mcfg.n_layers, mcfg.emb_dim, seq_len), peak * self.dist.world_size

    def _amp_dtype(self) -> torch.dtype | None:
        """bf16 autocast when asked for, or by default on a CUDA GPU that has bf16; else None (float32)."""
        if self.cfg.dtype == "bfloat16":
            return torch.bfloat16
        if self.cfg.dtype == "auto" and self.device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return None

    def _autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _epoch_float(self) -> float:
        return self.epoch + self.batch_in_epoch / self.micro_per_epoch

    def _elapsed(self) -> float:
        return self.elapsed_before + (time.perf_counter() - self._t0)

    def _result(self, status: str, losses: list[float]) -> RunResult:
        return RunResult(status=status, step=self.step, tokens_seen=self.tokens_seen,
                         checkpoint=self.checkpoint_path if self.dist.is_main else None,
                         best_checkpoint=self.best_path if self.best_path.exists() else None,
                         metrics=self.last_metrics, train_losses=losses)
