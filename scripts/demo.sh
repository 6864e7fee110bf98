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
"$root/scripts/build.sh" --target warmpoold warmpoolctl kubelet-sim

bed=$(mktemp -d /tmp/wpd.XXXXXX)
harness=$root/test/harness/containerd.sh
wp_pid=
ctl=()
sim_pid=
cleanup() {
  trap - EXIT INT TERM
  set +e  # every step runs, whatever the one before it returned
  echo
  echo "demo: stopping"
  [[ -n "$sim_pid" ]] && kill -TERM "$sim_pid" 2>/dev/null && wait "$sim_pid" 2>/dev/null
  if [[ -n "$wp_pid" ]]; then
    # Drain the pool (reload without it) so nothing is left, then stop.
    sed -i '/^\[\[pool\]\]/,$d' "$bed/warmpool.toml"
    kill -HUP "$wp_pid" 2>/dev/null
    for _ in $(seq 200); do
      "${ctl[@]}" entries 2>/dev/null | grep -q '^no entries' && break
      sleep 0.05
    done
    kill -TERM "$wp_pid" 2>/dev/null && wait "$wp_pid" 2>/dev/null
  fi
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
pool_cgroup_parent = "$WP_TEST_CGROUP_PARENT/pools"
# network = "late" (the default): entries carry the bed's placeholder network;
# the pod's own is bound at hand-off from the bed's CNI config.
late_runtime_handler = "$WP_TEST_LATE_RUNTIME_HANDLER"
cni_conf_dir = "$WP_TEST_CNI_CONF_DIR"
cni_bin_dir  = "$WP_TEST_CNI_BIN_DIR"

# A sandbox pool: pods naming no pool get a frozen, networked sandbox.
[[pool]]
name    = "any"
size    = 1
default = true
[pool.sandbox]
dns = { servers = ["127.0.0.1"] }
TOML
echo "demo: starting warmpoold (config $bed/warmpool.toml)"
# Its own session: Ctrl-C reaches the demo, which drains the pool first.
setsid "$build/daemon/warmpoold" --config "$bed/warmpool.toml" &
wp_pid=$!
ctl=("$build/daemon/warmpoolctl" --admin "$bed/admin.sock")
for _ in $(seq 600); do
  "${ctl[@]}" pools 2>/dev/null | grep -qE '^any +1 +1 ' && break
  sleep 0.05
done
"${ctl[@]}" pools

echo
echo "demo: one pod cold, straight to containerd"
"$build/test/kubelet-sim" --endpoint "$WP_TEST_CONTAINERD_SOCK" --name cold
echo
echo "demo: the same pod through warmpoold: it gets the frozen sandbox"
"$build/test/kubelet-sim" --endpoint "$bed/warmpool.sock" --name warm --hold &
sim_pid=$!
wait "$sim_pid" || true
sim_pid=
