#!/usr/bin/env bash
# Writes the npm tarballs into OUT_DIR: `plimsoll` (the launcher, npm/plimsoll) and this
# machine's platform package (`@plimsoll/linux-x64` or `@plimsoll/linux-arm64`, from the
# npm/platform template) holding the shipped binary (profile dist: LTO, stripped). The version comes from Cargo.toml and is
# stamped into copies of the package.jsons; the tracked files are never edited.
# Usage: scripts/npm-pack.sh OUT_DIR
#   PLIMSOLL_BINARY=PATH   pack that binary instead of building the release one
#   PLIMSOLL_NPM_CPU=x64|arm64   the CPU of that binary (default: this machine's)
# Publishing: `npm publish` the platform tarballs first, then plimsoll-VERSION.tgz.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

if [ "$#" != 1 ] || [ -z "$1" ]; then
  echo "usage: scripts/npm-pack.sh OUT_DIR" >&2
  exit 2
fi
command -v npm >/dev/null 2>&1 || {
  echo "npm-pack: npm is missing (Debian: apt-get install -y npm)" >&2
  exit 2
}
mkdir -p "$1"
out="$(cd "$1" && pwd)"

version="$(awk '/^\[workspace\.package\]/ { s = 1; next } /^\[/ { s = 0 }
  s && /^version *=/ { gsub(/^version *= *"|".*$/, ""); print; exit }' "$root/Cargo.toml")"
[ -n "$version" ] || { echo "npm-pack: no version in [workspace.package] of Cargo.toml" >&2; exit 2; }

cpu="${PLIMSOLL_NPM_CPU:-}"
if [ -z "$cpu" ]; then
  case "$(uname -m)" in
    x86_64 | amd64) cpu=x64 ;;
    aarch64 | arm64) cpu=arm64 ;;
    *) echo "npm-pack: no npm platform package for CPU '$(uname -m)' (x64 and arm64 exist)" >&2; exit 2 ;;
  esac
fi
case "$cpu" in
  x64 | arm64) ;;
  *) echo "npm-pack: unknown PLIMSOLL_NPM_CPU '$cpu' (expected x64 or arm64)" >&2; exit 2 ;;
esac

binary="${PLIMSOLL_BINARY:-}"
if [ -z "$binary" ]; then
  (cd "$root" && cargo build --profile dist --locked -p plimsoll)
  binary="${CARGO_TARGET_DIR:-$root/target}/dist/plimsoll"
fi
if [ ! -f "$binary" ] || [ ! -x "$binary" ]; then
  echo "npm-pack: PLIMSOLL_BINARY '$binary' is not an executable file" >&2
  exit 2
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp -R "$root/npm/plimsoll" "$work/plimsoll"
mkdir -p "$work/platform/bin"
cp "$root/npm/platform/package.json" "$work/platform/package.json"
cp "$binary" "$work/platform/bin/plimsoll"
chmod 755 "$work/platform/bin/plimsoll" "$work/plimsoll/bin/plimsoll.js"

# Stamp the version (and the platform) into the copies.
node - "$work" "$version" "$cpu" <<'JS'
const fs = require('fs');
const [work, version, cpu] = process.argv.slice(2);
const edit = (file, change) => {
  const json = JSON.parse(fs.readFileSync(file, 'utf8'));
  change(json);
  fs.writeFileSync(file, JSON.stringify(json, null, 2) + '\n');
};
edit(`${work}/plimsoll/package.json`, (p) => {
  p.version = version;
  for (const name of Object.keys(p.optionalDependencies)) p.optionalDependencies[name] = version;
});
edit(`${work}/platform/package.json`, (p) => {
  p.name = p.name.replace('PLATFORM', `linux-${cpu}`);
  p.description = p.description.replace('PLATFORM', `linux-${cpu}`);
  p.cpu = [cpu];
  p.version = version;
});
JS

# One npm for both (each start of npm costs about a second); it prints one file name a line.
(cd "$work" && npm pack --silent --pack-destination "$out" ./platform ./plimsoll) |
  while IFS= read -r tarball; do echo "$out/$tarball"; done
