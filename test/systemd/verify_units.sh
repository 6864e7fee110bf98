#!/usr/bin/env bash
# verify_units.sh WARMPOOLD_BINARY
# The systemd units as systemd itself reads them: `systemd-analyze verify` on
# warmpool.service (binary paths pointed at the build), warmpool.socket, and on a stand-in
# kubelet.service with the warmpool drop-in. Any complaint fails, warnings
# included (systemd only warns about an unknown key, then ignores it).
set -euo pipefail
binary=$1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
command -v systemd-analyze >/dev/null || { echo "systemd-analyze not found (package systemd)"; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

sed "s|/usr/sbin/warmpoold|$binary|g" "$here/systemd/warmpool.service" >"$dir/warmpool.service"
cp "$here/systemd/warmpool.socket" "$dir/warmpool.socket"
mkdir -p "$dir/kubelet.service.d"
printf '[Unit]\nDescription=stand-in kubelet\n[Service]\nExecStart=/bin/true $KUBELET_EXTRA_ARGS\n' \
  >"$dir/kubelet.service"
cp "$here/systemd/kubelet-warmpool.conf" "$dir/kubelet.service.d/20-warmpool.conf"

status=0
for unit in warmpool.service warmpool.socket kubelet.service; do
  if ! out=$(SYSTEMD_UNIT_PATH="$dir:" systemd-analyze verify "$dir/$unit" 2>&1); then
    echo "FAIL $unit: systemd-analyze verify exited non-zero"; status=1
  fi
  # Complaints about units we did not write (the stand-in's dependencies) are not ours.
  mine=$(printf '%s\n' "$out" | grep -E "warmpool|20-warmpool|kubelet.service:" || true)
  if [[ -n "$mine" ]]; then
    echo "FAIL $unit:"; printf '%s\n' "$mine"; status=1
  else
    echo "ok   $unit"
  fi
done
# The socket unit must serve the path warmpoold's default config listens on.
listen=$(sed -n 's/^listen = "\(.*\)"$/\1/p' "$here/packaging/warmpool.toml")
grep -qx "ListenStream=$listen" "$here/systemd/warmpool.socket" \
  || { echo "FAIL warmpool.socket: ListenStream is not daemon.listen ($listen)"; status=1; }
# The drop-in must really point kubelet at warmpoold.
grep -q -- '--container-runtime-endpoint=unix:///run/warmpool/warmpool.sock' \
  "$here/systemd/kubelet-warmpool.conf" || { echo "FAIL drop-in: endpoint"; status=1; }
exit $status
