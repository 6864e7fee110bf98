#!/usr/bin/env bash
# The README's first command: on a Debian 12 machine (root), installs what is
# needed, builds, starts a private containerd and warmpoold in front of it,
# starts a pod through warmpoold the way kubelet would, and shows it. Ctrl-C
# stops everything it started and leaves nothing behind.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${WARMPOOL_BUILD_DIR:-$root/build}
export WARMPOOL_BUILD_DIR=$build

"$root/scripts/deps.sh"
"$root/scripts/build.sh" --target warmpoold kubelet-sim

bed=$(mktemp -d /tmp/wpd.XXXXXX)
harness=$root/test/harness/containerd.sh
wp_pid=
sim_pid=
cleanup() {
  trap - EXIT INT TERM
  echo
  echo "demo: stopping"
  [[ -n "$sim_pid" ]] && kill -TERM "$sim_pid" 2>/dev/null && wait "$sim_pid" 2>/dev/null
  [[ -n "$wp_pid" ]] && kill -TERM "$wp_pid" 2>/dev/null && wait "$wp_pid" 2>/dev/null
  "$harness" stop "$bed"
  echo "demo: everything stopped and removed"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "demo: starting a private containerd in $bed"
"$harness" start "$bed" >/dev/null
# shellcheck disable=SC1091
source "$bed/env"

cat >"$bed/warmpool.toml" <<TOML
[daemon]
listen    = "$bed/warmpool.sock"
upstream  = "$WP_TEST_CONTAINERD_SOCK"
state_dir = "$bed/state"
admin     = "$bed/admin.sock"
log_level = "info"
TOML
echo "demo: starting warmpoold (config $bed/warmpool.toml)"
"$build/daemon/warmpoold" --config "$bed/warmpool.toml" &
wp_pid=$!
for _ in $(seq 200); do [[ -S "$bed/warmpool.sock" ]] && break; sleep 0.05; done
[[ -S "$bed/warmpool.sock" ]] || { echo "demo: warmpoold did not start" >&2; exit 1; }

echo "demo: kubelet's call sequence for one pod, through warmpoold"
"$build/test/kubelet-sim" --endpoint "$bed/warmpool.sock" --name demo --hold &
sim_pid=$!
wait "$sim_pid" || true
sim_pid=
