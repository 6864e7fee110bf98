#!/usr/bin/env bash
# The whole test suite on a Debian 12 machine (root): installs the packages,
# builds, starts a private containerd (test/harness/containerd.sh), runs every
# unit and integration test against it with ctest, checks that nothing was
# left behind, runs a short smoke of the benchmarks, and stops everything it
# started, whatever happens. .ci/run calls exactly this.
#
# Environment: WARMPOOL_BUILD_DIR (default ./build); extra args go to ctest
# (e.g. scripts/test.sh -R Passthrough).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${WARMPOOL_BUILD_DIR:-$root/build}
export WARMPOOL_BUILD_DIR=$build

"$root/scripts/deps.sh"
"$root/scripts/build.sh"

bed=$(mktemp -d /tmp/wpt.XXXXXX)
harness=$root/test/harness/containerd.sh
cleanup() {
  local rc=$?
  set +e
  "$harness" stop "$bed" || rc=1
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$harness" start "$bed"
# shellcheck disable=SC1091
source "$bed/env"
export WP_TEST_REQUIRE_CONTAINERD=1   # integration tests fail, not skip, without it

status=0
ctest --test-dir "$build" --output-on-failure -j2 --timeout 600 "$@" || status=1

echo "== leak check"
"$harness" leakcheck "$bed" || status=1

echo "== benchmark smoke (proxy overhead; numbers from a smoke run mean little)"
"$build/test/bench/proxy_overhead_bench" --sandboxes 5 --iterations 200 || status=1

exit $status
