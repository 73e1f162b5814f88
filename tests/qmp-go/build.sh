#!/bin/bash
# build.sh OUT: builds tests/qmp-go/main.go (pillar's QMP flow on go-qemu) into OUT, offline
# from Debian's GOPATH layout (/usr/share/gocode, GO111MODULE=off); nothing to do when OUT is
# newer than main.go (the kvm tests in the nested VM reuse the host's build). Exit 77 when go or
# go-qemu is not installed (the callers pass it on as "skipped").
set -euo pipefail
out=${1:?usage: build.sh OUT}
GOQEMU=/usr/share/gocode/src/github.com/digitalocean/go-qemu/qmp
command -v go >/dev/null || { echo "SKIP: go not installed (apt-get install golang-go)"; exit 77; }
[[ -d $GOQEMU ]] || { echo "SKIP: go-qemu not installed (apt-get install golang-github-digitalocean-go-qemu-dev)"; exit 77; }
src=$(cd "$(dirname "$0")" && pwd)
[[ -x $out && $out -nt $src/main.go ]] && exit 0
mkdir -p "$(dirname "$out")"
cache=${GOCACHE:-$(dirname "$out")/gocache}
GOPATH=/usr/share/gocode GO111MODULE=off GOPROXY=off GOFLAGS= GOCACHE=$cache \
    go build -o "$out.$$" "$src/main.go"
mv -f "$out.$$" "$out"  # atomic: tests running side by side may build it at once
