#!/usr/bin/env bash
# Refreshes the vendored Swagger UI (node/assets/swagger-ui), the viewer the
# node serves at /v1/docs for its OpenAPI document. The files are built
# into the binary, so a node's docs work with no internet access. Pinned:
# the version and the npm tarball's SHA-256 below; change both together.
set -euo pipefail
cd "$(dirname "$0")/.."
version=5.35.0
sha256=1b8e891893404ea4c3558b6a87e2a3e494e7eedba41168c2ece5800a391a6ea6
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "swagger-ui-dist@$version" >/dev/null)
tarball="$work/swagger-ui-dist-$version.tgz"
echo "$sha256  $tarball" | sha256sum -c --quiet
tar -xzf "$tarball" -C "$work"
dest=node/assets/swagger-ui
for f in swagger-ui-bundle.js swagger-ui.css LICENSE NOTICE swagger-ui-bundle.js.LICENSE.txt; do
  cp "$work/package/$f" "$dest/$f"
done
echo "vendored swagger-ui-dist $version into $dest"
