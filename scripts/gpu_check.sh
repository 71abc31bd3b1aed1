#!/usr/bin/env bash
# GPU verification in one device call. Nothing is built on the GPU machine (it has no Rust).
#
#   scripts/gpu_check.sh prepare   # dev machine: build the trainer's test binary and a
#                                  # release `ssr`, stripped, into target/gpu-carry/
#   scripts/gpu_check.sh run       # GPU machine (device tool: carry ["target/gpu-carry"]):
#                                  # GPU parity tests, then the kernel benchmark with the
#                                  # PyTorch baseline, then the training/generation
#                                  # benchmark; logs and JSON under $OUT
#   scripts/gpu_check.sh profile   # GPU machine: the kernel benchmark under nsys if present,
#                                  # else ncu (NVTX ranges name phases and kernels)
set -euo pipefail
cd "$(dirname "$0")/.."
CARRY=target/gpu-carry
OUT=${OUT:-target/gpu-check-out}

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
  { nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true; } | tee "$OUT/device.txt"
  # Kernel cache in $OUT's sibling so a second call in the same lease skips NVRTC.
  export SSR_KERNEL_CACHE=${SSR_KERNEL_CACHE:-/tmp/ssr-kernels}
  # GPU parity tests one at a time (they share the device); a skip prints its reason.
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
  export SSR_KERNEL_CACHE=${SSR_KERNEL_CACHE:-/tmp/ssr-kernels}
  args=(bench kernels --shapes smollm2 --tokens 4096 --reps 3 --no-torch)
  if command -v nsys >/dev/null; then
    nsys profile --trace=cuda,nvtx -o "$OUT/kernels" "$CARRY/ssr" "${args[@]}"
  else
    # nsys is not on PATH on the lent machines; ncu profiles each kernel launch, grouped
    # by the NVTX ranges. A few launches are enough for the report.
    ncu --nvtx --launch-count 20 --set full -o "$OUT/kernels" "$CARRY/ssr" "${args[@]}"
  fi
  ls -la "$OUT"
  ;;
*)
  echo "usage: $0 prepare|run|profile" >&2
  exit 2
  ;;
esac
