#!/usr/bin/env bash
# The GPU figures of docs/gpu.md in one prepared call, built so that a time limit or a
# failing part loses at most that part (README, "Benchmarks on a GPU").
#
#   bash bench/gpu_session.sh              # on the lent GPU machine, from the repository root
#   TOY=1 bash bench/gpu_session.sh        # every part at toy size on a CPU (tests/test_gpu_session.py)
#
# Environment (all optional):
#   OUT          where the figures go (default gpu_out): session.md (what ran, how it
#                ended, what to run next), device.txt, one <part>.txt per part
#   DEADLINE_S   the whole session's seconds (default 560, inside a 600 s call); a part
#                starts only if the time left covers its estimate, and is stopped at the deadline
#   PARTS        comma-separated part names to run, in this script's priority order (default all):
#                step_b8 lora7b torch_eager stress_gpu step_b8_xla step_b16 old_path torch_compile
#   EST_<part>   that part's estimate in seconds, in place of the table below (it may run
#                to twice its estimate)
#   ATTENTION    model.attention for the JAX parts: auto (default) | cudnn | xla. If a part
#                fails with cuDNN in its output, it is rerun with xla in the same call, and
#                every later part uses xla.
#   TOY=1        toy sizes on the CPU, to check the whole script before spending device time
#
# Set-up it does itself: the GPU image lacks ml_collections and tensorboardX, so when they
# are missing it installs the wheels carried in .whl/ (git-ignored; made on a machine with
# the registry by `pip download --no-deps --only-binary=:all: --python-version 3.12
# --platform manylinux2014_x86_64 -d .whl ml_collections tensorboardX`, and sent with the
# call's carry); it sets PYTHONPATH, PYTHONUNBUFFERED and XLA_PYTHON_CLIENT_MEM_FRACTION.
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
DEADLINE_S=${DEADLINE_S:-560}
PARTS=${PARTS:-all}
ATTENTION=${ATTENTION:-auto}
TOY=${TOY:-0}
START=$SECONDS
SUMMARY=$OUT/session.md
KNOWN_PARTS=(step_b8 lora7b torch_eager stress_gpu step_b8_xla step_b16 old_path torch_compile)
if [ "$PARTS" != all ]; then   # a misspelt part would otherwise run nothing, silently
  for name in ${PARTS//,/ }; do
    if [[ " ${KNOWN_PARTS[*]} " != *" $name "* ]]; then
      echo "gpu_session.sh: PARTS names an unknown part '$name'; known: ${KNOWN_PARTS[*]}" >&2
      exit 2
    fi
  done
fi
NOT_RUN=()

export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1                 # every line reaches its file as it is printed
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.90}   # room for 7B
[ "$TOY" = 1 ] && export JAX_PLATFORMS=cpu

note() { echo "$*" | tee -a "$SUMMARY"; }

: > "$SUMMARY"
note "# GPU session $(date -u +%Y-%m-%dT%H:%M:%SZ)"
note ""
if COMMIT=$(git rev-parse --short HEAD 2>/dev/null); then   # a copied tree may have no .git
  git diff --quiet HEAD 2>/dev/null || COMMIT="$COMMIT + uncommitted changes"
else
  COMMIT="unknown (no git repository here)"
fi
note "commit $COMMIT; TOY=$TOY, DEADLINE_S=$DEADLINE_S, PARTS=$PARTS, ATTENTION=$ATTENTION"

