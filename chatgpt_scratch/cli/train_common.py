"""What every training command shares: the trainer flags, and `run_training` that drives a Task.

A training subcommand (pretrain, finetune-spam, finetune-instruct) does three things:

    def register(subparsers):
        p = subparsers.add_parser("my-train", help=...)
        ...task flags (--data, --init, ...)...
        add_trainer_args(p, "my-train")   # defaults: training/config.COMMAND_DEFAULTS
        p.set_defaults(func=_run)

    def _run(args):
        args = prepare_resume(args)          # --resume RUN: reload that run's flags
        seed_everything(args.seed)           # before building the model: same init on every rank
        task, model = ...build from args...
        run_training(task, model, args, metadata={"parent": args.init})
        return 0

run_training makes the run folder (runs/NAME-TIMESTAMP, or the --resume one), writes run.json
(the flags, for --resume), wires the events (events.jsonl, `--events -` to stdout, the progress bar
on stderr), turns SIGINT/SIGTERM into "save, write `stopped`, exit 0", joins torchrun's process
group, and draws the loss plot (NAME.loss.png beside the checkpoint) when the run ends.
No torch import at module level: `--help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from chatgpt_scratch.errors import ScratchError
from chatgpt_scratch.training.events import EVENTS_FILE, RUN_FILE, TERMINAL_EVENTS

if TYPE_CHECKING:
    from chatgpt_scratch.training.trainer import RunResult, Trainer

# Flags that may change when resuming without breaking exactness of what was already done.
RESUMABLE_OVERRIDES = ("epochs", "max_steps", "eval_every", "eval_batches", "sample_every", "sample_prompt",
                       "save_every", "events", "device", "peak_tflops")
def add_trainer_args(parser: argparse.ArgumentParser, command: str | None = None, **defaults: Any) -> None:
    """Add the shared training flags with the defaults of `command` (training/config.COMMAND_DEFAULTS, the
    one place they are written); keyword arguments change them further (out=..., a test's lr=...)."""
    from chatgpt_scratch.training.config import DTYPES, trainer_defaults

    d = trainer_defaults(command)
    unknown = set(defaults) - set(d) - {"out"}
    if unknown:
        raise ValueError(f"no trainer flag for {sorted(unknown)}")
    d.update(defaults)
    g = parser.add_argument_group("training")
    length = g.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, default=d["epochs"], help="passes over the training data (default: %(default)s)")
    length.add_argument("--max-steps", type=int, default=d["max_steps"], metavar="N",
                        help="stop after N optimizer steps instead of counting epochs")
    g.add_argument("--batch-size", type=int, default=d["batch_size"], metavar="N",
                   help="examples per micro-batch, per process (default: %(default)s)")
    g.add_argument("--grad-accum", type=int, default=d["grad_accum"], metavar="N",
                   help="micro-batches per optimizer step: effective batch = batch-size x N x processes (default: %(default)s)")
    g.add_argument("--lr", type=float, default=d["lr"], help="peak learning rate (default: %(default)s)")
    g.add_argument("--warmup", type=int, default=d["warmup"], metavar="STEPS",
                   help="linear warmup steps (default: %(default)s)")
    g.add_argument("--min-lr", type=float, default=d["min_lr"], metavar="LR",
                   help="cosine-decay the lr to this floor by the last step (default: no decay, constant lr)")
    g.add_argument("--weight-decay", type=float, default=d["weight_decay"],
                   help="AdamW weight decay on weight matrices; never on biases, norms, embeddings (default: %(default)s)")
    g.add_argument("--grad-clip", type=float, default=d["grad_clip"], metavar="NORM",
                   help="clip the global gradient norm (0 = off; default: %(default)s)")
    g.add_argument("--eval-every", type=int, default=d["eval_every"], metavar="STEPS",
                   help="evaluate every N steps (0 = only at the end; default: %(default)s)")
    g.add_argument("--eval-batches", type=int, default=d["eval_batches"], metavar="N",
                   help="validation batches per eval (default: "
                   + ("all" if d["eval_batches"] is None else "%(default)s") + ")")
    g.add_argument("--sample-every", type=int, default=d["sample_every"], metavar="STEPS",
                   help="generate a text sample every N steps (0 = never; default: %(default)s)")
    g.add_argument("--sample-prompt", default=d["sample_prompt"], metavar="TEXT",
                   help="prompt for the samples (default: %(default)r)")
    g.add_argument("--save-every", type=int, default=d["save_every"], metavar="STEPS",
                   help="checkpoint + resumable state every N steps (0 = only at the end and on stop; default: %(default)s)")
    g.add_argument("--seed", type=int, default=d["seed"], help="seed for init, data order and dropout (default: %(default)s)")
    g.add_argument("--device", default=d["device"], metavar="{auto,cpu,cuda,mps}",
                   help="where to train: auto picks cuda, then mps, then cpu (default: auto)")
    g.add_argument("--dtype", default=d["dtype"], choices=DTYPES,
                   help="auto: bf16 autocast on CUDA, float32 elsewhere; bfloat16: bf16 autocast on any device "
                   "(on a CPU with AVX512-BF16 or AMX about 1.4x faster); weights and optimizer stay float32 "
                   "(default: auto)")
    g.add_argument("--compile", action="store_true", help="torch.compile the model (faster on GPUs after a warm-up)")
    g.add_argument("--activation-checkpointing", action="store_true",
                   help="keep only each transformer block's input during the forward pass and recompute the block "
                   "in backward: far less activation memory (bigger models or batches fit) for about a third more "
                   "compute; same results")
    g.add_argument("--peak-tflops", type=float, default=None, metavar="TFLOPS",
                   help="GPU peak (dense bf16 TFLOP/s) for the MFU in step events "
                        "(default: looked up for H100/H200/A100; other GPUs get no MFU)")
    g.add_argument("--events", metavar="-", choices=("-",),
                   help="'-' also streams the JSON events to stdout (they always go to RUN/events.jsonl)")
    g.add_argument("--resume", metavar="RUN_DIR",
                   help="continue the run saved in RUN_DIR exactly where it stopped (its flags are reused)")
    g.add_argument("--out", default=defaults.get("out"), metavar="PATH",
                   help="checkpoint to write (PATH.safetensors; the best one is PATH.best.safetensors)")
    parser.set_defaults(_trainer_defaults={a.dest: a.default for a in parser._actions if a.dest != "help"})


