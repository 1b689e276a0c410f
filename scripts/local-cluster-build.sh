#!/usr/bin/env bash
# Builds the local single-node Kubernetes (upstream 1.20.2 as Debian bookworm ships its source)
# with Debian's Go 1.19: kube-apiserver, kube-controller-manager, kube-scheduler, kubelet,
# kube-proxy, and a static pause binary. Cached outside the clone, keyed by the source package's
# version: a second build is a no-op. Called by `python -m aislab.world.targets.kubernetes.local build`.
#
# Three fixes, as LAB-RECIPES.md (Kubernetes) measured them:
#   1. GOPATH mode (GO111MODULE=off), as upstream 1.20 builds;
#   2. the vendored github.com/modern-go/reflect2 1.0.1 replaced by Debian's 1.0.2
#      (1.0.1 under Go 1.19 crashes json-iterator);
#   3. pkg/generated/openapi/zz_generated.openapi.go generated with the vendored openapi-gen.
set -euo pipefail
CACHE_ROOT=${AISLAB_K8S_CACHE:-/var/cache/aislab/kubernetes}
COMPONENTS="kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy"
RUNTIME_PACKAGES="etcd-server containerd runc containernetworking-plugins iptables openssl conntrack"
BUILD_PACKAGES="golang-1.19-go golang-github-modern-go-reflect2-dev dpkg-dev gcc libc6-dev"

say() { echo "local-cluster: $*" >&2; }
[ "$(id -u)" -eq 0 ] || { say "building and running the local cluster needs root"; exit 1; }

# The source package's version keys the cache. A fresh machine has no deb-src entry: add one for
# bookworm from the same mirror the binary entries use.
SRC_LIST=/etc/apt/sources.list.d/aislab-bookworm-src.sources
source_version() { apt-cache showsrc kubernetes 2>/dev/null | awk '/^Version:/{print $2; exit}'; }
VERSION=$(source_version || true)
if [ -z "$VERSION" ]; then
  if [ ! -e "$SRC_LIST" ]; then
    mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    mirror=${mirror:-http://deb.debian.org/debian}
    say "adding a deb-src entry for bookworm ($mirror) in $SRC_LIST"
    printf 'Types: deb-src\nURIs: %s\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$mirror" >"$SRC_LIST"
  fi
  apt-get update -qq
  VERSION=$(source_version)
fi
[ -n "$VERSION" ] || { say "apt knows no source package 'kubernetes' (bookworm)"; exit 1; }
DIR=$CACHE_ROOT/$VERSION
BIN=$DIR/bin
STAMP=$DIR/.built
# Bumped whenever this recipe changes what it builds: a stamp of another revision is rebuilt.
RECIPE=2

missing_runtime() {
  local p; for p in $RUNTIME_PACKAGES; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || echo "$p"; done
}
need=$(missing_runtime)
if [ -n "$need" ]; then
  say "installing $(echo $need)"
  apt-get install -y -qq --no-install-recommends $need >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends $need >/dev/null; }
fi

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "recipe $RECIPE" ]; then
  ok=1; for c in $COMPONENTS pause; do [ -x "$BIN/$c" ] || ok=0; done
  if [ $ok = 1 ]; then say "built already: $BIN (kubernetes source $VERSION)"; echo "$DIR"; exit 0; fi
fi

start=$(date +%s)
say "building kubernetes $VERSION into $DIR (several minutes on 2 cores)"
need=""; for p in $BUILD_PACKAGES; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need="$need $p"; done
if [ -n "$need" ]; then
  say "installing$need"
  apt-get install -y -qq --no-install-recommends $need >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends $need >/dev/null; }
fi
export PATH=/usr/lib/go-1.19/bin:$PATH
mkdir -p "$DIR"
WORK=$DIR/work
rm -rf "$WORK"; mkdir -p "$WORK"
( cd "$WORK" && apt-get source -qq kubernetes >/dev/null 2>&1 ) || ( cd "$WORK" && apt-get source kubernetes )
TREE=$(find "$WORK" -mindepth 1 -maxdepth 1 -type d -name 'kubernetes-*' | head -1)
[ -d "$TREE/cmd/kube-apiserver" ] || { say "the source tree has no cmd/kube-apiserver: $TREE"; exit 1; }

# Fix 1: GOPATH mode.
export GOPATH=$WORK/gopath GO111MODULE=off GOFLAGS= GOCACHE=$WORK/gocache
mkdir -p "$GOPATH/src/k8s.io"
ln -sfn "$TREE" "$GOPATH/src/k8s.io/kubernetes"
KROOT=$GOPATH/src/k8s.io/kubernetes

