#!/usr/bin/env bash
# GPU verification in one device call. Nothing is built on the GPU machine (it has no Rust).
#
#   scripts/gpu_check.sh prepare   # dev machine: build the trainer's test binary and a
#                                  # release `ssr`, stripped, into target/gpu-carry/
#   scripts/gpu_check.sh run       # GPU machine (device tool: carry ["target/gpu-carry"]):
#                                  # GPU parity tests, then the kernel benchmark with the
#                                  # PyTorch baseline, then the training/generation
#                                  # benchmark; logs and JSON under $OUT
#   scripts/gpu_check.sh profile   # GPU machine: the kernel benchmark and a training step
#                                  # (forward, LM head, backward, AdamW; NVTX ranges per
#                                  # phase, layer and kernel) under nsys if present, else ncu
set -euo pipefail
cd "$(dirname "$0")/.."
CARRY=target/gpu-carry
OUT=${OUT:-target/gpu-check-out}

# cudarc loads libcuda, libnvrtc, libcublas and libnccl at run time: add the toolkit's
# folder and the NVIDIA wheels that PyTorch installed (cuBLAS, NCCL) to the search path.
cuda_library_path() {
  local extra
  extra=$(python3 -c 'import glob, os, site
dirs = []
for sp in site.getsitepackages():
    dirs += glob.glob(os.path.join(sp, "nvidia", "*", "lib")) + glob.glob(os.path.join(sp, "nvidia", "cu13", "lib"))
print(":".join(dirs))' 2>/dev/null || true)
  export LD_LIBRARY_PATH="/usr/local/cuda/lib64${extra:+:$extra}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
}

case "${1:-run}" in
prepare)
  bin=$(cargo test -p ssr-trainer --test it --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "it":
        print(m["executable"])' | tail -1)
  cargo build --release -p ssr
  mkdir -p "$CARRY"
  strip -o "$CARRY/trainer-it" "$bin"
  strip -o "$CARRY/ssr" target/release/ssr
  ls -la "$CARRY"
  ;;
run)
  mkdir -p "$OUT"
  cuda_library_path
  { nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true; } | tee "$OUT/device.txt"
  # Kernel cache in $OUT's sibling so a second call in the same lease skips NVRTC.
  export SSR_KERNEL_CACHE=${SSR_KERNEL_CACHE:-/tmp/ssr-kernels}
  # GPU parity tests one at a time (they share the device). SSR_REQUIRE_GPU=1: a test that
  # would skip (no device, no model file, no libnccl, no NVRTC) fails, so a run where no
  # GPU opened fails instead of passing on skips.
  export SSR_REQUIRE_GPU=1
  set +e
  "$CARRY/trainer-it" gpu:: --test-threads=1 --nocapture 2>&1 | tee "$OUT/gpu_tests.txt"
  tests_rc=${PIPESTATUS[0]}
  if "$CARRY/ssr" bench kernels --help >/dev/null 2>&1; then
    "$CARRY/ssr" bench kernels --json >"$OUT/bench_kernels.json" 2>"$OUT/bench_kernels.log"
    echo "bench kernels exit $?"; tail -5 "$OUT/bench_kernels.log"
    python3 - "$OUT/bench_kernels.json" <<'PY' || true
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{r['device']}: copy {r['copy_gb_per_s']:.0f} GB/s; torch: {r.get('torch_error') or 'ok'}")
for c in r["cases"]:
    t = f"{c['torch_ms']:.3f}" if c.get("torch_ms") else "-"
    s = f"{c['speedup_vs_torch']:.2f}x" if c.get("speedup_vs_torch") else "-"
    print(f"{c['op']:<17} {c['shape']:<8} {c['tokens']:>6} {c['ms']:>9.3f} ms  {100*c['frac_of_copy_bw']:>4.0f}% copy  {100*c['frac_of_gemm']:>4.0f}% gemm  torch {t} ms  {s}")
PY
  else
    echo "ssr bench kernels is not wired into this build (see src/cli/bench_gpu.rs)"
  fi
  if "$CARRY/ssr" bench train --help >/dev/null 2>&1; then
    "$CARRY/ssr" bench train >"$OUT/bench_train.txt" 2>"$OUT/bench_train.log"
    echo "bench train exit $?"; cat "$OUT/bench_train.txt"; tail -3 "$OUT/bench_train.log"
  fi
  set -e
  exit "$tests_rc"
  ;;
profile)
  mkdir -p "$OUT"
  cuda_library_path
  export SSR_KERNEL_CACHE=${SSR_KERNEL_CACHE:-/tmp/ssr-kernels}
  kernels=(bench kernels --shapes smollm2 --tokens 4096 --reps 3 --no-torch)
  # One warm-up step and two timed steps of 2,048 tokens: ranges "train step 2" and
  # "train step 3" hold a steady-state step; "model forward" / "layer N" / "model
  # backward" / "layer N backward" / "lm_head ..." / "optimizer step" inside.
  train=(bench train --tokens-per-step 2048 --seq-len 2048 --steps 2 --gen-prompt 16 --gen-tokens 8 --no-torch)
  nsys_bin=$(command -v nsys || ls /opt/nvidia/nsight-systems/*/bin/nsys /usr/local/cuda/bin/nsys 2>/dev/null | head -1 || true)
  if [ -n "$nsys_bin" ]; then
    "$nsys_bin" profile --trace=cuda,nvtx,cublas -o "$OUT/kernels" "$CARRY/ssr" "${kernels[@]}"
    "$nsys_bin" profile --trace=cuda,nvtx,cublas -o "$OUT/train_step" "$CARRY/ssr" "${train[@]}"
  else
    # nsys is not on PATH on the lent machines; ncu profiles each kernel launch, grouped
    # by the NVTX ranges. A few launches are enough for the kernel report; for the
    # training step, the kernels of the second step (the first after warm-up), with the
    # basic metric set so that a few hundred launches finish in minutes.
    ncu --nvtx --launch-count 20 --set full -o "$OUT/kernels" "$CARRY/ssr" "${kernels[@]}"
    ncu --nvtx --nvtx-include "train step 2/" --launch-count 400 --set basic \
      -o "$OUT/train_step" "$CARRY/ssr" "${train[@]}"
  fi
  ls -la "$OUT"
  ;;
*)
  echo "usage: $0 prepare|run|profile" >&2
  exit 2
  ;;
esac
