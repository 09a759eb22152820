#!/usr/bin/env bash
# Smoke run of the TUI in a real terminal (tmux): the app as a user meets it, at 120x40 and 80x24.
#
#   scripts/tui_smoke.sh [OUT_DIR]        (or TUI_SMOKE_OUT=DIR; default: a new temp folder)
#
# On every screen, at both sizes: resize to the other size and back, press every key the footer
# shows (except the keys that quit or start long work: it says which and why), dismiss the first
# launch's welcome panel, open About and resize under it. It fails (exit 1, one line
# `FAIL: <screen> <size> <step>: <what>` each) on a Python traceback in the pane or in the app's
# stderr, on the app exiting, and on text left over from another screen, a closed dialog or the other
# size. The checks live in scripts/tui_smoke_check.py. Captures: OUT_DIR/<screen>-<cols>x<rows>.txt,
# about-*.txt, welcome-*.txt, every step under OUT_DIR/steps/, and OUT_DIR/report.txt.
#
# Uses a throw-away data folder with one tiny base model and one tiny classifier and the built-in
# models off, so it touches nothing of yours and captures the same everywhere. Needs tmux and the
# package installed (`pip install -e .`).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-${TUI_SMOKE_OUT:-$(mktemp -d -t tui-smoke.XXXXXX)}}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
PY="$(command -v "${PYTHON:-python}")"
command -v tmux >/dev/null || { echo "tmux is not installed" >&2; exit 2; }

DATA="$(mktemp -d)"
SESSION="scratch-smoke-$$"
cleanup() { tmux kill-session -t "$SESSION" 2>/dev/null || true; rm -rf "$DATA"; }
trap cleanup EXIT
export CHATGPT_SCRATCH_CHECKPOINTS="$DATA/checkpoints" CHATGPT_SCRATCH_DATASETS="$DATA/datasets" \
       CHATGPT_SCRATCH_RUNS="$DATA/runs" CHATGPT_SCRATCH_HOME="$DATA/home"
# Only the tiny models made below (not the shipped ones): fast, and the same captures everywhere.
export CHATGPT_SCRATCH_BUNDLED=off

"$PY" - <<'PYEOF'
import os, torch
from chatgpt_scratch.checkpoints import save_checkpoint
from chatgpt_scratch.config import PRESETS
from chatgpt_scratch.model import GPTModel
torch.manual_seed(0)
folder = os.environ["CHATGPT_SCRATCH_CHECKPOINTS"]
save_checkpoint(f"{folder}/tiny-base.safetensors", GPTModel(PRESETS["test-tiny"]), kind="base")
save_checkpoint(f"{folder}/tiny-spam.safetensors", GPTModel(PRESETS["test-tiny"].with_(n_classes=2)),
                kind="classifier", labels=["ham", "spam"])
PYEOF

# The app's stderr carries its screen (Textual draws there) and anything printed after it ends
# (a traceback): a copy goes to a file that the checks read.
ERR="$DATA/app-stderr.log"
# The pane runs this (bash: the tee needs process substitution). The environment goes in it: a tmux
# server that runs already would not pass ours on.
cat > "$DATA/launch.sh" <<LAUNCH
export CHATGPT_SCRATCH_CHECKPOINTS="$DATA/checkpoints" CHATGPT_SCRATCH_DATASETS="$DATA/datasets" \\
       CHATGPT_SCRATCH_RUNS="$DATA/runs" CHATGPT_SCRATCH_HOME="$DATA/home" CHATGPT_SCRATCH_BUNDLED=off \\
       TERM=xterm-256color
cd "$PWD"
"$PY" -m chatgpt_scratch 2> >(tee "$ERR" >&2)
echo APP-EXITED-\$?
sleep 60
LAUNCH
tmux new-session -d -s "$SESSION" -x 120 -y 40 "bash $DATA/launch.sh"
tmux set-option -t "$SESSION" window-size manual >/dev/null  # resize-window sets the size, no client does

code=0
"$PY" scripts/tui_smoke_check.py --session "$SESSION" --out "$OUT" --stderr-log "$ERR" || code=$?
echo "captures in $OUT"
exit "$code"
