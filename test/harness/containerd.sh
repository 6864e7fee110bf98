#!/usr/bin/env bash
# containerd.sh start|stop|leakcheck DIR
#
# A private containerd for warmpool's integration and end-to-end tests, kept
# entirely under DIR (an absolute path, e.g. from `mktemp -d`), plus the few
# host objects a pod network needs, each named after DIR so it can be removed
# precisely:
#   bridge        wpt<N> with subnet 10.231.<N>.0/24 (N allocated per run in
#                 /run/warmpool-test/net/, so concurrent runs do not clash)
#   iptables      chain WARMPOOL-TEST-<id> in filter, jumped from FORWARD:
#                 drops anything from the pod subnet to outside it
#   cgroups       /warmpool-test-<id> in every hierarchy: the cgroup parent
#                 tests must give their pods (WP_TEST_CGROUP_PARENT)
#   ip_forward    the CNI bridge plugin turns it on; stop turns it back off
#                 when no containerd at all runs any more
# where <id> is the first 8 hex digits of sha256(DIR).
# Pod network namespaces are NOT in /var/run/netns: the CRI plugin is told to
# keep them under its state dir (netns_mounts_under_state_dir), so every netns
# of this run is a mount under DIR and found exactly, even while other
# containerds on the machine create their own cni-* netns.
#
#   start DIR      builds the fixtures, writes the config, starts containerd,
#                  imports the pause and testapp images into namespace k8s.io,
#                  checks the CRI plugin loaded, writes DIR/env (shell exports).
#   stop DIR       removes every container, task and pod left, stops
#                  containerd, unmounts what is left under DIR, deletes this
#                  run's netns, bridge, iptables chain and cgroups, then DIR.
#                  Idempotent; safe after a failed start or a crashed run.
#   leakcheck DIR  with containerd running, lists what the tests left behind
#                  (containers, tasks, active snapshots, mounts, netns, cgroups,
#                  IP allocations, portmap rules, shims); exit 1 if anything.
#
# Environment (optional):
#   WP_TEST_FIXTURES        where test/fixtures/build.sh builds (default DIR/fixtures)
#   WP_TEST_START_TIMEOUT   seconds to wait for containerd (default 30)
#   WP_TEST_KEEP_ON_FAILURE=1  a failed start leaves DIR and containerd for
#                              inspection (run stop DIR afterwards)
#   WP_TEST_SYSTEMD_CGROUP=1   runc's systemd cgroup driver (SystemdCgroup =
#                              true); only inside a systemd node (systemd.sh)
set -euo pipefail

readonly PAUSE_IMAGE=localhost/warmpool/pause:test
readonly APP_IMAGE=localhost/warmpool/testapp:test
readonly CNI_BIN_DIR=/usr/lib/cni
readonly HOST_NETNS_DIR=/var/run/netns
readonly REGISTRY=/run/warmpool-test
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FIXTURES_SRC=$(cd "$HERE/../fixtures" && pwd)
PLACEHOLDER_SRC=$(cd "$HERE/../../daemon/cni_placeholder" && pwd)/warmpool-placeholder.c
readonly HERE FIXTURES_SRC PLACEHOLDER_SRC

log() { echo "containerd.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
  echo "usage: containerd.sh start|stop|leakcheck DIR   (DIR: absolute path)" >&2
  exit 2
}

# ---------------------------------------------------------------- basics ----

