# Thin recipes: each delegates to cargo, the ssr program or a script. `just --list` shows them.

# Install system packages, the wasm target, Python test tools and the embedded model (idempotent).
setup:
    bash scripts/setup.sh

# Build the local container images the image tests use (no registry; cached by content key).
test-images:
    bash scripts/test_images.sh

# Build the WASM tools (a separate workspace, target wasm32-wasip2).
tools:
    cargo build --manifest-path tools-wasm/Cargo.toml --target wasm32-wasip2 --release

# Run every test of the workspace (GPU tests skip with a printed reason where there is no GPU),
# then every GPU test and the ssr program's end-to-end GPU runs (tests/it/gpu_e2e) on the emulated
# CUDA device under ASan+UBSan (scripts/gpu_emu.sh ci),
# then the Python package of the environment server (python/tests, Ray two-node test included).
test: tools
    cargo test --workspace
    bash scripts/gpu_emu.sh ci
    bash scripts/env_test.sh

# The main job: self-play on the bundled example repository with the embedded model.
selfplay *args:
    cargo run -- selfplay {{args}}

# The learning experiment (issue 14): bugs, split, demos, SFT warm start, held-out evaluations, self-play with training, the before/after table and report (configs/learn.toml; `--quick`: the CI-sized run; `--device cuda` trains on the GPU).
learn *args:
    cargo build --release --bin ssr
    SSR_BIN=target/release/ssr bash scripts/learn.sh {{args}}

# Benchmarks (sandbox, tools, model, verify, kernels, train), each against a same-run baseline.
bench what="sandbox":
    cargo run --release -- bench {{what}}

# Parity of the embedded model with the independent numpy reference.
parity:
    cargo test -p ssr-trainer --test it parity -- --nocapture

# Build the binaries a lent GPU machine runs (no Rust there): target/gpu-carry/.
gpu-prepare:
    bash scripts/gpu_check.sh prepare

# On the GPU machine: GPU parity tests and the kernel and training benchmarks.
gpu-test:
    bash scripts/gpu_check.sh run

# On the GPU machine: the kernel benchmark and one training step under nsys (ncu where nsys is absent).
profile:
    bash scripts/gpu_check.sh profile

# Without a GPU: compile every CUDA kernel source with NVRTC (from PyPI) for sm_90 and check each kernel's PTX entry.
nvrtc-check:
    python3 -m venv /tmp/nvrtc-venv && /tmp/nvrtc-venv/bin/pip install -q nvidia-cuda-nvrtc==13.0.88
    LD_LIBRARY_PATH="$(ls -d /tmp/nvrtc-venv/lib/python3*/site-packages/nvidia/cu13/lib)" cargo test -p ssr-trainer --test it -- gpu::every_kernel --nocapture

# Builds the pinned corpus of real projects (corpus/corpus.toml) and plays each: injectors, true fixes, the README's table (long; outside CI).
corpus out="target/corpus" *args:
    cargo run -- corpus --file corpus/corpus.toml --out {{out}} {{args}}

# Without a GPU: every GPU test, then the ssr program's end-to-end GPU runs on the tiny model, on the emulated CUDA device (gpu-emu/, fake libcuda/libcublas/libnccl running kernels/*.cu on CPU threads) under ASan+UBSan; none may skip.
gpu-emu:
    bash scripts/gpu_emu.sh asan

# The emulated device under ThreadSanitizer, and proof that it catches a kernel whose __syncthreads was removed.
gpu-emu-tsan:
    bash scripts/gpu_emu.sh tsan

# `ssr selfplay --policy openai` against llama-cpp-python's server (refuses token-id prompts: text prompts, exact_tokens false); installs it from PyPI into target/llama-cpp-venv (builds from source, ~3.5 min; outside CI).
llama-cpp-check:
    bash scripts/llama_cpp_check.sh
