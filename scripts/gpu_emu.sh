#!/usr/bin/env bash
# Runs every test of the trainer's `gpu::` module on the emulated CUDA device (gpu-emu/):
# the real host code, cudarc and NVRTC, with the fake libcuda/libcublas/libnccl running
# kernels/*.cu on the CPU (each CUDA thread a fiber, gpu-emu/fibers.cc), then the
# end-to-end runs of the `ssr` program on the tiny model (tests/it/gpu_e2e: `ssr train`
# cuda vs cpu, a self-play round training on the device, greedy f32 generation), whose
# child processes inherit the emulator. SSR_REQUIRE_GPU=1: a test that would skip fails
# instead.
#
#   scripts/gpu_emu.sh          # ASan + UBSan, every GPU test (`just gpu-emu`)
#   scripts/gpu_emu.sh ci       # what `just test` runs: the same, every GPU test (33,
#                               # training-scale ones included). With fibers it fits CI's
#                               # 8-minute budget for the emulator: 3.9 min (6.5 at load
#                               # 16-25) on the shared 2-core machine at load 8-10, 1.6 min
#                               # of CPU, the emulator's build included. The 3 end-to-end
#                               # runs (tests/it/gpu_e2e) add 85 s: 6.9 min in all at
#                               # load 11-12 (2.3 min of CPU)
#   scripts/gpu_emu.sh tsan     # ThreadSanitizer, plus the proof that it catches a
#                               # kernel whose __syncthreads was removed
#
# Needs g++ (with libasan/libubsan/libtsan) and the NVRTC wheel in .venv-cuda
# (scripts/setup.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-asan}
nvrtc_lib=$(ls -d .venv-cuda/lib/python3*/site-packages/nvidia/cu13/lib 2>/dev/null | head -1 || true)
if [ -z "$nvrtc_lib" ]; then
  echo "gpu-emu: no NVRTC in .venv-cuda (run scripts/setup.sh)" >&2
  exit 1
fi

# The `it` test binary of package $1.
test_binary() {
  cargo test -p "$1" --test it --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "it":
        print(m["executable"])' | tail -1
}

# Runs the test binary on the emulated device built in $1 with filter $2.. ; the
# sanitizer runtime is preloaded into the uninstrumented Rust binary.
run_emulated() {
  local dir=$1 runtime=$2
  shift 2
  # A separate kernel cache (and the emulator's own folder in it, context.rs): the
  # emulator's runs never touch a real GPU's cache.
  LD_LIBRARY_PATH="$PWD/$dir:$PWD/$nvrtc_lib" \
    LD_PRELOAD="$runtime" \
    SSR_REQUIRE_GPU=1 SSR_KERNEL_CACHE="$SSR_KERNEL_CACHE" \
    ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    TSAN_OPTIONS="halt_on_error=1 report_signal_unsafe=0 suppressions=$PWD/gpu-emu/tsan.supp ${TSAN_EXTRA:-}" \
    "$bin" "$@"
}

cargo build -p ssr-trainer --tests -q 2>&1 | tail -20
bin=$(test_binary ssr-trainer)
[ -x "$bin" ] || { echo "gpu-emu: the trainer's test binary was not built" >&2; exit 1; }

# Which GPU tests the sanitized run takes (test-name filters). `ci` was a subset while a
# CUDA thread was an OS thread; with fibers every GPU test fits, so it is `asan`. Narrow
# it here again (e.g. filters=(gpu::emulator gpu::rl)) if CI's budget shrinks.
filters=(gpu::)
if [ "$mode" = ci ]; then
  mode=asan
fi