[[ $# -eq 2 ]] || usage
CMD=$1
DIR=${2%/}
[[ "$DIR" == /* ]] || die "DIR must be an absolute path: $2"
[[ "$DIR" =~ ^/[A-Za-z0-9._/-]+$ ]] || die "DIR may only contain [A-Za-z0-9._/-]: $DIR"
[[ "$DIR" != "/" && "$DIR" != *"/../"* && "$DIR" != *"/.." ]] || die "refusing DIR=$DIR"
# Unix socket paths (containerd.sock.ttrpc, runc's sockets) must stay < 108 bytes.
(( ${#DIR} <= 64 )) || die "DIR is too long for unix socket paths (max 64 chars): $DIR"

ID=$(printf '%s' "$DIR" | sha256sum | cut -c1-8)
readonly ID
readonly CHAIN=WARMPOOL-TEST-$ID
readonly CGROUP_PARENT=/warmpool-test-$ID
readonly NET_NAME=warmpool-test-$ID
readonly SOCK=$DIR/containerd.sock
readonly PIDFILE=$DIR/containerd.pid
readonly LOGFILE=$DIR/containerd.log
readonly HSTATE=$DIR/harness   # harness bookkeeping
readonly RUNC_ROOT=$DIR/runc
readonly IPAM_DIR=$DIR/cni/ipam
# The bed's CNI plugin dir: Debian's plugins (symlinks) plus warmpool's
# placeholder plugin, built here from daemon/cni_placeholder/.
readonly BED_CNI_BIN_DIR=$DIR/cni/bin
# network = "late" pools: containerd runtime handler LATE_HANDLER (runc, like
# the default) whose own CNI conf dir holds only the placeholder network.
readonly LATE_HANDLER=warmpool-late
readonly LATE_CNI_CONF_DIR=$DIR/cni/late.d
readonly NETNS_DIR=$DIR/state/io.containerd.grpc.v1.cri/netns
readonly START_TIMEOUT=${WP_TEST_START_TIMEOUT:-30}

[[ $(id -u) -eq 0 ]] || die "must run as root"

ctr_() { timeout 30 ctr --connect-timeout 5s -a "$SOCK" "$@"; }

# Polls "$@" until it succeeds or SECONDS_ elapse. Returns 1 on timeout.
wait_until() {
  local seconds=$1
  shift
  local deadline=$((SECONDS + seconds))
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.05
  done
}

containerd_pid() {
  local pid
  [[ -f "$PIDFILE" ]] || return 1
  pid=$(<"$PIDFILE")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ "$(cat /proc/"$pid"/comm 2>/dev/null)" == containerd ]] || return 1
  echo "$pid"
}
containerd_alive() { containerd_pid >/dev/null; }
containerd_answers() {
  [[ -S "$SOCK" ]] && timeout 10 ctr --connect-timeout 2s -a "$SOCK" version >/dev/null 2>&1
}
# Gone, or a zombie (its parent, maybe PID 1, reaps it when it gets to it).
pid_gone() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  stat=${stat##*) }
  [[ "${stat%% *}" == Z ]]
}

# Mount points under $1 (deepest first), from /proc/self/mountinfo.
mounts_under() {
  local prefix=$1 mp
  while read -r _ _ _ _ mp _; do
    mp=$(printf '%b' "${mp//\\/\\0}")   # mountinfo escapes ' ' as \040
    [[ "$mp" == "$prefix" || "$mp" == "$prefix"/* ]] && echo "$mp"
  done </proc/self/mountinfo | awk '{ print length($0) "\t" $0 }' | sort -rn | cut -f2-
}

# Every cgroup hierarchy mount point (v1 controllers and cgroup2).
cgroup_mounts() {
  local mp fstype rest
  while read -r _ _ _ _ mp rest; do
    fstype=${rest#* - }
    fstype=${fstype%% *}
    [[ "$fstype" == cgroup || "$fstype" == cgroup2 ]] && echo "$mp"
  done </proc/self/mountinfo
}

# ------------------------------------------------------ network registry ----
# /run/warmpool-test/net/<N> holds the DIR that owns bridge wpt<N> and subnet
# 10.231.<N>.0/24. Allocation is serialised with flock.

registry_lock() {
  mkdir -p "$REGISTRY/net"
  exec 8>"$REGISTRY/lock"
  flock -w 30 8 || die "could not lock $REGISTRY/lock"
}
registry_unlock() { exec 8>&-; }

# Prints our N, or nothing.
registry_find() {
  local f
  for f in "$REGISTRY"/net/*; do
    [[ -f "$f" && "$(<"$f")" == "$DIR" ]] && { basename "$f"; return 0; }
  done
  return 0
}

subnet_in_use() {
  local n=$1
  ip link show "wpt$n" >/dev/null 2>&1 && return 0
  [[ -n "$(ip -4 route show table all root "10.231.$n.0/24" 2>/dev/null)" ]] && return 0
  [[ -n "$(ip -4 route show match "10.231.$n.0/24" 2>/dev/null | grep -v '^default')" ]] && return 0
  ip -4 -o addr show | grep " 10\.231\.$n\." >/dev/null && return 0
  return 1
}

registry_alloc() {
  local n owner
  registry_lock
  n=$(registry_find)
  if [[ -z "$n" ]]; then
    for n in $(seq 0 255); do
      if [[ -f "$REGISTRY/net/$n" ]]; then
        owner=$(<"$REGISTRY/net/$n")
        [[ -d "$owner" ]] && continue          # a live (or unstopped) run
        rm -f "$REGISTRY/net/$n"               # stale: its DIR is gone
      fi
      subnet_in_use "$n" && continue
      echo "$DIR" >"$REGISTRY/net/$n"
      break
    done
    [[ -f "$REGISTRY/net/$n" && "$(<"$REGISTRY/net/$n")" == "$DIR" ]] \
      || { registry_unlock; die "no free 10.231.N.0/24 subnet for the pod network"; }
  fi
  registry_unlock
  echo "$n"
}

# -------------------------------------------------------------- netns -------

# Our pods' netns are nsfs mounts under $NETNS_DIR. As a safety net, a netns in
# /var/run/netns that holds an address of our pod subnet is ours too (a test
# that made one by hand); no other netns there is ever touched.
host_netns_with_our_ip() {
  local ns
  [[ -d "$HOST_NETNS_DIR" && -n "${NET_N:-}" ]] || return 0
  for ns in $(find "$HOST_NETNS_DIR" -maxdepth 1 -type f -printf '%f\n' | sort); do
    ip -n "$ns" -4 -o addr show 2>/dev/null | grep " inet 10\.231\.$NET_N\." >/dev/null && echo "$ns"
  done
  return 0
}

# ----------------------------------------------------------- cgroups --------

# Thaws every cgroup under $1 (v1 freezer.state and v2 cgroup.freeze), top-down.
thaw_tree() {
  local d
  [[ -d "$1" ]] || return 0
  while IFS= read -r d; do
    [[ -w "$d/freezer.state" ]] && echo THAWED >"$d/freezer.state" 2>/dev/null
    [[ -w "$d/cgroup.freeze" ]] && echo 0 >"$d/cgroup.freeze" 2>/dev/null
  done < <(find "$1" -type d)
  return 0
}

tree_procs() {
  [[ -d "$1" ]] || return 0
  find "$1" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -un
}
tree_empty() { [[ -z "$(tree_procs "$1")" ]]; }

# Thaws the cgroups a process is in (freezer v1 / unified), so SIGKILL lands.
thaw_pid() {
  local pid=$1 line hier path mp
  [[ -r "/proc/$pid/cgroup" ]] || return 0
  while IFS= read -r line; do
    hier=${line#*:}
    path=${hier#*:}
    hier=${hier%%:*}
    if [[ "$hier" == *freezer* ]]; then
      mp=$(cgroup_mounts | grep -m1 '/freezer$' || true)
      [[ -n "$mp" && -w "$mp$path/freezer.state" ]] && echo THAWED >"$mp$path/freezer.state" 2>/dev/null
    elif [[ -z "$hier" ]]; then
      for mp in $(cgroup_mounts); do
        [[ -w "$mp$path/cgroup.freeze" ]] && echo 0 >"$mp$path/cgroup.freeze" 2>/dev/null
      done
    fi
  done 2>/dev/null <"/proc/$pid/cgroup"
  return 0
}

# Kills every process under our cgroup parent and removes the cgroups.
remove_cgroup_parent() {
  local mp base pid ok=0
  for mp in $(cgroup_mounts); do
    base=$mp$CGROUP_PARENT
    [[ -d "$base" ]] || continue
    thaw_tree "$base"
    for pid in $(tree_procs "$base"); do kill -KILL "$pid" 2>/dev/null || true; done
    wait_until 10 tree_empty "$base" || log "warning: processes remain in $base: $(tree_procs "$base" | tr '\n' ' ')"
  done
  for mp in $(cgroup_mounts); do
    base=$mp$CGROUP_PARENT
    [[ -d "$base" ]] || continue
    # rmdir of a cgroup whose last task just exited can briefly fail: retry.
    if ! wait_until 10 rmdir_tree "$base"; then
      log "warning: could not remove cgroup $base"
      ok=1
    fi
  done
  return $ok
}
rmdir_tree() {
  find "$1" -depth -type d -exec rmdir {} + 2>/dev/null
  [[ ! -d "$1" ]]
}

# ----------------------------------------------------------- iptables -------

ipt() { iptables -w 10 "$@"; }

add_drop_chain() {
  local cidr=$1
  ipt -N "$CHAIN" 2>/dev/null || ipt -F "$CHAIN"
  ipt -A "$CHAIN" -s "$cidr" -d "$cidr" -j RETURN
  ipt -A "$CHAIN" -s "$cidr" -d 127.0.0.0/8 -j RETURN
  ipt -A "$CHAIN" -s "$cidr" -m comment --comment "warmpool test $DIR: no pod traffic off this machine" -j DROP
  ipt -C FORWARD -j "$CHAIN" 2>/dev/null || ipt -I FORWARD 1 -j "$CHAIN"
}

remove_drop_chain() {
  while ipt -C FORWARD -j "$CHAIN" 2>/dev/null; do ipt -D FORWARD -j "$CHAIN"; done
  if ipt -S "$CHAIN" >/dev/null 2>&1; then
    ipt -F "$CHAIN"
    ipt -X "$CHAIN"
  fi
}

# portmap rules (nat table) left for pods of our network: their comments carry
# the network name.
portmap_leftovers() { iptables -w 10 -t nat -S 2>/dev/null | grep -F -- "$NET_NAME" || true; }

remove_portmap_leftovers() {
  local rule chains c
  chains=$(portmap_leftovers | { grep -o -- '-j CNI-DN-[0-9a-f]*' || true; } | awk '{print $2}' | sort -u)
  while IFS= read -r rule; do
    [[ -n "$rule" && "$rule" == -A* ]] || continue
    eval "iptables -w 10 -t nat -D ${rule#-A }" 2>/dev/null || true
  done < <(portmap_leftovers)
  for c in $chains; do
    ipt -t nat -F "$c" 2>/dev/null || true
    ipt -t nat -X "$c" 2>/dev/null || true
  done
}

# ---------------------------------------------------------- cni config ------

write_cni_config() {
  local n=$1 bridge_conf portmap_conf
  mkdir -p "$DIR/cni/net.d" "$IPAM_DIR" "$HSTATE/cni-plugins"
  bridge_conf='{"type":"bridge","bridge":"wpt'$n'","isGateway":true,"ipMasq":false,"hairpinMode":true,"promiscMode":false,
    "ipam":{"type":"host-local","dataDir":"'$IPAM_DIR'",
      "ranges":[[{"subnet":"10.231.'$n'.0/24","gateway":"10.231.'$n'.1"}]],
      "routes":[{"dst":"0.0.0.0/0"}]}}'
  portmap_conf='{"type":"portmap","capabilities":{"portMappings":true}}'
  cat >"$DIR/cni/net.d/10-warmpool-test.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$NET_NAME",
  "plugins": [
    $bridge_conf,
    $portmap_conf
  ]
}
EOF
  # Single-plugin configs for a by-hand CNI DEL in stop (the CRI plugin brings
  # up each pod's lo itself).
  printf '{"cniVersion":"1.0.0","name":"%s",%s\n' "$NET_NAME" "${bridge_conf#\{}" >"$HSTATE/cni-plugins/bridge.json"
  printf '{"cniVersion":"1.0.0","name":"%s",%s\n' "$NET_NAME" "${portmap_conf#\{}" >"$HSTATE/cni-plugins/portmap.json"

  # The late handler's placeholder network and the plugin dir holding it.
  mkdir -p "$BED_CNI_BIN_DIR" "$LATE_CNI_CONF_DIR"
  local plugin
  for plugin in "$CNI_BIN_DIR"/*; do
    ln -sfn "$plugin" "$BED_CNI_BIN_DIR/$(basename "$plugin")"
  done
  "${CC:-gcc}" -static -O2 -Wall -o "$BED_CNI_BIN_DIR/warmpool-placeholder.tmp" "$PLACEHOLDER_SRC" \
    || die "compiling $PLACEHOLDER_SRC failed"
  mv -f "$BED_CNI_BIN_DIR/warmpool-placeholder.tmp" "$BED_CNI_BIN_DIR/warmpool-placeholder"
  cat >"$LATE_CNI_CONF_DIR/10-warmpool-placeholder.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "warmpool-placeholder",
  "plugins": [ { "type": "warmpool-placeholder" } ]
}
EOF
}

# Best-effort CNI DEL of a sandbox's network (what StopPodSandbox would do):
# frees its IP, portmap rules and veth.
cni_del() {
  local id=$1 netns=$2 plugin
  for plugin in portmap bridge; do
    CNI_COMMAND=DEL CNI_CONTAINERID=$id CNI_NETNS=$netns CNI_IFNAME=eth0 CNI_PATH=$CNI_BIN_DIR \
      timeout 20 "$CNI_BIN_DIR/$plugin" <"$HSTATE/cni-plugins/$plugin.json" >/dev/null 2>&1 || true
  done
}

# ---------------------------------------------------------- containerd ------

write_containerd_config() {
  mkdir -p "$DIR/root" "$DIR/state" "$DIR/opt" "$RUNC_ROOT"
  cat >"$DIR/config.toml" <<EOF
# Generated by test/harness/containerd.sh for $DIR. Do not edit.
version = 2
root = "$DIR/root"
state = "$DIR/state"
oom_score = 0
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = "$SOCK"

[ttrpc]
  address = "$SOCK.ttrpc"

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "$DIR/opt"

  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "$PAUSE_IMAGE"
    # Required here: these machines forbid lowering oom_score_adj.
    restrict_oom_score_adj = true
    enable_selinux = false
    # Pod netns as mounts under our state dir, not /var/run/netns: found and
    # removed exactly, whatever else runs on the machine.
    netns_mounts_under_state_dir = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    enable_tls_streaming = false
    disable_tcp_service = true

    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "$BED_CNI_BIN_DIR"
      conf_dir = "$DIR/cni/net.d"
      max_conf_num = 1

    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"

        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = $([[ "${WP_TEST_SYSTEMD_CGROUP:-0}" == 1 ]] && echo true || echo false)
          Root = "$RUNC_ROOT"

      # warmpool's network = "late" pools: runc as above, placeholder network.
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.$LATE_HANDLER]
        runtime_type = "io.containerd.runc.v2"
        cni_conf_dir = "$LATE_CNI_CONF_DIR"
        cni_max_conf_num = 1

        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.$LATE_HANDLER.options]
          SystemdCgroup = false
          Root = "$RUNC_ROOT"
EOF
}

write_env() {
  local n=$1 fixtures=$2
  cat >"$DIR/env.tmp" <<EOF
# Generated by test/harness/containerd.sh start $DIR
export WP_TEST_DIR=$DIR
export WP_TEST_CONTAINERD_SOCK=$SOCK
export WP_TEST_CONTAINERD_ROOT=$DIR/root
export WP_TEST_CONTAINERD_STATE=$DIR/state
export WP_TEST_CONTAINERD_CONFIG=$DIR/config.toml
export WP_TEST_CONTAINERD_LOG=$LOGFILE
export WP_TEST_RUNC_ROOT=$RUNC_ROOT
export WP_TEST_PAUSE_IMAGE=$PAUSE_IMAGE
export WP_TEST_APP_IMAGE=$APP_IMAGE
export WP_TEST_POD_CIDR=10.231.$n.0/24
export WP_TEST_POD_GATEWAY=10.231.$n.1
export WP_TEST_BRIDGE=wpt$n
export WP_TEST_CNI_NETWORK=$NET_NAME
export WP_TEST_CNI_CONF_DIR=$DIR/cni/net.d
export WP_TEST_CNI_BIN_DIR=$BED_CNI_BIN_DIR
export WP_TEST_LATE_RUNTIME_HANDLER=$LATE_HANDLER
export WP_TEST_LATE_CNI_CONF_DIR=$LATE_CNI_CONF_DIR
export WP_TEST_CGROUP_PARENT=$CGROUP_PARENT
export WP_TEST_FIXTURES=$fixtures
EOF
  mv -f "$DIR/env.tmp" "$DIR/env"
}

image_present() {
  ctr_ -n k8s.io images ls -q 2>/dev/null | grep -xF "$1" >/dev/null
}

cri_plugin_ok() {
  ctr_ plugins ls 2>/dev/null | awk '$1 == "io.containerd.grpc.v1" && $2 == "cri" { print $NF }' | grep -qx ok
}

start_failed() {
  local rc=$?
  trap - ERR EXIT
  ((rc == 0)) && return 0
  log "start failed (exit $rc)"
  if [[ -f "$LOGFILE" ]]; then
    log "last lines of $LOGFILE:"
    tail -n 30 "$LOGFILE" >&2 || true
  fi
  if [[ "${WP_TEST_KEEP_ON_FAILURE:-0}" == 1 ]]; then
    log "WP_TEST_KEEP_ON_FAILURE=1: leaving $DIR; run: $0 stop $DIR"
  else
    log "cleaning up (set WP_TEST_KEEP_ON_FAILURE=1 to keep $DIR)"
    (do_stop) || true
  fi
  exit "$rc"
}

do_start() {
  local tool n fixtures pid
  for tool in containerd ctr runc iptables ip flock sha256sum timeout; do
    command -v "$tool" >/dev/null || die "missing $tool: run scripts/deps.sh"
  done
  for tool in bridge host-local portmap loopback; do
    [[ -x "$CNI_BIN_DIR/$tool" ]] || die "missing CNI plugin $CNI_BIN_DIR/$tool: run scripts/deps.sh"
  done
  if containerd_alive; then
    die "a containerd for $DIR is already running (pid $(containerd_pid)); run: $0 stop $DIR"
  fi
  [[ ! -e "$DIR" || -d "$DIR" ]] || die "$DIR exists and is not a directory"

  mkdir -p "$DIR" "$HSTATE"
  trap start_failed EXIT

  fixtures=${WP_TEST_FIXTURES:-$DIR/fixtures}
  "$FIXTURES_SRC/build.sh" "$fixtures" >&2
  fixtures=$(cd "$fixtures" && pwd)

  n=$(registry_alloc)
  NET_N=$n
  echo "$n" >"$HSTATE/net"
  cat /proc/sys/net/ipv4/ip_forward >"$HSTATE/ip_forward.before"

  write_cni_config "$n"
  write_containerd_config
  add_drop_chain "10.231.$n.0/24"

  : >>"$LOGFILE"
  # setsid: containerd (and the shims it starts) must not get the signals
  # meant for the test runner's process group.
  (exec setsid containerd --config "$DIR/config.toml" </dev/null >>"$LOGFILE" 2>&1) &
  pid=$!
  echo "$pid" >"$PIDFILE"
  local deadline=$((SECONDS + START_TIMEOUT))
  until containerd_answers; do
    pid_gone "$pid" && die "containerd exited during start-up (see $LOGFILE)"
    ((SECONDS < deadline)) || die "containerd did not answer on $SOCK within ${START_TIMEOUT}s"
    sleep 0.05
  done
  containerd_alive || die "pid $pid is not containerd"

  wait_until "$START_TIMEOUT" cri_plugin_ok \
    || die "CRI plugin not loaded: $(ctr_ plugins ls 2>&1 | grep -i cri || true)"

  local image tar
  for tar in "$fixtures/pause.tar" "$fixtures/testapp.tar"; do
    ctr_ -n k8s.io images import "$tar" >&2 || die "importing $tar failed"
  done
  for image in "$PAUSE_IMAGE" "$APP_IMAGE"; do
    image_present "$image" || die "image $image missing after import"
  done

  write_env "$n" "$fixtures"
  trap - EXIT
  log "containerd pid $pid on $SOCK; pods: 10.231.$n.0/24 on wpt$n; cgroup parent $CGROUP_PARENT"
  log "environment: source $DIR/env"
}

# ---------------------------------------------------------------- stop ------

# Container ids of our containerd, as "namespace id" lines.
list_containers() {
  local ns
  for ns in $(ctr_ namespaces ls -q 2>/dev/null); do
    ctr_ -n "$ns" containers ls -q 2>/dev/null | sed "s|^|$ns |"
  done
}

task_exists() { ctr_ -n "$1" tasks ls -q 2>/dev/null | grep -xF "$2" >/dev/null; }
task_gone() { ! task_exists "$@"; }
container_exists() { ctr_ -n "$1" containers ls -q 2>/dev/null | grep -xF "$2" >/dev/null; }

# Removes every task and container through containerd, tearing down pod
# networks on the way.
remove_through_containerd() {
  local ns id info netns pid mp out
  # Thaw everything first: a shim serves all containers of a pod, and killing
  # one task while another of its pod is frozen can hang that shim.
  for ns in $(ctr_ namespaces ls -q 2>/dev/null); do
    for pid in $(ctr_ -n "$ns" tasks ls 2>/dev/null | awk 'NR > 1 && $2 > 0 { print $2 }'); do
      thaw_pid "$pid"
    done
  done
  for mp in $(cgroup_mounts); do thaw_tree "$mp$CGROUP_PARENT"; done

  while read -r ns id; do
    [[ -n "$id" ]] || continue
    info=$(ctr_ -n "$ns" containers info "$id" 2>/dev/null || true)
    netns=$(grep -o '"[^"]*/netns/cni-[0-9a-f-]*"' <<<"$info" | head -1 | tr -d '"' || true)
    if [[ -n "$netns" ]]; then
      [[ "$netns" == "$HOST_NETNS_DIR"/* ]] && OUR_HOST_NETNS+=("$(basename "$netns")")
      cni_del "$id" "$netns"
    fi
    if task_exists "$ns" "$id"; then
      # The CRI plugin deletes a task itself when it sees it exit, so ctr can
      # lose that race ("cannot delete a deleted process"): judge by the result.
      ctr_ -n "$ns" tasks delete -f "$id" >/dev/null 2>&1 || true
      wait_until 10 task_gone "$ns" "$id" || log "warning: could not delete task $ns/$id"
    fi
    if ! out=$(ctr_ -n "$ns" containers delete "$id" 2>&1) && container_exists "$ns" "$id"; then
      log "warning: could not delete container $ns/$id: $out"
    fi
  done < <(list_containers)
}

stop_containerd() {
  local pid
  pid=$(containerd_pid) || return 0
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_until 15 pid_gone "$pid"; then
    log "warning: containerd (pid $pid) ignored SIGTERM for 15s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait_until 10 pid_gone "$pid" || die "containerd (pid $pid) survived SIGKILL"
  fi
}

# Shim processes serving our containerd: argv[0] is a containerd-shim and the
# argument after -address is our socket.
our_shims() {
  local p
  local -a argv
  for p in /proc/[0-9]*; do
    { mapfile -d '' -t argv <"$p/cmdline"; } 2>/dev/null || continue
    [[ ${#argv[@]} -gt 0 && "$(basename "${argv[0]}")" == containerd-shim* ]] || continue
    local i
    for ((i = 1; i + 1 < ${#argv[@]}; i++)); do
      if [[ "${argv[i]}" == -address && "${argv[i + 1]}" == "$SOCK" ]]; then
        echo "${p#/proc/}"
        break
      fi
    done
  done
  return 0
}

kill_shims() {
  local pid args ns id sock
  local -a pids=()
  for pid in $(our_shims); do
    args=$({ tr '\0' '\n' <"/proc/$pid/cmdline"; } 2>/dev/null) || continue
    ns=$(grep -A1 -x -- '-namespace' <<<"$args" | tail -n1 || true)
    id=$(grep -A1 -x -- '-id' <<<"$args" | tail -n1 || true)
    kill -KILL "$pid" 2>/dev/null || true
    pids+=("$pid")
    # The shim's socket: /run/containerd/s/sha256(address/namespace/id).
    if [[ -n "$ns" && -n "$id" ]]; then
      sock=/run/containerd/s/$(printf '%s' "$SOCK/$ns/$id" | sha256sum | cut -d' ' -f1)
      rm -f "$sock"
    fi
  done
  for pid in "${pids[@]}"; do
    wait_until 5 pid_gone "$pid" || log "warning: shim $pid survived SIGKILL"
  done
}

# Containers runc still knows about under our private runc root.
kill_runc_containers() {
  local nsdir id
  [[ -d "$RUNC_ROOT" ]] || return 0
  for nsdir in "$RUNC_ROOT"/*/; do
    [[ -d "$nsdir" ]] || continue
    for id in $(runc --root "$nsdir" list -q 2>/dev/null); do
      timeout 20 runc --root "$nsdir" delete -f "$id" >/dev/null 2>&1 \
        || log "warning: runc delete -f $id failed"
    done
  done
}

unmount_under() {
  local mp _
  for _ in 1 2 3 4 5; do
    [[ -n "$(mounts_under "$1")" ]] || return 0
    while IFS= read -r mp; do
      [[ -n "$mp" ]] || continue
      umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || true
    done < <(mounts_under "$1")
  done
  [[ -z "$(mounts_under "$1")" ]]
}

do_stop() {
  local n ns
  n=$(cat "$HSTATE/net" 2>/dev/null || true)
  [[ -n "$n" ]] || n=$(registry_find)
  NET_N=${n:-none}
  # Netns in /var/run/netns are ours only if recognisable, so look before the
  # CNI teardown below removes their addresses.
  mapfile -t OUR_HOST_NETNS < <(host_netns_with_our_ip)

  if containerd_alive && containerd_answers; then
    remove_through_containerd
  fi
  stop_containerd
  kill_shims
  kill_runc_containers
  remove_cgroup_parent || true

  if [[ -d "$DIR" ]]; then
    unmount_under "$DIR" || log "warning: mounts remain under $DIR: $(mounts_under "$DIR" | tr '\n' ' ')"
  fi

  for ns in $(printf '%s\n' "${OUR_HOST_NETNS[@]}" | sort -u); do
    [[ -e "$HOST_NETNS_DIR/$ns" ]] || continue
    ip netns delete "$ns" || log "warning: could not delete netns $HOST_NETNS_DIR/$ns"
  done

  if [[ -n "$n" ]]; then
    if ip link show "wpt$n" >/dev/null 2>&1; then
      ip link delete "wpt$n" type bridge || log "warning: could not delete bridge wpt$n"
    fi
  fi
  remove_portmap_leftovers
  remove_drop_chain

  # The bridge plugin turns on forwarding; turn it back off when no containerd
  # (ours or anyone's) could need it any more.
  if [[ -f "$HSTATE/ip_forward.before" ]] && ! pgrep -x containerd >/dev/null; then
    cat "$HSTATE/ip_forward.before" >/proc/sys/net/ipv4/ip_forward 2>/dev/null || true
  fi

  if [[ -d "$DIR" ]]; then
    if [[ -n "$(mounts_under "$DIR")" ]]; then
      die "not removing $DIR: still mounted: $(mounts_under "$DIR" | tr '\n' ' ')"
    fi
    rm -rf --one-file-system "$DIR"
  fi
  if [[ -n "$n" ]]; then
    registry_lock
    [[ "$(cat "$REGISTRY/net/$n" 2>/dev/null)" == "$DIR" ]] && rm -f "$REGISTRY/net/$n"
    registry_unlock
  fi
  log "stopped and cleaned up $DIR"
}

# ----------------------------------------------------------- leakcheck ------

do_leakcheck() {
  local leaks=0 ns id kind line mp base d procs f
  leak() { echo "leakcheck: LEAK: $*"; leaks=$((leaks + 1)); }

  [[ -f "$HSTATE/net" ]] || die "$DIR was not started by this harness (no $HSTATE/net)"
  NET_N=$(<"$HSTATE/net")
  containerd_alive || die "containerd for $DIR is not running"
  containerd_answers || die "containerd for $DIR does not answer on $SOCK"

  # Containers (CRI sandboxes are containers too) and tasks, every namespace.
  for ns in $(ctr_ namespaces ls -q); do
    while read -r id; do
      [[ -n "$id" ]] || continue
      kind=container
      ctr_ -n "$ns" containers info "$id" 2>/dev/null \
        | grep '"io.cri-containerd.kind": "sandbox"' >/dev/null && kind="pod sandbox"
      leak "$kind $ns/$id"
    done < <(ctr_ -n "$ns" containers ls -q)
    while read -r id _ status; do
      [[ -n "$id" ]] || continue
      leak "task $ns/$id (pid/status: $status)"
    done < <(ctr_ -n "$ns" tasks ls 2>/dev/null | tail -n +2)
    # Active snapshots are container rootfs; committed ones are image layers.
    while read -r id _ kind; do
      [[ "$kind" == Active ]] && leak "active snapshot $ns/$id"
    done < <(ctr_ -n "$ns" snapshots ls 2>/dev/null | tail -n +2 | awk '{ print $1, $(NF-1), $NF }')
  done

  # Mounts under containerd's root and state (overlayfs keeps none of its
  # own); pod netns are nsfs mounts in $NETNS_DIR.
  for mp in $(mounts_under "$DIR/root") $(mounts_under "$DIR/state"); do
    if [[ "$mp" == "$NETNS_DIR"/* ]]; then
      leak "netns $mp"
    else
      leak "mount $mp"
    fi
  done
  for ns in $(host_netns_with_our_ip); do
    leak "netns $HOST_NETNS_DIR/$ns (has an address in 10.231.$NET_N.0/24)"
  done
  while read -r line; do
    [[ -n "$line" ]] && leak "interface on bridge wpt$NET_N: $line"
  done < <(ip -o link show master "wpt$NET_N" 2>/dev/null | awk -F': ' '{ print $2 }')

  # IP addresses still allocated by host-local.
  if [[ -d "$IPAM_DIR/$NET_NAME" ]]; then
    for f in "$IPAM_DIR/$NET_NAME"/*; do
      [[ -f "$f" ]] || continue
      case "$(basename "$f")" in lock | last_reserved_ip.*) continue ;; esac
      leak "IP $(basename "$f") allocated to $(head -n1 "$f")"
    done
  fi

  while IFS= read -r line; do
    [[ -n "$line" ]] && leak "portmap iptables rule: $line"
  done < <(portmap_leftovers)

  # cgroups under the test parent, in every hierarchy (one line per path).
  local -A cg_hiers=() cg_procs=()
  local rel
  for mp in $(cgroup_mounts); do
    base=$mp$CGROUP_PARENT
    [[ -d "$base" ]] || continue
    while IFS= read -r d; do
      rel=${d#"$mp"}
      procs=$(cat "$d/cgroup.procs" 2>/dev/null | wc -l)
      [[ "$d" == "$base" ]] && ((procs == 0)) && continue   # the empty parent itself is fine
      cg_hiers[$rel]+="${cg_hiers[$rel]:+,}$(basename "$mp")"
      cg_procs[$rel]=$(( ${cg_procs[$rel]:-0} > procs ? ${cg_procs[$rel]:-0} : procs ))
    done < <(find "$base" -type d)
  done
  for rel in "${!cg_hiers[@]}"; do
    leak "cgroup $rel (${cg_procs[$rel]} processes; in ${cg_hiers[$rel]})"
  done

  for id in $(our_shims); do
    leak "shim process $id: $({ tr '\0' ' ' <"/proc/$id/cmdline"; } 2>/dev/null || true)"
  done

  if ((leaks > 0)); then
    echo "leakcheck: $leaks leak(s) in $DIR"
    return 1
  fi
  echo "leakcheck: clean ($DIR)"
}

case "$CMD" in
  start) do_start ;;
  stop) do_stop ;;
  leakcheck) do_leakcheck ;;
  *) usage ;;
esac
