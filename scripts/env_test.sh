#!/usr/bin/env bash
# The Python side of `ssr env serve` (python/tests), against the real debug binary: the real
# openenv-core client over /ws, the episode API and the dispatcher, and the Ray two-node test.
# Everything runs inside a private network namespace with only loopback up (`unshare --net`):
# there Ray advertises 127.0.0.1, not the machine's external address. `just test` runs this.
# Without a namespace it exits 1, unless SSR_ENV_ALLOW_NO_NETNS=1 (then the Ray test skips,
# with a warning): the Ray test never skips silently.
# Extra arguments go to pytest (e.g. `-k openenv`).
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\033[1m[env-test]\033[0m %s\n' "$*"; }

venv=.venv-env
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import ssr_env, openenv, ray, pytest' 2>/dev/null; then
  say "no $venv with ssr_env, openenv-core, ray and pytest: run scripts/setup.sh (just setup)"
  exit 1
fi

netns=()
if unshare --net true 2>/dev/null; then
  netns=(unshare --net)
elif unshare --user --map-root-user --net true 2>/dev/null; then
  netns=(unshare --user --map-root-user --net)
elif [ "${SSR_ENV_ALLOW_NO_NETNS:-}" = 1 ]; then
  say "warning: cannot make a network namespace (no unshare rights); SSR_ENV_ALLOW_NO_NETNS=1, so the Ray test skips"
else
  # Why fail rather than skip: outside a namespace the Ray test skips, and a CI run
  # whose Ray test silently skipped would report the scale-out as tested.
  say "error: cannot make a network namespace: neither \`unshare --net\` nor \`unshare --user --map-root-user --net\` works here (no CAP_SYS_ADMIN, and unprivileged user namespaces are off: sysctl kernel.unprivileged_userns_clone / user.max_user_namespaces)."
  say "The Ray two-node test needs one. Set SSR_ENV_ALLOW_NO_NETNS=1 to run the other tests and skip it."
  exit 1
fi

cargo build -q -p ssr
export SSR_BIN="$PWD/target/debug/ssr"
export RAY_AUTH_MODE=disabled
# Ray's usage report and dashboard only cost time here.
export RAY_USAGE_STATS_ENABLED=0 RAY_DISABLE_DOCKER_CPU_WARNING=1

start=$(date +%s)
if [ ${#netns[@]} -gt 0 ]; then
  "${netns[@]}" -- sh -c 'ip link set lo up && SSR_ENV_NETNS=1 exec "$@"' sh \
    "$venv/bin/python" -m pytest -q -p no:cacheprovider python/tests "$@"
else
  "$venv/bin/python" -m pytest -q -p no:cacheprovider python/tests "$@"
fi
say "python/tests took $(( $(date +%s) - start )) s"
