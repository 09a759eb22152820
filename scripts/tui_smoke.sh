#!/usr/bin/env bash
# Smoke run of the TUI in a real terminal (tmux): start the app, visit every screen, capture
# each pane to a text file and check that the expected text is on it.
#
#   scripts/tui_smoke.sh [OUT_DIR]        (default OUT_DIR: ./tui-smoke; COLS=80 ROWS=24 for a small terminal)
#
# Uses a throw-away data folder with one tiny base model and one tiny classifier, so it
# touches nothing of yours. Needs tmux and the package installed (`pip install -e .`).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-tui-smoke}"
COLS="${COLS:-100}"
ROWS="${ROWS:-30}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
PY="${PYTHON:-python}"
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

tmux new-session -d -s "$SESSION" -x "$COLS" -y "$ROWS" \
  "env CHATGPT_SCRATCH_CHECKPOINTS=$DATA/checkpoints CHATGPT_SCRATCH_DATASETS=$DATA/datasets \
   CHATGPT_SCRATCH_RUNS=$DATA/runs CHATGPT_SCRATCH_HOME=$DATA/home CHATGPT_SCRATCH_BUNDLED=off TERM=xterm-256color \
   $PY -m chatgpt_scratch; echo APP-EXITED-\$?; sleep 30"

capture() { tmux capture-pane -p -t "$SESSION" > "$OUT/$1.txt"; }
wait_for() {  # wait_for NAME TEXT: poll the pane until TEXT shows (15 s), then save it as NAME
  for _ in $(seq 1 60); do
    capture "$1"
    if grep -qE -- "$2" "$OUT/$1.txt"; then return 0; fi
    sleep 0.25
  done
  echo "FAIL: '$2' not on the $1 screen; see $OUT/$1.txt" >&2
  cat "$OUT/$1.txt" >&2
  exit 1
}

wait_for chat "tiny-base.safetensors: base"
capture chat-start
tmux send-keys -t "$SESSION" "Hello there" Enter
wait_for chat-writing "writing"
sleep 1
tmux send-keys -t "$SESSION" Escape   # stop the reply: what was written stays
wait_for chat "tok/s"
tmux send-keys -t "$SESSION" F2
wait_for spam "labels ham, spam"
tmux send-keys -t "$SESSION" "WINNER! Claim your free prize now"
sleep 0.5
tmux send-keys -t "$SESSION" F6
wait_for spam "(HAM|SPAM) [0-9.]+%"
tmux send-keys -t "$SESSION" F3
wait_for train "Pretrain \(next-token\)"   # no runs yet: Train opens on the New-run form
tmux send-keys -t "$SESSION" F4
wait_for checkpoints "2 checkpoint\(s\)"
tmux send-keys -t "$SESSION" x
wait_for checkpoints-delete "cannot be undone"
tmux send-keys -t "$SESSION" Escape
tmux send-keys -t "$SESSION" F10
wait_for about "Data folders"
tmux send-keys -t "$SESSION" Escape
tmux send-keys -t "$SESSION" C-q
wait_for exit "APP-EXITED-[0-9]+"
if grep -q Traceback "$OUT"/*.txt || ! grep -q "APP-EXITED-0" "$OUT/exit.txt"; then
  echo "FAIL: the app did not exit cleanly" >&2; cat "$OUT/exit.txt" >&2; exit 1
fi
echo "OK: every screen showed its expected text; captures in $OUT"
