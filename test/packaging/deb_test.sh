#!/usr/bin/env bash
# deb_test.sh BUILD_DIR SOURCE_DIR
# The Debian package end to end: `cpack -G DEB` from the build, then the real
# dpkg installs it, reinstalls it, refuses to remove it while kubelet points at
# warmpool, removes it (conffile kept) and purges it (nothing left).
#
# dpkg works on a test root of its own (--root, with maintainer scripts run
# outside a chroot and DPKG_ROOT set, as dpkg supports), never on this
# machine's packages: nothing is started, runs in parallel with anything, and
# runs any number of times. The root's dpkg database starts as a copy of this
# machine's (minus any warmpool), so the package's Depends are checked against
# what is really installed here, and the installed binaries run here.
set -euo pipefail
build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok   $*"; }
for tool in cpack dpkg dpkg-deb dpkg-shlibdeps file; do
  command -v "$tool" >/dev/null || fail "$tool not found (scripts/deps.sh installs it)"
done

tmp=$(mktemp -d /tmp/wpdeb.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# --- build the package ------------------------------------------------------
# -B: cpack's staging and output in our own directory (parallel runs do not
# share one); the build itself is done already.
cpack --config "$build/CPackConfig.cmake" -G DEB -B "$tmp/out" >"$tmp/cpack.log" 2>&1 \
  || { cat "$tmp/cpack.log"; fail "cpack -G DEB"; }
debs=("$tmp"/out/*.deb)
[[ ${#debs[@]} -eq 1 && -f ${debs[0]} ]] || fail "expected one .deb, got: ${debs[*]}"
deb=${debs[0]}
ok "cpack built $(basename "$deb") ($(du -k "$deb" | cut -f1) KiB)"

field() { dpkg-deb -f "$deb" "$1"; }
[[ $(field Package) == warmpool ]] || fail "Package: $(field Package)"
depends=$(field Depends)
for lib in 'libgrpc++1.51' libprotobuf32 libsystemd0 libcgroup2 libc6 libstdc++6; do
  [[ $depends == *"$lib"* ]] || fail "Depends lacks $lib (shlibdeps): $depends"
done
ok "Depends from the shared libraries: $depends"
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles | grep -qx /etc/warmpool.toml \
  || fail "/etc/warmpool.toml is not a conffile"
ok "conffiles: /etc/warmpool.toml"

expected=(
  ./usr/sbin/warmpoold ./usr/bin/warmpoolctl ./etc/warmpool.toml
  ./lib/systemd/system/warmpool.service ./lib/systemd/system/warmpool.socket
  ./usr/share/warmpool/kubelet-warmpool.conf ./usr/share/doc/warmpool/README.md
  ./var/lib/warmpool/
)
listing=$(dpkg-deb -c "$deb")
for path in "${expected[@]}"; do
  grep -qE " ${path//./\\.}$" <<<"$listing" || fail "package lacks $path"
done
ok "package holds the binaries, units, drop-in, README, config and state directory"

# --- a test root with a copy of this machine's dpkg database ----------------
root=$tmp/root
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates" "$root/var/lib/dpkg/triggers"
# Paragraphs of the status file, without a warmpool one (if a warmpool was ever
# installed on this machine, the test root must not believe it is).
awk -v RS= -v ORS='\n\n' '!/(^|\n)Package: warmpool\n/' /var/lib/dpkg/status \
  >"$root/var/lib/dpkg/status"
: >"$root/var/lib/dpkg/available"
snapshot() { (cd "$root" && find . -path ./var/lib/dpkg -prune -o -print | sort); }
before=$(snapshot)

dpkg_root() {
  dpkg --root="$root" --force-script-chrootless --log=/dev/null "$@"
}
state() { dpkg-query --admindir="$root/var/lib/dpkg" -W -f='${db:Status-Abbrev}' warmpool 2>/dev/null || true; }

# --- install ------------------------------------------------------------------
dpkg_root -i "$deb" >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log"; fail "dpkg -i"; }
[[ $(state) == "ii " ]] || fail "not installed after dpkg -i: '$(state)'"
for path in "${expected[@]}"; do
  [[ -e "$root/$path" ]] || fail "$path missing after install"
done
[[ $(stat -c %a "$root/usr/sbin/warmpoold") == 755 ]] || fail "warmpoold mode"
[[ $(stat -c %a "$root/var/lib/warmpool") == 700 ]] || fail "state directory is not 0700"
cmp -s "$root/etc/warmpool.toml" "$src/packaging/warmpool.toml" \
  || fail "/etc/warmpool.toml is not packaging/warmpool.toml"
cmp -s "$root/lib/systemd/system/warmpool.service" "$src/systemd/warmpool.service" \
  || fail "warmpool.service differs from systemd/warmpool.service"
ok "dpkg -i: files in place, modes right"

# The installed binaries run on this machine (their libraries are here).
if ldd "$root/usr/sbin/warmpoold" | grep -q 'not found'; then
  ldd "$root/usr/sbin/warmpoold"; fail "warmpoold: unresolved libraries"
fi
"$root/usr/sbin/warmpoold" --check-config "$root/etc/warmpool.toml" >/dev/null \
  || fail "the installed warmpoold rejects the installed /etc/warmpool.toml"
"$root/usr/sbin/warmpoold" --print-default-config | cmp -s - "$root/etc/warmpool.toml" \
  || fail "the installed warmpoold's default config is not /etc/warmpool.toml"
"$root/usr/bin/warmpoolctl" --help >/dev/null || fail "warmpoolctl --help"
ok "installed warmpoold accepts the installed config and prints it as its default"

# --- reinstall, with a local edit of the conffile --------------------------------
echo '# edited by the admin' >>"$root/etc/warmpool.toml"
dpkg_root -i "$deb" >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log"; fail "second dpkg -i"; }
[[ $(state) == "ii " ]] || fail "not installed after reinstall"
tail -n1 "$root/etc/warmpool.toml" | grep -qx '# edited by the admin' \
  || fail "reinstall overwrote the admin's /etc/warmpool.toml"
ok "reinstall keeps the admin's edits of /etc/warmpool.toml"

# The daemon's records, as a running warmpoold leaves them.
mkdir -p "$root/var/lib/warmpool/adopted"
echo record >"$root/var/lib/warmpool/adopted/0123.rec"

# --- removal is refused while kubelet points at warmpool -----------------------------
dropin=$root/etc/systemd/system/kubelet.service.d/20-warmpool.conf
mkdir -p "$(dirname "$dropin")"
cp "$root/usr/share/warmpool/kubelet-warmpool.conf" "$dropin"
if dpkg_root -r warmpool >"$tmp/dpkg.log" 2>&1; then
  fail "dpkg -r succeeded while kubelet's drop-in points at warmpool"
fi
grep -q 'Roll back to plain containerd' "$tmp/dpkg.log" || { cat "$tmp/dpkg.log"; fail "no reason given"; }
[[ -x "$root/usr/sbin/warmpoold" ]] || fail "refused removal still removed warmpoold"
rm -rf "$root/etc/systemd"
# dpkg leaves a package whose prerm failed half-installed; the next remove completes it.
ok "dpkg -r refused while kubelet uses warmpool: $(grep -m1 'kubelet is still' "$tmp/dpkg.log")"

# --- remove (conffile and state kept), then purge (nothing left) ----------------
dpkg_root -r warmpool >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log"; fail "dpkg -r"; }
[[ $(state) == "rc " ]] || fail "after dpkg -r: '$(state)', expected config-files"
[[ ! -e "$root/usr/sbin/warmpoold" && ! -e "$root/lib/systemd/system/warmpool.service" ]] \
  || fail "dpkg -r left binaries or units"
[[ -f "$root/etc/warmpool.toml" ]] || fail "dpkg -r removed the conffile"
ok "dpkg -r: binaries and units gone, /etc/warmpool.toml kept"

dpkg_root --purge warmpool >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log"; fail "dpkg --purge"; }
[[ -z $(state) || $(state) == "un " || $(state) == "pn " ]] || fail "after purge: '$(state)'"
after=$(snapshot)
if [[ "$before" != "$after" ]]; then
  diff <(echo "$before") <(echo "$after") || true
  fail "purge left files behind (above: > lines)"
fi
ok "dpkg --purge: the root is as before the install"
