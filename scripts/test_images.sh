#!/usr/bin/env bash
# Builds the local container images the image-environment tests run on, once per machine:
# no registry can be reached, so nothing is pulled.
#   ssr-test-py:latest        a Debian bookworm minbase root with its own python3, pytest and git
#                             (git: the game takes a solver's workspace diff inside the image,
#                             as in SWE-bench's images)
#   ssr-test-swebench:latest  the same plus a SWE-bench-layout instance (scripts/images/
#                             swebench-demo): the repository at /testbed, its dependency
#                             installed only inside the image, the benchmark's own bug in it
# Both carry the label ssr.key, a hash of this script and scripts/images/: when the images
# already carry the current key nothing is done (idempotent; CI runs it from setup.sh).
# Without an engine that answers it says so and exits 0: the image tests then skip.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\033[1m[test-images]\033[0m %s\n' "$*"; }
engine=${SSR_ENGINE:-docker}
if ! command -v "$engine" >/dev/null || ! "$engine" info >/dev/null 2>&1; then
  say "no $engine engine answers here: test images not built (image tests will skip)"
  exit 0
fi
key=$( { cat scripts/test_images.sh; find scripts/images -type f | LC_ALL=C sort | xargs sha256sum; } | sha256sum | cut -c1-16)
base=ssr-test-py:latest
swe=ssr-test-swebench:latest
label() { "$engine" image inspect --format '{{index .Config.Labels "ssr.key"}}' "$1" 2>/dev/null || true; }
if [ "$(label "$base")" = "$key" ] && [ "$(label "$swe")" = "$key" ]; then
  say "up to date: $base, $swe (key $key)"
  exit 0
fi
command -v debootstrap >/dev/null || { say "debootstrap is missing (scripts/setup.sh installs it)"; exit 1; }
start=$(date +%s)
work=$(mktemp -d /var/tmp/ssr-test-images-XXXXXX)
cleanup() { rm -rf "$work"; "$engine" rm -f "ssr-test-images-$$" >/dev/null 2>&1 || true; }
trap cleanup EXIT
say "debootstrap bookworm minbase + python3, pytest, git (about 40 s)"
debootstrap --variant=minbase --include=python3,python3-pytest,git bookworm "$work/root" \
  http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log"; exit 1; }
# Package caches are of no use inside a test image.
rm -rf "$work/root/var/cache/apt/archives/"*.deb "$work/root/var/lib/apt/lists/"*
path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
say "import $base"
tar -C "$work/root" -c . | "$engine" import \
  --change "LABEL ssr.key=$key" --change "ENV PATH=$path" --change 'CMD ["bash"]' - "$base" >/dev/null
# The instance goes in as one small layer over the base.
say "commit $swe"
"$engine" create --name "ssr-test-images-$$" "$base" true >/dev/null
"$engine" cp scripts/images/swebench-demo/testbed "ssr-test-images-$$:/testbed"
"$engine" cp scripts/images/swebench-demo/site/tallyfmt.py \
  "ssr-test-images-$$:/usr/lib/python3/dist-packages/tallyfmt.py"
"$engine" commit --change "LABEL ssr.key=$key" --change 'WORKDIR /testbed' \
  "ssr-test-images-$$" "$swe" >/dev/null
say "built $base and $swe in $(( $(date +%s) - start )) s (key $key)"
