#!/usr/bin/env bash
# systemd.sh start|stop|leakcheck DIR
# systemd.sh exec DIR CMD [ARGS...]
#
# A "systemd node" for the tests of the systemd cgroup driver: a real systemd
# (the machine's own /lib/systemd/systemd) booted as PID 1 of its own PID,
# mount and cgroup namespaces, with a private containerd (containerd.sh, with
# SystemdCgroup = true, i.e. runc's systemd driver) running inside it. Inside
# the node everything looks like a production node: /proc/1 is systemd, the
# cgroup hierarchies are mounted at /sys/fs/cgroup with systemd's root cgroup
# as their root, systemd's API is on /run/systemd/private (root only, no
# dbus-daemon: runc and warmpoold both fall back to it).
#
# What a run owns (all removed by `stop`):
#   cgroup    /wp-sd-<id> in every host hierarchy: the node's cgroup
#             namespace root (systemd's -.slice); <id> = sha256(DIR)[:8]
#   DIR.sd/   node bookkeeping: boot script, unit dir, console log, pid, the
#             `enter` wrapper
#   DIR       the containerd bed (see containerd.sh), started inside the node
# The node shares the host's network namespace (the bed's bridge, subnet and
# iptables chain are allocated through the same registry as other beds:
# /run/warmpool-test is bind-mounted into the node's private /run).
#
# systemd boots only wp-node.target from a private unit directory
# (SYSTEMD_UNIT_PATH): no getty, journald, udev or tmpfiles touch the host.
# Its console is a file (DIR.sd/console.log), not the machine's console.
#
#   start DIR      boot the node, start containerd inside, write DIR/env
#                  (containerd.sh's variables plus WP_TEST_SYSTEMD_*).
#   exec DIR CMD   run CMD inside the node (in its PID, mount and cgroup
#                  namespaces, in the node's "harness" cgroup, with DIR/env
#                  loaded). DIR.sd/enter is the same as a standalone script.
#   leakcheck DIR  containerd.sh leakcheck inside the node, plus every
#                  systemd unit the tests may have left: cri-containerd-*,
#                  warmpool*, kubepods* (exit 1 and one LEAK line each).
#   stop DIR       containerd.sh stop inside the node, kill the node's
#                  systemd (and so its PID namespace), remove its cgroups and
#                  DIR.sd.
#                  Idempotent; safe after a failed start.
set -euo pipefail

