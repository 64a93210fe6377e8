#!/usr/bin/env bash
# The test cluster's binaries, built from source through the Go module proxy: etcd, the
# Kubernetes control plane, kubelet and kube-proxy, CoreDNS, and the pause binary. Built
# once into ~/.cache, keyed by the versions and this recipe (about 20 minutes on 2 cores;
# the Go build cache makes a rebuild faster); prints the directory holding them.
# Needs Go, gcc (for pause) and the Go module proxy.
#
#   BIN=$(bash testing/cluster/build.sh)
set -euo pipefail
KUBERNETES=v1.35.4
ETCD=v3.6.16
COREDNS=v1.14.7
HERE=$(cd "$(dirname "$0")" && pwd)
KEY=$( (echo "$KUBERNETES $ETCD $COREDNS"; cat "$0" "$HERE/pause.c") | sha256sum | cut -c1-12)
DIR=${XDG_CACHE_HOME:-$HOME/.cache}/labctl-test/cluster-$KEY
if [ -f "$DIR/ready" ]; then
  echo "$DIR/bin"
  exit 0
fi
echo "building the test cluster (Kubernetes $KUBERNETES, etcd $ETCD, CoreDNS $COREDNS) into $DIR" >&2
rm -rf "$DIR"
mkdir -p "$DIR/bin" "$DIR/src"
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod
BUILD=(go build -p 2 -trimpath -ldflags '-s -w')

# Kubernetes: k8s.io/kubernetes pins its staging modules (k8s.io/api, k8s.io/client-go, ...)
# at v0.0.0 and replaces them with its own tree, which a dependent module does not see. So
# the wrapper replaces each of them with the published v0.<minor>.<patch>, read from the
# downloaded go.mod.
cd "$DIR/src"
mkdir kubernetes && cd kubernetes
go mod init labctl.test/kubernetes >/dev/null 2>&1
GOMOD=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES" | sed -n 's/^\s*"GoMod": "\(.*\)",$/\1/p')
STAGING=v0.${KUBERNETES#v1.}
go mod edit -require="k8s.io/kubernetes@$KUBERNETES"
for module in $(awk '$2 == "v0.0.0" && $1 ~ /^k8s.io\// {print $1}' "$GOMOD"); do
  go mod edit -replace="$module=$module@$STAGING"
done
cat >tools.go <<'GO'
//go:build tools

// Package tools pins the Kubernetes commands the test cluster runs.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO
go mod tidy -e >"$DIR/tidy.log" 2>&1 || { tail -20 "$DIR/tidy.log" >&2; exit 1; }
# The version every component reports (and checks its peers' against), as upstream's
# release build stamps it.
MINOR=${KUBERNETES#v1.}
MINOR=${MINOR%%.*}
VERSION=""
for package in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  VERSION="$VERSION -X $package.gitVersion=$KUBERNETES -X $package.gitMajor=1 -X $package.gitMinor=$MINOR -X $package.gitTreeState=clean"
done
for command in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy; do
  echo "  go build $command" >&2
  go build -p 2 -trimpath -ldflags "-s -w $VERSION" -o "$DIR/bin/$command" "k8s.io/kubernetes/cmd/$command"
done

# etcd: its server module's main package is internal to the etcd repository's root
# module, so a two-line wrapper calls etcdmain.Main.
mkdir "$DIR/src/etcd" && cd "$DIR/src/etcd"
go mod init labctl.test/etcd >/dev/null 2>&1
cat >main.go <<'GO'
// Command etcd runs etcd's server, as the etcd binary does.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
go get "go.etcd.io/etcd/server/v3@$ETCD" >/dev/null 2>&1
go mod tidy >/dev/null 2>&1
echo "  go build etcd" >&2
"${BUILD[@]}" -o "$DIR/bin/etcd" .

echo "  go build coredns" >&2
GOBIN="$DIR/bin" go install -trimpath -ldflags '-s -w' "github.com/coredns/coredns@$COREDNS"

# pause: the sandbox's init, the upstream C source built static.
echo "  cc pause" >&2
gcc -Os -static -o "$DIR/bin/pause" "$HERE/pause.c"
strip "$DIR/bin/pause"
rm -rf "$DIR/src"
touch "$DIR/ready"
echo "$DIR/bin"
