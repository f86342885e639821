#!/usr/bin/env bash
# The GPU figures of docs/gpu.md in one prepared run (about 6 minutes on one H100):
# the project's step for Qwen2.5-0.5B (every policy, two batch sizes), then the same
# model in transformers/PyTorch, eager and torch.compile. Output: $OUT/*.txt (or ./gpu_out).
#
# On the lent GPU machine (no ml_collections / tensorboardX there; carry .whl/, see
# README "Benchmarks on a GPU"):
#   pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && \
#     export PYTHONPATH=/tmp/site:$PWD && bash bench/gpu_session.sh
set -u
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/device.txt" 2>&1
python -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__)" >> "$OUT/device.txt" 2>&1
run() {  # name, timeout, command...
  local name=$1 limit=$2; shift 2
  echo "\$ $*" > "$OUT/$name.txt"
  timeout "$limit" "$@" >> "$OUT/$name.txt" 2>&1 || echo "exit $?" >> "$OUT/$name.txt"
}
run step_b8 150 python bench/gpu_step.py --model qwen2.5-0.5b --batch 8 --seq-len 1024
run step_b16 120 python bench/gpu_step.py --model qwen2.5-0.5b --batch 16 --seq-len 1024 --policies none
run torch_eager 60 python bench/torch_reference.py --model qwen2.5-0.5b --batch 8 --seq-len 1024
run torch_compile 150 python bench/torch_reference.py --model qwen2.5-0.5b --batch 8 --seq-len 1024 --compile
tail -n 12 "$OUT"/*.txt