def train_config(args: argparse.Namespace):
    from chatgpt_scratch.training.config import TrainConfig

    return TrainConfig(
        epochs=args.epochs, max_steps=args.max_steps, lr=args.lr, warmup_steps=args.warmup, min_lr=args.min_lr,
        weight_decay=args.weight_decay, grad_clip=args.grad_clip or None, grad_accum=args.grad_accum,
        eval_every=args.eval_every, eval_batches=args.eval_batches, sample_every=args.sample_every,
        sample_prompt=args.sample_prompt, save_every=args.save_every, seed=args.seed, device=args.device,
        dtype=args.dtype, compile=args.compile, peak_tflops=getattr(args, "peak_tflops", None),
        activation_checkpointing=getattr(args, "activation_checkpointing", False),
    )


def _explicit(args: argparse.Namespace) -> dict[str, Any]:
    defaults = getattr(args, "_trainer_defaults", {})
    return {k: v for k, v in vars(args).items() if k in defaults and v != defaults[k]}


def args_to_json(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in vars(args).items() if not k.startswith("_") and k != "func" and _jsonable(v)}


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
        return True
    except TypeError:
        return False


# The longest checkpoint stem: NAME.best.safetensors, its temp file `.NAME.best.safetensors.XXXXXXXX.tmp`,
# NAME.loss.png and the run folder NAME-YYYYmmdd-HHMMSS-N must all fit in a 255-byte file name.
MAX_OUT_NAME = 200


def check_out_name(out: str) -> None:
    """A usable checkpoint name, or a ScratchError that says why, before any work is done."""
    path = Path(out)
    stem = path.name.removesuffix(".safetensors")
    if "\0" in out:
        raise ScratchError("--out must not contain a NUL character")
    if len(stem.encode("utf-8")) > MAX_OUT_NAME:
        raise ScratchError(f"--out name is {len(stem.encode('utf-8'))} bytes long; use at most {MAX_OUT_NAME} "
                           "(the checkpoint, its temp file and the run folder must fit the file-name limit)")
    try:
        is_dir = path.is_dir()
    except OSError:
        is_dir = False
    if out.endswith(("/", "\\")) or stem in ("", ".", "..") or is_dir:
        raise ScratchError(f"--out {out}: give a checkpoint name, not a folder (e.g. --out {Path(out) / 'model'})")


