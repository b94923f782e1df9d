#!/usr/bin/env bash
# Checks that the workspace's crates can go to crates.io, uploading nothing:
# 1. every include_str!/include_bytes! of a publishable crate reads a file inside that crate that
#    its package contains (`cargo package --list`): a path out of the crate builds here and
#    fails for everyone who installs the crate;
# 2. `cargo publish --workspace --dry-run`: packages every publishable crate in dependency order
#    and builds each from its tarball against the others' tarballs (a local overlay of the
#    registry). Crates with `publish = false` (plimsoll-bench) are left out.
# Usage: scripts/publish-check.sh [--no-verify] [--allow-dirty]
#   --no-verify   package without building (CI's cheap variant: seconds instead of minutes)
#   --allow-dirty check uncommitted changes too
set -euo pipefail
cd "$(dirname "$0")/.."

args=()
for arg in "$@"; do
  case "$arg" in
    --no-verify | --allow-dirty) args+=("$arg") ;;
    *)
      echo "publish-check: unknown argument '$arg' (expected --no-verify or --allow-dirty)" >&2
      exit 2
      ;;
  esac
done
dirty=()
for arg in "${args[@]}"; do [ "$arg" = --allow-dirty ] && dirty=(--allow-dirty); done

status=0
for manifest in crates/*/Cargo.toml; do
  dir="$(dirname "$manifest")"
  crate="$(basename "$dir")"
  if grep -qE '^publish *= *false' "$manifest"; then
    continue
  fi
  listed="$(cargo package --list --locked -p "$crate" "${dirty[@]}" 2>/dev/null)" || {
    echo "publish-check: cargo package --list -p $crate failed:" >&2
    cargo package --list --locked -p "$crate" "${dirty[@]}" >/dev/null || true
    exit 1
  }
  # file:line:include_str!("path") → the path, lexically resolved (a link inside the crate
  # counts as inside: cargo copies what it points to).
  while IFS= read -r hit; do
    file="${hit%%:*}"
    path="$(sed -E 's/.*include_(str|bytes)!\("([^"]+)"\).*/\2/' <<<"$hit")"
    resolved="$(realpath -s -m --relative-to="$dir" "$(dirname "$file")/$path")"
    if [[ "$resolved" == ../* ]] || ! grep -qxF "$resolved" <<<"$listed"; then
      echo "publish-check: $file includes '$path', which is not in the $crate package ($resolved)" >&2
      status=1
    fi
  done < <(grep -rnoE --include='*.rs' 'include_(str|bytes)!\("[^"]+"\)' "$dir/src" || true)
done
[ "$status" = 0 ] || exit "$status"
echo "publish-check: every include_str!/include_bytes! is packaged" >&2

cargo publish --workspace --dry-run --locked --exclude plimsoll-bench "${args[@]}"
