#!/usr/bin/env bash
# Builds the emulated CUDA device into a folder: libcuda.so (the fake driver with every
# kernels/*.cu compiled in, one translation unit each), libcublas.so, libnccl.so, and
# `selftest` (the fiber scheduler's checks no kernel can provoke).
#
#   gpu-emu/build.sh OUT_DIR asan|tsan|plain [KERNELS_DIR]
#
# asan: AddressSanitizer + UndefinedBehaviorSanitizer, aborting on the first report;
# tsan: ThreadSanitizer. The Rust test binary stays uninstrumented and gets the runtime
# by LD_PRELOAD (scripts/gpu_emu.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$1
mode=${2:-asan}
kernels=${3:-$here/../kernels}
mkdir -p "$out/obj"
case "$mode" in
asan) san=(-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer) ;;
tsan) san=(-fsanitize=thread) ;;
plain) san=() ;;
*) echo "mode: asan|tsan|plain" >&2; exit 2 ;;
esac
cxx=(g++ -std=c++20 -O1 -g -fPIC -fvisibility=hidden -Wall -Wno-unused-function -Wno-unknown-pragmas -Wno-sign-compare "${san[@]}" -I"$here")
objs=()
pids=()
for cu in "$kernels"/*.cu; do
  name=$(basename "$cu" .cu)
  tu="$out/obj/kernels_$name.cc"
  # One translation unit per source, in its own namespace (two sources may both define
  # a helper such as bf16_to_f32), followed by the registration of each extern "C"
  # kernel under its name.
  {
    echo "#include \"cuda_emu.h\""
    echo "#include \"emu_runtime.h\""
    echo "namespace ssr_kernels_$name {"
    echo "#include \"$cu\""
    grep -oE 'extern "C" __global__ void [A-Za-z_][A-Za-z0-9_]*' "$cu" | awk '{print "SSR_EMU_KERNEL(" $5 ")"}'
    echo "}"
  } >"$tu"
  "${cxx[@]}" -c "$tu" -o "$out/obj/kernels_$name.o" &
  pids+=($!)
  objs+=("$out/obj/kernels_$name.o")
done
"${cxx[@]}" -c "$here/driver.cc" -o "$out/obj/driver.o" &
pids+=($!)
"${cxx[@]}" -c "$here/fibers.cc" -o "$out/obj/fibers.o" &
pids+=($!)
"${cxx[@]}" -O2 -c "$here/cublas.cc" -o "$out/obj/cublas.o" &
pids+=($!)
"${cxx[@]}" -c "$here/nccl.cc" -o "$out/obj/nccl.o" &
pids+=($!)
for p in "${pids[@]}"; do wait "$p"; done
"${cxx[@]}" -shared -Wl,-soname,libcuda.so -o "$out/libcuda.so" "$out/obj/driver.o" "$out/obj/fibers.o" "${objs[@]}" -lpthread
ln -sf libcuda.so "$out/libcuda.so.1"
"${cxx[@]}" -shared -Wl,-soname,libcublas.so -Wl,-rpath,'$ORIGIN' -o "$out/libcublas.so" "$out/obj/cublas.o" -L"$out" -lcuda
"${cxx[@]}" -shared -Wl,-soname,libnccl.so -Wl,-rpath,'$ORIGIN' -o "$out/libnccl.so" "$out/obj/nccl.o" -L"$out" -lcuda
# The fiber scheduler's own checks (selftest.cc), against the same driver objects.
"${cxx[@]}" -o "$out/selftest" "$here/selftest.cc" "$out/obj/driver.o" "$out/obj/fibers.o" -lpthread
echo "built the emulated device ($mode) in $out"
