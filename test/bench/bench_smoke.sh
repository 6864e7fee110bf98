#!/usr/bin/env bash
# bench_smoke: warmpool-bench end to end in a few seconds, against the test
# bed's containerd: a handful of pods cold, through a sandbox pool and through
# an app pool, then checks its outputs (table, CSVs, the CDF plot) and that
# every sandbox-pool pod was served by the pool (--check). Numbers from a
# smoke run mean nothing; the full benchmark runs by hand (README).
#
#   bench_smoke.sh WARMPOOL_BENCH
set -euo pipefail
bench=$1

if [[ -z "${WP_TEST_CONTAINERD_SOCK:-}" ]]; then
  if [[ "${WP_TEST_REQUIRE_CONTAINERD:-}" == 1 ]]; then
    echo "bench_smoke: WP_TEST_CONTAINERD_SOCK unset but WP_TEST_REQUIRE_CONTAINERD=1" >&2
    exit 1
  fi
  echo "bench_smoke: no test bed (test/harness/containerd.sh); skipped"
  exit 77
fi

out=$(mktemp -d /tmp/wp-bench-smoke.XXXXXX)
trap 'rm -rf "$out"' EXIT

"$bench" --scenarios testapp-0s --variants cold,sandbox-pool,app-pool --pods 3 --warmup 0 \
  --out "$out" --check

fail() { echo "bench_smoke: $*" >&2; exit 1; }
for f in results.md samples.csv summary.csv cdf.svg; do
  [[ -s "$out/$f" ]] || fail "missing or empty $f"
done
# summary.csv: scenario,variant,phase,pods,ok,sandbox_hits,...
row() { awk -F, -v v="$1" '$1=="testapp-0s" && $2==v && $3=="total"' "$out/summary.csv"; }
for v in cold sandbox-pool app-pool; do
  r=$(row "$v")
  [[ -n "$r" ]] || fail "no total row for $v in summary.csv"
  [[ $(cut -d, -f4,5 <<<"$r") == "3,3" ]] || fail "$v: not every pod served: $r"
done
[[ $(row sandbox-pool | cut -d, -f6) == 3 ]] || fail "sandbox-pool: not 3 pool hits: $(row sandbox-pool)"
[[ $(grep -c '<polyline' "$out/cdf.svg") == 3 ]] || fail "cdf.svg: want 3 curves"
[[ $(tail -n +2 "$out/samples.csv" | wc -l) == 9 ]] || fail "samples.csv: want 9 pods"
echo "bench_smoke: ok"
cat "$out/results.md"