# Fix 2: reflect2 1.0.2.
R2=/usr/share/gocode/src/github.com/modern-go/reflect2
[ -f "$R2/reflect2.go" ] || { say "Debian's reflect2 sources are missing at $R2"; exit 1; }
rm -rf "$KROOT/vendor/github.com/modern-go/reflect2"
mkdir -p "$KROOT/vendor/github.com/modern-go/reflect2"
find "$R2" -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' \) ! -name '*_test.go' \
  -exec cp {} "$KROOT/vendor/github.com/modern-go/reflect2/" \;

# Fix 3: the OpenAPI definitions kube-apiserver serves, generated as upstream's
# Makefile.generated_files does (every package tagged +k8s:openapi-gen=).
cd "$KROOT"
go build -o "$WORK/openapi-gen" ./vendor/k8s.io/kube-openapi/cmd/openapi-gen
inputs=$(find -H . -not \( \( -path './_*' -o -path './.*' -o -path ./vendor \) -prune \) -type f -name '*.go' \
  | xargs grep -l '^// *+k8s:' | xargs grep -l '+k8s:openapi-gen=' | xargs -n1 dirname \
  | sed 's|^\./||; s|^staging/src|vendor|' \
  | grep -v -e '^vendor/k8s.io/code-generator/' -e '^vendor/k8s.io/sample-apiserver/' \
  | LC_ALL=C sort -u | sed 's|^|k8s.io/kubernetes/|' | paste -sd, -)
"$WORK/openapi-gen" --logtostderr -v 1 -i "$inputs" \
  -p k8s.io/kubernetes/pkg/generated/openapi -O zz_generated.openapi \
  -h hack/boilerplate/boilerplate.generatego.txt -r "$WORK/openapi-violations.report" \
  --output-base "$GOPATH/src" 2>"$WORK/openapi-gen.log" || { tail -20 "$WORK/openapi-gen.log" >&2; exit 1; }
[ -s pkg/generated/openapi/zz_generated.openapi.go ] || { say "openapi-gen wrote nothing"; exit 1; }

mkdir -p "$BIN"
# The version every component reports (--version, and the API server's /version), set in both
# packages that carry it, as upstream's hack/lib/version.sh does.
LDFLAGS="-s -w"
for pkg in k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version k8s.io/kubernetes/vendor/k8s.io/component-base/version; do
  LDFLAGS="$LDFLAGS -X $pkg.gitVersion=v1.20.2 -X $pkg.gitMajor=1 -X $pkg.gitMinor=20 -X $pkg.gitTreeState=clean"
  LDFLAGS="$LDFLAGS -X $pkg.gitCommit=debian-$VERSION -X $pkg.buildDate=$(date -u -d @"${SOURCE_DATE_EPOCH:-0}" +%Y-%m-%dT%H:%M:%SZ)"
done
for c in $COMPONENTS; do
  t0=$(date +%s)
  go build -o "$BIN/$c.tmp" -ldflags "$LDFLAGS" "k8s.io/kubernetes/cmd/$c"
  mv "$BIN/$c.tmp" "$BIN/$c"
  say "built $c in $(( $(date +%s) - t0 )) s"
done

# The pause binary every pod sandbox runs (no registry: no k8s.gcr.io/pause).
cat >"$WORK/pause.c" <<'C'
#include <signal.h>
#include <unistd.h>
#include <sys/wait.h>
static void quit(int s) { (void)s; _exit(0); }
static void reap(int s) { (void)s; while (waitpid(-1, 0, WNOHANG) > 0) {} }
int main(void) {
  struct sigaction q = {0}, r = {0};
  q.sa_handler = quit; sigaction(SIGINT, &q, 0); sigaction(SIGTERM, &q, 0);
  r.sa_handler = reap; r.sa_flags = SA_NOCLDSTOP; sigaction(SIGCHLD, &r, 0);
  for (;;) pause();
}
C
gcc -static -O2 -o "$BIN/pause" "$WORK/pause.c"

echo "$VERSION" >"$DIR/source-version"
echo "$(( $(date +%s) - start ))" >"$DIR/build-seconds"
rm -rf "$WORK"
echo "recipe $RECIPE" >"$STAMP"
say "built kubernetes $VERSION in $(( $(date +%s) - start )) s: $BIN"
echo "$DIR"
