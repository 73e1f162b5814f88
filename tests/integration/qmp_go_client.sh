#!/bin/bash
# EVE pillar's QMP flow with the client pillar uses (go-qemu's qmp package, Debian
# golang-github-digitalocean-go-qemu-dev) against vmm's QmpServer (qmp_fake_domain on two
# sockets, qmp and listener.qmp, as the anchor serves them). See tests/qmp-go/main.go.
# Builds offline from Debian's GOPATH layout (/usr/share/gocode, GO111MODULE=off).
# Exit 77 (skip) when go or go-qemu is not installed.
set -euo pipefail

SRC=${VMM_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${VMM_BUILD_DIR:-$SRC/build}
FAKE=$BUILD/tests/tools/qmp_fake_domain
[[ -x $FAKE ]] || { echo "FAIL: $FAKE not built"; exit 1; }

tmp=$(mktemp -d /tmp/qmp-go.XXXXXX)
fake_pid=
cleanup() {
    [[ -n $fake_pid ]] && kill "$fake_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

gobin=$BUILD/tests/qmp-go/qmp-go
rc=0; "$SRC/tests/qmp-go/build.sh" "$gobin" || rc=$?
[[ $rc -eq 0 ]] || exit $rc

"$FAKE" --socket "$tmp/qmp" --socket "$tmp/listener.qmp" --name pillar-test --state prelaunch \
    >"$tmp/fake.log" 2>&1 &
fake_pid=$!

status=0
timeout 60 "$gobin" "$tmp/qmp" "$tmp/listener.qmp" || status=1
# quit ends the fake domain.
for _ in $(seq 50); do kill -0 "$fake_pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$fake_pid" 2>/dev/null; then
    echo "FAIL: qmp_fake_domain still running after quit"
    status=1
fi
if [[ $status -ne 0 ]]; then
    echo "--- qmp_fake_domain log"; cat "$tmp/fake.log"
    echo "0 passed, 1 failed"
else
    echo "1 passed, 0 failed"
fi
exit $status
