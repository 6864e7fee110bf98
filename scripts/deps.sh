#!/usr/bin/env bash
# Installs everything warmpool needs to build and to run its tests on Debian 12.
#
# Idempotent: when every package is already installed it does nothing (no
# network), unless WARMPOOL_FORCE_APT=1. Otherwise it runs `apt-get update`
# first (a fresh machine has no package lists) and then `apt-get install -y`.
# Needs root (or sudo).
set -euo pipefail

PACKAGES=(
  # build
  build-essential cmake pkg-config g++ libc6-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libcgroup-dev libsystemd-dev libtomlplusplus-dev libspdlog-dev
  libgtest-dev libgmock-dev libbenchmark-dev libcli11-dev nlohmann-json3-dev
  # runtime under test and its helpers
  containerd runc containernetworking-plugins iptables iproute2 ninja-build
  # used by test/fixtures and test/harness
  gcc tar gzip coreutils util-linux findutils procps
  # test/harness/systemd.sh boots a real systemd (the systemd cgroup driver tests)
  systemd
  # the Debian package (cpack -G DEB: dpkg-shlibdeps, file) and its tests;
  # the Kubernetes manifests' schema test
  dpkg-dev file python3-yaml python3-kubernetes
  # observability_test checks a scrape with Prometheus' own text parser
  python3 python3-prometheus-client
)

die() { echo "deps.sh: $*" >&2; exit 1; }

missing=()
for pkg in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
  [[ "$status" == "installed" ]] || missing+=("$pkg")
done

if [[ ${#missing[@]} -eq 0 && "${WARMPOOL_FORCE_APT:-0}" != "1" ]]; then
  echo "deps.sh: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || die "must run as root (or have sudo)"
  SUDO=(sudo)
fi

if [[ ${#missing[@]} -gt 0 ]]; then
  echo "deps.sh: missing: ${missing[*]}"
fi

"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update \
  || die "apt-get update failed"
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${PACKAGES[@]}" \
  || die "apt-get install failed"

echo "deps.sh: done"