def check_out(args: argparse.Namespace) -> None:
    """--out is checked before any data is read or model built: a usable name, and a built-in model is
    never overwritten."""
    if getattr(args, "out", None) and not getattr(args, "resume", None):
        check_out_name(args.out)
        default_out(args, "")


def prepare_resume(args: argparse.Namespace) -> argparse.Namespace:
    """With --resume RUN: the flags saved in RUN/run.json, except the few that may safely change."""
    check_out(args)
    if not getattr(args, "resume", None):
        return args
    run_dir = Path(args.resume)
    run_file = run_dir / RUN_FILE
    if not run_file.is_file():
        raise ScratchError(f"--resume {run_dir}: no {RUN_FILE} there; pass the run folder a training command made "
                           "(see the `start` event or `runs/`)")
    try:
        saved = json.loads(run_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:  # ValueError: JSONDecodeError, UnicodeDecodeError
        raise ScratchError(f"--resume {run_dir}: {RUN_FILE} cannot be read ({e}); the file is damaged. Its flags are "
                           f"also in the first line of {EVENTS_FILE} (the `start` event's config): start a new run "
                           "with them and --init the run's checkpoint") from None
    if not (isinstance(saved, dict) and isinstance(saved.get("args"), dict) and isinstance(saved.get("command"), str)):
        raise ScratchError(f"--resume {run_dir}: {RUN_FILE} does not hold a command and its flags (edited or "
                           "damaged); start a new run and --init the run's checkpoint")
    if saved.get("command") != getattr(args, "command", saved.get("command")):
        raise ScratchError(f"--resume {run_dir}: that run was made by `{saved.get('command')}`, "
                           f"not `{args.command}`; resume it with that command")
    explicit = _explicit(args)
    merged = argparse.Namespace(**{**vars(args), **saved["args"]})
    ignored = []
    for key, value in explicit.items():
        if key in RESUMABLE_OVERRIDES:
            setattr(merged, key, value)
        elif key != "resume" and saved["args"].get(key) != value:
            ignored.append(f"--{key.replace('_', '-')}")
    if "max_steps" in explicit:
        merged.epochs = args.epochs
    if "epochs" in explicit:
        merged.max_steps = None
    if ignored:
        print(f"note: resuming with the run's own settings; ignored {', '.join(ignored)}", file=sys.stderr)
    merged.resume = str(run_dir)
    merged.func = args.func
    merged._trainer_defaults = getattr(args, "_trainer_defaults", {})
    return merged


def seed_everything(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def new_run_dir(out: str | Path | None, task_name: str) -> Path:
    from chatgpt_scratch.storage import paths

    stem = Path(out).name.removesuffix(".safetensors") if out else task_name
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    run_dir = paths.runs_dir() / f"{stem}-{stamp}"
    n = 1
    while run_dir.exists():
        n += 1
        run_dir = paths.runs_dir() / f"{stem}-{stamp}-{n}"
    return run_dir


def default_out(args: argparse.Namespace, task_name: str) -> Path:
    from chatgpt_scratch.storage import paths
    from chatgpt_scratch.storage.builtin import refuse_builtin

    out = Path(args.out) if args.out else paths.checkpoints_dir() / task_name
    stem = out.name.removesuffix(".safetensors")
    for name in (f"{stem}.safetensors", f"{stem}.best.safetensors"):  # checked before any training
        refuse_builtin(out.with_name(name), "overwrite")
    return out


@contextmanager
def stop_on_signals(trainer: "Trainer") -> Iterator[None]:
    """First SIGINT/SIGTERM: finish the step, save, stop (exit 0). A second Ctrl-C quits at once."""
    def handler(signum, frame):
        name = signal.Signals(signum).name
        if trainer._stop_requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        trainer.request_stop(name)  # first: a closed stderr (`| tee` died with the same Ctrl-C) must not stop the save
        say(f"\n{name}: stopping after this step and saving (Ctrl-C again to quit without saving)")

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def say(text: str) -> None:
    """A line on stderr that can never fail the run: after `... 2>&1 | tee log` and a Ctrl-C, tee is
    gone and every write to stderr raises BrokenPipeError; the save must happen all the same."""
    try:
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError):  # BrokenPipeError, EIO from a closed terminal, a closed file
        pass


class ProgressBar:
    """A tqdm bar on stderr fed by events: steps, loss, val loss, tokens/s, ETA.
    Where stderr is not a terminal (a pipe, a log file), one line per eval, sample and checkpoint,
    and a plain progress line every `plain_every_s` seconds. Output errors switch it off, never the run."""

    plain_every_s = 30.0

    def __init__(self) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self.bar = None
        self.val: float | None = None
        self.acc: float | None = None
        self.post: dict[str, str] = {}
        self.live = sys.stderr.isatty()
        self.dead = False  # stderr is gone (broken pipe): print nothing more
        self._last_plain = 0.0
        self._start: tuple[int, float] | None = None  # (step, elapsed_s) where this process started

    def __call__(self, event: dict[str, Any]) -> None:
        if self.dead:
            return
        try:
            self._show(event)
        except (OSError, ValueError):  # BrokenPipeError and friends: stop drawing, keep training
            self.dead = True
            self.bar = None

    def _show(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "start":
            amp = event.get("amp_dtype", "float32")
            self.total = event["total_steps"]
            self._line(f"start {event['task']}: {event['total_steps']} steps from step {event['step']}, "
                       f"{event['params']:,} trainable params on {event['device']}"
                       f"{f' ({amp} autocast)' if amp != 'float32' else ''}, run {event['run_dir']}")
            if self.live:
                self.bar = self._tqdm(total=event["total_steps"], initial=event["step"], unit="step",
                                      file=sys.stderr, dynamic_ncols=True, desc=event["task"])
        elif kind == "step":
            self.post = {"loss": f"{event['train_loss']:.3f}" if event.get("train_loss") is not None else "nan"}
            self._metrics_postfix()
            self.post["tok/s"] = f"{event['tokens_per_s']:.0f}"
            if self.bar is not None:
                self.bar.update(event["step"] - self.bar.n)
                self.bar.set_postfix(self.post, refresh=False)
            elif not self.live:
                self._plain(event)
        elif kind == "eval":
            self.val, self.acc = event.get("val_loss"), event.get("val_acc")
            metrics = ", ".join(f"{k} {v:.4f}" for k, v in event.items()
                                if k.startswith(("val_", "train_")) and isinstance(v, float))
            self._line(f"step {event['step']} (tokens {event['tokens_seen']:,}, {event['elapsed_s']:.0f}s): {metrics}")
            if self.bar is not None and self.post:  # the bar's val= is the eval just printed, also the final one
                self._metrics_postfix()
                self.bar.set_postfix(self.post, refresh=True)
        elif kind == "sample":
            self._line(f"step {event['step']} sample: {event['prompt']}{event['text']!r}")
        elif kind == "checkpoint" and not self.live:
            self._line(f"step {event['step']} saved {event['path']} ({event['reason']})")
        elif kind in TERMINAL_EVENTS:
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    def _metrics_postfix(self) -> None:
        for key, value in (("val", self.val), ("acc", self.acc)):
            if value is not None:
                self.post[key] = f"{value:.3f}"
        if "tok/s" in self.post:  # keep tok/s last
            self.post["tok/s"] = self.post.pop("tok/s")

    def _plain(self, event: dict[str, Any]) -> None:
        """Without a terminal: `step 120/1000 (12%): loss 3.214, val 3.402, 812 tok/s, ETA 4m10s`."""
        step, elapsed = event["step"], float(event.get("elapsed_s") or 0.0)
        if self._start is None:
            self._start = (step - 1, elapsed)
        now = time.monotonic()
        total = getattr(self, "total", None)
        if now - self._last_plain < self.plain_every_s and step != total:
            return
        self._last_plain = now
        done_here, spent = step - self._start[0], elapsed - self._start[1]
        eta = ""
        if total and done_here > 0 and spent > 0 and step < total:
            left = int((total - step) * spent / done_here)
            eta = f", ETA {left // 60}m{left % 60:02d}s"
        pct = f" ({100 * step / total:.0f}%)" if total else ""
        fields = ", ".join(f"{k} {v}" if k != "tok/s" else f"{v} tok/s" for k, v in self.post.items())
        self._line(f"step {step}/{total}{pct}: {fields}{eta}")

    def _line(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)


def run_training(task: Any, model: Any, args: argparse.Namespace,
                 metadata: dict[str, Any] | None = None) -> "RunResult":
    """Train `model` on `task` with the shared flags in `args`; returns the RunResult.

    metadata: provenance for the checkpoint headers (e.g. {"parent": args.init}); the train args,
    the run folder and the task's own metadata (datasets + sha256, ...) are added automatically.
    Raises ScratchError (exit 1) on a diverged loss; SIGINT/SIGTERM end it normally as `stopped`.
    """
    from chatgpt_scratch.system.device import resolve_device
    from chatgpt_scratch.training import distributed
    from chatgpt_scratch.training.events import EventLog
    from chatgpt_scratch.training.trainer import Trainer

    cfg = train_config(args)
    info = distributed.init_from_env(resolve_device(cfg.device))
    out = default_out(args, task.name)
    if args.resume:
        run_dir = Path(args.resume)
    else:
        run_dir = new_run_dir(out, task.name)
    bar = ProgressBar() if info.is_main else None
    events = None
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if not args.resume:
            from chatgpt_scratch.storage.fileio import write_text_atomic

            run_doc = {"command": getattr(args, "command", task.name), "args": args_to_json(args)}
            write_text_atomic(run_dir / RUN_FILE, json.dumps(run_doc, indent=2))  # --resume needs all of it
        events = EventLog(run_dir / EVENTS_FILE, stream=sys.stdout if args.events == "-" else None,
                          listeners=[bar])
    meta = {**(metadata or {}), "train_args": args_to_json(args)}
    trainer = Trainer(task, model, cfg, run_dir, out=out, events=events, metadata=meta, resume=bool(args.resume))
    if info.is_main and trainer.amp_dtype is None and trainer.device.type == "cpu" and cfg.dtype == "auto":
        from chatgpt_scratch.system.device import cpu_has_native_bf16

        if cpu_has_native_bf16():
            say("hint: this CPU does bfloat16 in hardware; --dtype bfloat16 trains about 1.4x faster "
                "(float32 weights, bf16 matmuls)")
    try:
        with stop_on_signals(trainer):
            result = trainer.run()
    except ScratchError:
        raise  # the Trainer already wrote the error event (diverged) or nothing ran yet
    except KeyboardInterrupt:
        if events is not None:
            events.emit("error", step=trainer.step, message="interrupted twice: quit without saving")
        raise
    except Exception as e:
        if events is not None:
            events.emit("error", step=trainer.step, message=f"{type(e).__name__}: {e}")
        raise
    finally:
        if bar is not None and bar.bar is not None:
            try:
                bar.bar.close()
            except (OSError, ValueError):
                pass
        if events is not None:
            events.close()
        if info.is_main:
            _plot(run_dir, trainer.checkpoint_path)
        distributed.shutdown()
    if info.is_main:
        verb = "stopped" if result.status == "stopped" else "done"
        say(f"{verb} at step {result.step}: {result.checkpoint}")
        if result.status == "stopped":
            say(f"resume with: --resume {run_dir}")
    return result


def _plot(run_dir: Path, checkpoint: Path) -> None:
    from chatgpt_scratch.training.plots import plot_run

    try:
        png = plot_run(run_dir / EVENTS_FILE, loss_plot_path(checkpoint))
    except Exception as e:  # a plot must never cost the user the run
        say(f"note: no loss plot ({type(e).__name__}: {e})")
        return
    if png is not None:
        say(f"loss plot: {png}")


def loss_plot_path(checkpoint: Path) -> Path:
    """checkpoints/NAME.safetensors -> checkpoints/NAME.loss.png"""
    from chatgpt_scratch.storage.checkpoint_format import sibling_file

    return sibling_file(checkpoint, ".loss.png")