case "$mode" in
asan)
  bash gpu-emu/build.sh target/gpu-emu/asan asan
  # 0. The fiber scheduler's checks: a barrier no thread can complete aborts naming it.
  target/gpu-emu/asan/selftest ok
  div=$(ASAN_OPTIONS=detect_leaks=0 target/gpu-emu/asan/selftest divergent 2>&1 || true)
  if grep "no thread can proceed" <<<"$div"; then
    echo "gpu-emu: a divergent barrier is reported, not a hang"
  else
    echo "gpu-emu: selftest divergent did not report the divergent barrier" >&2
    exit 1
  fi
  log=$(mktemp)
  cache=$(mktemp -d)
  export SSR_KERNEL_CACHE=$cache
  set +e
  # 1. Without a sanitizer: the NVRTC compile test, the ptxas resource check, and the
  #    emulator's kernel cache filled with NVRTC's PTX (NVRTC 13 crashes under a
  #    preloaded ASan, so the sanitized run must not call it).
  LD_LIBRARY_PATH="$PWD/$nvrtc_lib" SSR_REQUIRE_GPU=1 "$bin" --test-threads=1 --include-ignored \
    gpu::every_kernel_source_compiles_with_nvrtc gpu::ptxas gpu::emulator::emulator_fill_kernel_cache 2>&1 | tee "$log"
  rc1=${PIPESTATUS[0]}
  # 2. Every other GPU test on the emulated device under ASan + UBSan.
  run_emulated target/gpu-emu/asan "$(gcc -print-file-name=libasan.so)" "${filters[@]}" --test-threads=1 \
    --skip gpu::every_kernel_source_compiles_with_nvrtc --skip gpu::ptxas 2>&1 | tee -a "$log"
  rc2=${PIPESTATUS[0]}
  # 3. The end-to-end runs of the `ssr` program (root crate, tests/it/gpu_e2e) under the
  #    same emulator: each `ssr` child inherits the library path, the preloaded runtime
  #    and the filled kernel cache.
  e2e_started=$SECONDS
  e2e_bin=$(test_binary ssr)
  e2e_log=$(mktemp)
  if [ -x "$e2e_bin" ]; then
    bin=$e2e_bin run_emulated target/gpu-emu/asan "$(gcc -print-file-name=libasan.so)" gpu_e2e:: \
      --test-threads=1 2>&1 | tee "$e2e_log"
    rc3=${PIPESTATUS[0]}
  else
    echo "gpu-emu: the ssr program's test binary was not built" >&2
    rc3=1
  fi
  set -e
  passed=$(grep -oE '[0-9]+ passed' "$log" | awk '{s += $1} END {print s + 0}')
  e2e_passed=$(grep -oE '[0-9]+ passed' "$e2e_log" | awk '{s += $1} END {print s + 0}')
  skipped=$(cat "$log" "$e2e_log" | grep -c '^skipping ' || true)
  rm -rf "$log" "$e2e_log" "$cache"
  # One of the passes is the cache fill, not a test.
  echo "gpu-emu: $((passed - 1)) GPU tests passed on the emulated device (ssr-emu, ASan+UBSan), $skipped skipped (exit $rc1/$rc2)"
  echo "gpu-emu: $e2e_passed end-to-end runs of ssr passed on the emulated device in $((SECONDS - e2e_started)) s (exit $rc3)"
  [ "$rc1" = 0 ] && [ "$rc2" = 0 ] && [ "$rc3" = 0 ] && [ "$skipped" = 0 ] && [ "$passed" -gt 1 ] && [ "$e2e_passed" = 3 ]
  ;;
tsan)
  bash gpu-emu/build.sh target/gpu-emu/tsan tsan
  runtime=$(gcc -print-file-name=libtsan.so)
  SSR_KERNEL_CACHE=$(mktemp -d)
  export SSR_KERNEL_CACHE
  LD_LIBRARY_PATH="$PWD/$nvrtc_lib" "$bin" --include-ignored --exact gpu::emulator::emulator_fill_kernel_cache
  # 1. The kernels as they are: the reduction tests run race-free.
  run_emulated target/gpu-emu/tsan "$runtime" gpu::training::adamw --test-threads=1
  # 2. optim.cu with the reduction's __syncthreads removed: TSan must report the race.
  broken=$(mktemp -d)
  cp kernels/*.cu "$broken/"
  python3 - "$broken/optim.cu" <<'PY'
import re, sys
p = sys.argv[1]
s = open(p).read()
body = s[s.index("sum_squares"):]
i = body.index("__syncthreads();", body.index("for ("))
s = s[: s.index("sum_squares")] + body[:i] + "/* __syncthreads() removed */" + body[i + len("__syncthreads();"):]
open(p, "w").write(s)
PY
  bash gpu-emu/build.sh target/gpu-emu/tsan-broken tsan "$broken"
  log=$(mktemp)
  set +e
  run_emulated target/gpu-emu/tsan-broken "$runtime" gpu::training::adamw --test-threads=1 >"$log" 2>&1
  set -e
  # The report must be the kernel's own race (sum_squares in optim.cu), not any other.
  if grep -A12 "WARNING: ThreadSanitizer: data race" "$log" | grep -q "sum_squares"; then
    grep -m1 -A8 "WARNING: ThreadSanitizer: data race" "$log"
    echo "gpu-emu-tsan: clean kernels race-free; TSan caught the kernel whose __syncthreads was removed"
  else
    tail -30 "$log"
    echo "gpu-emu-tsan: TSan did NOT catch the removed __syncthreads" >&2
    exit 1
  fi
  rm -rf "$broken" "$log"
  ;;
*)
  echo "usage: $0 [asan|ci|tsan]" >&2
  exit 2
  ;;
esac
