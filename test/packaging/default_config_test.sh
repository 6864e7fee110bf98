#!/usr/bin/env bash
# default_config_test.sh WARMPOOLD SOURCE_DIR
# warmpoold's config flags, as an admin uses them:
#  --print-default-config prints packaging/warmpool.toml byte for byte (it is
#    embedded at build time) and what it prints passes --check-config;
#  --check-config FILE exits 0 on a valid file, 1 on an invalid or missing
#    one, with every error as FILE:LINE:COL: KEY: MESSAGE.
set -euo pipefail
warmpoold=$1
src=$(cd "$2" && pwd)
fail() { echo "FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d /tmp/wpcfg.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

"$warmpoold" --print-default-config >"$tmp/default.toml" || fail "--print-default-config exited $?"
cmp "$tmp/default.toml" "$src/packaging/warmpool.toml" \
  || fail "--print-default-config differs from packaging/warmpool.toml (rebuild?)"
out=$("$warmpoold" --check-config "$tmp/default.toml") || fail "the printed default is invalid"
[[ $out == "$tmp/default.toml: ok (0 pools)" ]] || fail "unexpected --check-config output: $out"
echo "ok   --print-default-config is packaging/warmpool.toml and is valid"

# Every commented-out example in the default file, uncommented, is valid too:
# the reference shows keys that really exist. (The pool block is a template:
# its lines start with "# " and the prose lines are removed.)
sed -n '/^# \[\[pool\]\]/,$p' "$src/packaging/warmpool.toml" \
  | grep -E '^# ([a-z_]+ *=|\[)' | sed -E 's/^# //; /^# or /d' >"$tmp/example.toml"
grep -q '^\[\[pool.container\]\]' "$tmp/example.toml" || fail "no pool example found"
# The example pool names a registry image; --check-config does not pull it.
out=$("$warmpoold" --check-config "$tmp/example.toml" 2>&1) \
  || { cat "$tmp/example.toml"; fail "the documented pool example is invalid: $out"; }
echo "ok   the documented [[pool]] example is valid: $out"

cat >"$tmp/bad.toml" <<'EOF'
[daemon]
log_levl = "info"
max_concurrent_creates = 0
EOF
set +e
err=$("$warmpoold" --check-config "$tmp/bad.toml" 2>&1 >/dev/null)
rc=$?
set -e
[[ $rc -eq 1 ]] || fail "--check-config on an invalid file exited $rc, expected 1"
grep -qE "^$tmp/bad.toml:2:1: daemon.log_levl: unknown key" <<<"$err" \
  || fail "no file:line:col error for the unknown key: $err"
grep -qE "^$tmp/bad.toml:3:[0-9]+: daemon.max_concurrent_creates: " <<<"$err" \
  || fail "no file:line:col error for the range: $err"
echo "ok   --check-config on an invalid file: exit 1, every error as file:line:col: key: message"

set +e
err=$("$warmpoold" --check-config "$tmp/missing.toml" 2>&1 >/dev/null)
rc=$?
set -e
[[ $rc -eq 1 && $err == *missing.toml* ]] || fail "missing file: exit $rc, '$err'"
echo "ok   --check-config on a missing file: exit 1 ($err)"
