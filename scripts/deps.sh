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

if [ "$job" = test ] && ! cargo nextest --version >/dev/null 2>&1; then
  echo "plimsoll: installing cargo-nextest" >&2
  cargo install --locked cargo-nextest
fi