if ! python -c "import ml_collections, tensorboardX" 2>/dev/null; then
  if compgen -G ".whl/*.whl" > /dev/null; then
    SITE=${TMPDIR:-/tmp}/lbw_jax_site
    if python -m pip install -q --no-index --no-deps --target "$SITE" .whl/*.whl > "$OUT/setup.txt" 2>&1; then
      export PYTHONPATH="$PYTHONPATH:$SITE"
      note "set-up: installed the carried wheels ($(cd .whl && ls *.whl | tr '\n' ' ')) into $SITE"
    else
      note "set-up: installing .whl/ failed (setup.txt); the parts that need ml_collections will fail"
    fi
  else
    note "set-up: ml_collections or tensorboardX is missing and no .whl/ was carried; the JAX parts will fail"
  fi
fi
python bench/device_info.py > "$OUT/device.txt" 2>&1 || echo "bench/device_info.py failed" >> "$OUT/device.txt"
note ""
note '```'
tee -a "$SUMMARY" < "$OUT/device.txt"
note '```'
note ""
note "| part | result | wall (s) | estimate (s) |"
note "|---|---|---|---|"

selected() { [ "$PARTS" = all ] || [[ ",$PARTS," == *",$1,"* ]]; }

attempt() {  # file, limit (s), command... -> the command's exit code (124/137: timed out)
  local file=$1 limit=$2; shift 2
  echo "\$ $*" > "$file"
  timeout --kill-after=15 "$limit" "$@" >> "$file" 2>&1
  local rc=$?
  echo "exit $rc" >> "$file"
  return $rc
}

# part NAME ESTIMATE_S ATTENTION_FLAG COMMAND...: ATTENTION_FLAG is how the command takes
# model.attention ("--attention=" or "--config.model.attention="), or "-" if it has none.
part() {
  local name=$1 estimate=$2 flag=$3; shift 3
  selected "$name" || return 0
  local left=$(( DEADLINE_S - (SECONDS - START) ))
  if (( left < estimate )); then
    note "| $name | not started: ${left} s left, estimate ${estimate} s | - | $estimate |"
    NOT_RUN+=("$name"); return 0
  fi
  local limit=$(( 2 * estimate < left ? 2 * estimate : left ))
  local t0=$SECONDS cmd=("$@") rc
  [ "$flag" != - ] && cmd+=("${flag}${ATTENTION}")
  attempt "$OUT/$name.txt" "$limit" "${cmd[@]}"; rc=$?
  if (( rc != 0 && rc != 124 && rc != 137 )) && [ "$flag" != - ] && [ "$ATTENTION" != xla ] \
      && grep -qi cudnn "$OUT/$name.txt"; then
    mv "$OUT/$name.txt" "$OUT/$name.cudnn_failed.txt"
    ATTENTION=xla
    note "| $name | exit $rc with cuDNN attention ($name.cudnn_failed.txt): retried with model.attention=xla, as are all later parts | $(( SECONDS - t0 )) | $estimate |"
    left=$(( DEADLINE_S - (SECONDS - START) ))
    limit=$(( 2 * estimate < left ? 2 * estimate : left ))
    if (( limit < 1 )); then
      note "| $name (xla) | not started: no time left | - | $estimate |"; NOT_RUN+=("$name"); return 0
    fi
    t0=$SECONDS cmd=("$@" "${flag}xla")
    attempt "$OUT/$name.txt" "$limit" "${cmd[@]}"; rc=$?
    name="$name (xla)"
  fi
  local result="ok"
  if (( rc == 124 || rc == 137 )); then
    result="timed out at ${limit} s: what it printed is kept"
  elif (( rc != 0 )); then
    result="exit $rc: see the end of its file"
  fi
  note "| $name | $result | $(( SECONDS - t0 )) | $estimate |"
}

if [ "$TOY" = 1 ]; then   # toy sizes: the same parts and flags, seconds on a CPU
  ARCH=(--arch num_layers=2,hidden_size=32,intermediate_size=64,num_heads=2,num_kv_heads=1,head_dim=16,vocab_size=256)
  STEP=(--model qwen2.5-0.5b "${ARCH[@]}" --seq-len 16 --steps 1 --rounds 2)
  B8=(--batch 2) B16=(--batch 4)
  LORA7B=(--model qwen2.5-7b --arch num_layers=2,hidden_size=32,intermediate_size=64,num_heads=4,num_kv_heads=2,head_dim=8,vocab_size=256
          --batch 4 --grad-accum 2 --seq-len 16)
  TORCH=(--model qwen2.5-0.5b "${ARCH[@]}" --batch 2 --seq-len 16 --steps 1 --rounds 1)
  STRESS=(--config.model.arch.hidden_size=32 --config.model.arch.intermediate_size=64
          --config.model.arch.num_layers=2 --config.model.arch.num_heads=2 --config.model.arch.num_kv_heads=1
          --config.model.arch.head_dim=16 --config.data.vocab_size=512 --config.data.seq_len=32
          --config.train.batch_size=4 --config.model.dtype=float32 '--config.stress.lrs=(1e-3,1e-2)'
          --config.stress.seeds=1 --config.stress.steps=12 --config.stress.eval_every=4
          --config.stress.eval_batches=2 --config.stress.pretrain_steps=8 --config.stress.pretrain_warmup=2
          --config.optimizer.warmup_steps=3 '--config.stress.scenarios=("lr_spike",)'
          --config.stress.inject_at=6 --config.stress.lr_spike_len=3 --config.stress.scenario_lr=1e-3)
  EST=(step_b8=60 lora7b=30 torch_eager=30 stress_gpu=150 step_b8_xla=20 step_b16=20 old_path=20 torch_compile=120)
else
  STEP=(--model qwen2.5-0.5b --seq-len 1024)
  B8=(--batch 8) B16=(--batch 16)
  LORA7B=(--model qwen2.5-7b)
  TORCH=(--model qwen2.5-0.5b --batch 8 --seq-len 1024)
  STRESS=()
  # Seconds on one H100/H200, from the last measurements (docs/gpu.md); a part may run to
  # twice its estimate, never past the deadline.
  EST=(step_b8=100 lora7b=150 torch_eager=45 stress_gpu=240 step_b8_xla=45 step_b16=45 old_path=75 torch_compile=120)
fi
est() {  # a part's estimate: EST_<part> from the environment, else the table above
  local var="EST_$1" kv
  if [ -n "${!var:-}" ]; then echo "${!var}"; return; fi
  for kv in "${EST[@]}"; do [ "${kv%%=*}" = "$1" ] && echo "${kv#*=}"; done
}

# The parts, in priority order: what the goals need first.
# 1. Qwen2.5-0.5B full-parameter bf16, every policy: MFU, the policies' cost, compile time.
part step_b8 "$(est step_b8)" --attention= python bench/gpu_step.py "${STEP[@]}" "${B8[@]}"
# 2. The paper's 7B LoRA step at full depth (lbw_jax/train/configs/qwen7b.py, random init): fits? MFU?
part lora7b "$(est lora7b)" --attention= python bench/gpu_step.py --config qwen7b \
  "${LORA7B[@]}" --policies reflex --no-reference --steps 5 --rounds 1
# 3. The PyTorch eager loop, plain and with the reference law: the 2.2x goal.
part torch_eager "$(est torch_eager)" - python bench/torch_reference.py "${TORCH[@]}"
# 4. Governor v2 at 27M on the stress suite's GPU setting, its replay and effective-LR control.
part stress_gpu "$(est stress_gpu)" --config.model.attention= python -m lbw_jax.train.stress \
  --config stress_gpu --config.output_dir="$OUT/stress_gpu" \
  '--config.stress.arms=("adamw","clip","governor","replay_governor","effective_lr_governor")' \
  '--config.stress.fault_arms=("adamw","clip","governor","replay_governor")' "${STRESS[@]}"
# 5. cuDNN's gain: plain AdamW at batch 8 with XLA's attention (skipped once cuDNN has failed).
if [ "$ATTENTION" = xla ]; then
  selected step_b8_xla && note "| step_b8_xla | not run: the session already uses XLA attention | - | - |"
else
  part step_b8_xla "$(est step_b8_xla)" - python bench/gpu_step.py "${STEP[@]}" "${B8[@]}" \
    --policies none --attention=xla
fi
# 6. Plain AdamW at batch 16.
part step_b16 "$(est step_b16)" --attention= python bench/gpu_step.py "${STEP[@]}" "${B16[@]}" --policies none
# 7. The old path (no scan, full logits) on this device: the new step's gain, not the chip's.
part old_path "$(est old_path)" --attention= python bench/gpu_step.py "${STEP[@]}" "${B8[@]}" \
  --policies none --no-scan --loss-chunk-tokens=-1
# 8. torch.compile.
part torch_compile "$(est torch_compile)" - python bench/torch_reference.py "${TORCH[@]}" --compile

note ""
python bench/session_goals.py "$OUT" 2>&1 | tee -a "$SUMMARY"
note ""
note "elapsed $(( SECONDS - START )) s of DEADLINE_S=$DEADLINE_S"
if (( ${#NOT_RUN[@]} )); then
  rest=$(IFS=,; echo "${NOT_RUN[*]}")
  note "not run for lack of time; next call: PARTS=$rest bash bench/gpu_session.sh"
fi
for file in "$OUT"/*.txt; do
  echo "== $(basename "$file")"; tail -n 14 "$file"
done
