#!/usr/bin/env bash
# docs-ui.sh vendors the reference page's script: the standalone bundle of
# the pinned Redoc release from the npm registry (npm pack checks the
# tarball against the registry's integrity hash), copied into
# shared/apispec/docsui/ where go:embed puts it into the proxy and
# accountsvc binaries. The committed file is this script's output; rerun it
# (make docs-ui) after changing REDOC_VERSION.
set -euo pipefail

version=${REDOC_VERSION:?REDOC_VERSION is not set (make docs-ui sets it)}
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/shared/apispec/docsui"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

(cd "$tmp" && npm pack --silent "redoc@$version" >/dev/null)
tar -xzf "$tmp/redoc-$version.tgz" -C "$tmp" package/bundles/redoc.standalone.js package/LICENSE
cp "$tmp/package/bundles/redoc.standalone.js" "$out/redoc.standalone.js"
cp "$tmp/package/LICENSE" "$out/REDOC_LICENSE"
sum=$(sha256sum "$out/redoc.standalone.js" | cut -d' ' -f1)
printf 'redoc@%s bundles/redoc.standalone.js sha256:%s\n' "$version" "$sum" >"$out/VERSION"
echo "docs-ui: $(cat "$out/VERSION")"