log() { echo "systemd.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }
usage() {
  sed -n '2,3p' "${BASH_SOURCE[0]}" | sed 's/^# //' >&2
  exit 2
}

[[ $# -ge 2 ]] || usage
CMD=$1
DIR=${2%/}
shift 2
[[ "$DIR" == /* && "$DIR" =~ ^/[A-Za-z0-9._/-]+$ ]] || die "DIR must be an absolute path of [A-Za-z0-9._/-]: $DIR"
[[ $(id -u) -eq 0 ]] || die "must run as root"

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly HERE
readonly BED=$HERE/containerd.sh
readonly SYSTEMD=/lib/systemd/systemd
ID=$(printf '%s' "$DIR" | sha256sum | cut -c1-8)
readonly ID
readonly NODE_CG=/wp-sd-$ID
readonly SD=$DIR.sd
readonly PIDFILE=$SD/pid
readonly BOOT_TIMEOUT=${WP_TEST_START_TIMEOUT:-30}

# "mountpoint<TAB>fstype<TAB>superoptions" of every host cgroup hierarchy.
cgroup_hierarchies() {
  local mp rest fstype opts
  while read -r _ _ _ _ mp rest; do
    fstype=${rest#* - }
    opts=${fstype#* * }
    fstype=${fstype%% *}
    [[ "$fstype" == cgroup || "$fstype" == cgroup2 ]] || continue
    printf '%s\t%s\t%s\n' "$mp" "$fstype" "$opts"
  done </proc/self/mountinfo
}
cgroup_mounts() { cgroup_hierarchies | cut -f1; }

# Host pid of the node's systemd, if it runs.
node_pid() {
  local pid
  [[ -f "$PIDFILE" ]] || return 1
  pid=$(<"$PIDFILE")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ "$(cat /proc/"$pid"/comm 2>/dev/null)" == systemd ]] || return 1
  echo "$pid"
}

in_node() { "$SD/enter" "$@"; }

node_running() {
  local state
  state=$(in_node systemctl is-system-running 2>/dev/null || true)
  [[ "$state" == running || "$state" == degraded ]]
}

# Creates $1 in every hierarchy (cpuset levels inherit cpus and mems).
make_cgroup() {
  local mp
  for mp in $(cgroup_mounts); do
    mkdir -p "$mp$1"
    if [[ -f "$mp$1/cpuset.cpus" ]]; then
      [[ -n "$(<"$mp$1/cpuset.cpus")" ]] || cat "$(dirname "$mp$1")/cpuset.cpus" >"$mp$1/cpuset.cpus"
      [[ -n "$(<"$mp$1/cpuset.mems")" ]] || cat "$(dirname "$mp$1")/cpuset.mems" >"$mp$1/cpuset.mems"
    fi
  done
}

remove_node_cgroups() {
  local mp pid try
  for mp in $(cgroup_mounts); do
    [[ -d "$mp$NODE_CG" ]] || continue
    [[ -w "$mp$NODE_CG/freezer.state" ]] && echo THAWED >"$mp$NODE_CG/freezer.state" 2>/dev/null
    for pid in $(find "$mp$NODE_CG" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u); do
      kill -9 "$pid" 2>/dev/null || true
    done
  done
  for try in $(seq 50); do
    for mp in $(cgroup_mounts); do
      [[ -d "$mp$NODE_CG" ]] && find "$mp$NODE_CG" -depth -type d -exec rmdir {} \; 2>/dev/null
    done
    local left=0
    for mp in $(cgroup_mounts); do [[ -d "$mp$NODE_CG" ]] && left=1; done
    ((left == 0)) && return 0
    sleep 0.1
  done
  log "warning: could not remove cgroup $NODE_CG"
  return 1
}

write_scripts() {
  local mp fstype opts
  mkdir -p "$SD/units" "$SD/registry"
  cat >"$SD/units/wp-node.target" <<EOF
[Unit]
Description=warmpool test node ($DIR)
EOF
  : >"$SD/console.log"
  # Runs as PID 1 of the new namespaces, then becomes systemd.
  {
    echo '#!/bin/sh'
    echo "# Generated by test/harness/systemd.sh for $DIR."
    echo 'set -e'
    echo "mount --rbind /run/warmpool-test $SD/registry"
    echo 'mount -t tmpfs -o mode=755,nosuid,nodev tmpfs /run'
    echo 'mkdir -p /run/warmpool-test'
    echo "mount --move $SD/registry /run/warmpool-test"
    echo 'mount -t tmpfs -o mode=755,nosuid,nodev,noexec tmpfs /sys/fs/cgroup'
    while IFS=$'\t' read -r mp fstype opts; do
      echo "mkdir -p $mp"
      if [[ "$fstype" == cgroup2 ]]; then
        echo "mount -t cgroup2 cgroup2 $mp"
      else
        opts=$(tr ',' '\n' <<<"$opts" | grep -vx 'rw\|ro' | paste -sd, -)
        [[ "$opts" == name=* ]] && opts=none,$opts
        echo "mount -t cgroup -o $opts cgroup $mp"
      fi
    done < <(cgroup_hierarchies)
    echo "mount --bind $SD/console.log /dev/console"
    echo "exec env -i container=warmpool-test SYSTEMD_UNIT_PATH=$SD/units $SYSTEMD --unit=wp-node.target --show-status=false"
  } >"$SD/boot.sh"
  chmod +x "$SD/boot.sh"
}

write_enter() {
  local pid=$1 mp
  {
    echo '#!/bin/sh'
    echo "# Runs a command inside the systemd node of $DIR (test/harness/systemd.sh)."
    for mp in $(cgroup_mounts); do
      # (systemd prunes empty cgroups it does not know: make it again.)
      echo "mkdir -p $mp$NODE_CG/harness 2>/dev/null; echo \$\$ >$mp$NODE_CG/harness/cgroup.procs"
    done
    echo "[ -f $DIR/env ] && { set -a; . $DIR/env; set +a; }"
    echo "export WP_TEST_IN_SYSTEMD_NODE=1"
    echo "exec nsenter -t $pid -p -m -C --wd=\"\$PWD\" -- \"\$@\""
  } >"$SD/enter"
  chmod +x "$SD/enter"
}

boot_failed() {
  local rc=$?
  trap - EXIT
  ((rc == 0)) && return 0
  log "start failed (exit $rc); node console:"
  tail -n 30 "$SD/console.log" >&2 2>/dev/null || true
  tail -n 30 "$SD/boot.log" >&2 2>/dev/null || true
  if [[ "${WP_TEST_KEEP_ON_FAILURE:-0}" == 1 ]]; then
    log "WP_TEST_KEEP_ON_FAILURE=1: leaving the node; run: $0 stop $DIR"
  else
    (do_stop) || true
  fi
  exit "$rc"
}

do_start() {
  local tool launcher pid
  for tool in unshare nsenter systemctl "$SYSTEMD"; do
    command -v "$tool" >/dev/null || die "missing $tool: run scripts/deps.sh"
  done
  if node_pid >/dev/null; then die "a node for $DIR runs already (pid $(node_pid)); run: $0 stop $DIR"; fi
  mkdir -p "$SD" /run/warmpool-test
  trap boot_failed EXIT
  write_scripts
  make_cgroup "$NODE_CG"
  make_cgroup "$NODE_CG/harness"

  # The launcher joins the node's cgroup first: the cgroup namespace is rooted
  # where unshare(2) is called.
  (
    for mp in $(cgroup_mounts); do echo "$BASHPID" >"$mp$NODE_CG/cgroup.procs"; done
    exec setsid unshare --pid --mount --cgroup --fork --mount-proc --propagation private \
      "$SD/boot.sh" </dev/null >"$SD/boot.log" 2>&1
  ) &
  launcher=$!
  local deadline=$((SECONDS + BOOT_TIMEOUT))
  pid=
  until [[ -n "$pid" && "$(cat /proc/"$pid"/comm 2>/dev/null)" == systemd ]]; do
    kill -0 "$launcher" 2>/dev/null || die "the node exited during boot (see $SD/boot.log)"
    ((SECONDS < deadline)) || die "systemd did not start within ${BOOT_TIMEOUT}s"
    sleep 0.05
    pid=$(pgrep -P "$launcher" | head -n1 || true)
  done
  echo "$pid" >"$PIDFILE"
  write_enter "$pid"
  until node_running; do
    node_pid >/dev/null || die "systemd exited during boot (see $SD/console.log)"
    ((SECONDS < deadline)) || die "systemd did not reach running within ${BOOT_TIMEOUT}s: $(in_node systemctl is-system-running 2>&1 || true)"
    sleep 0.05
  done
  log "systemd $(in_node systemctl --version | head -n1 | cut -d' ' -f2) is PID 1 of node $DIR (host pid $pid, cgroup $NODE_CG)"

  WP_TEST_SYSTEMD_CGROUP=1 in_node "$BED" start "$DIR"
  cat >>"$DIR/env" <<EOF
# Added by test/harness/systemd.sh: this bed runs inside a systemd node.
export WP_TEST_SYSTEMD_ENTER=$SD/enter
export WP_TEST_SYSTEMD_NODE_CGROUP=$NODE_CG
export WP_TEST_SYSTEMD_CGROUP=1
EOF
  trap - EXIT
  log "node ready; run tests inside it with: $SD/enter CMD (or export WP_TEST_SYSTEMD_ENTER=$SD/enter)"
}

do_exec() {
  [[ $# -ge 1 ]] || usage
  node_pid >/dev/null || die "no node runs for $DIR"
  exec "$SD/enter" "$@"
}

do_leakcheck() {
  local leaks=0 unit
  node_pid >/dev/null || die "no node runs for $DIR"
  in_node "$BED" leakcheck "$DIR" || leaks=$((leaks + 1))
  while read -r unit _; do
    [[ -n "$unit" ]] || continue
    echo "leakcheck: LEAK: systemd unit $unit ($(in_node systemctl show -p ActiveState --value "$unit"))"
    leaks=$((leaks + 1))
  done < <(in_node systemctl list-units --all --plain --no-legend --no-pager \
    'cri-containerd-*' 'warmpool*' 'kubepods*' 2>/dev/null)
  ((leaks == 0)) || { echo "leakcheck: systemd node $DIR is not clean"; return 1; }
  echo "leakcheck: systemd node clean ($DIR)"
}

do_stop() {
  local pid
  if pid=$(node_pid); then
    [[ -x "$SD/enter" ]] || write_enter "$pid"
    # containerd.sh restores ip_forward when it sees no containerd, but inside
    # the node it cannot see the host's: keep the (shared) setting as it was
    # while any containerd still runs on the machine.
    local forward
    forward=$(cat /proc/sys/net/ipv4/ip_forward)
    in_node "$BED" stop "$DIR" || log "warning: containerd.sh stop inside the node failed"
    if pgrep -x containerd >/dev/null; then echo "$forward" >/proc/sys/net/ipv4/ip_forward; fi
    # The node boots no poweroff.target (its unit dir has only wp-node.target),
    # so it goes with SIGKILL: the kernel then kills every process of its PID
    # namespace; its cgroups are removed below.
    kill -9 "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 20))
    while [[ -e /proc/$pid ]] && ((SECONDS < deadline)); do sleep 0.1; done
  elif [[ -d "$DIR" ]]; then
    "$BED" stop "$DIR" || true
  fi
  remove_node_cgroups || true
  rm -rf --one-file-system "$SD"
  log "stopped node $DIR"
}

case "$CMD" in
  start) do_start ;;
  stop) do_stop ;;
  exec) do_exec "$@" ;;
  leakcheck) do_leakcheck ;;
  *) usage ;;
esac
