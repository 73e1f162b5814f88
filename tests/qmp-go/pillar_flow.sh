#!/bin/bash
# pillar_flow.sh anchor|qemu [powerdown|panic]: EVE pillar's QMP sequence (tests/qmp-go/main.go, go-qemu as
# pillar's qmp.go uses it) against one domain running tests/guests/powerdown.bin, started the
# way pillar starts it: paused (prelaunch), with two QMP sockets `qmp` and `listener.qmp`,
# staying up after the guest powers off (-no-shutdown / on_poweroff: pause) until quit.
#   anchor: vmm-anchor (needs /dev/kvm), state dir <run-dir>/kvm/pillar/
#   qemu:   qemu-system-x86_64 -S -no-shutdown -M pc (KVM if present, else TCG)
# "panic" runs pillar's crash path instead (qmp_crash.go): tests/guests/panic.bin, pvpanic,
# GUEST_PANICKED, dump-guest-memory + query-dump, the core read with Go's debug/elf.
# Then checks the process ended by itself after quit and (anchor) removed its state dir.
# With BENCH=N the Go client first times N fresh-connection round trips per command and the
# "bench ..." lines are printed (bench/qmp_latency.sh collects them).
# Exit: 0 pass, 1 fail, 77 skipped (what is missing is printed).
set -uo pipefail
target=${1:?usage: pillar_flow.sh anchor|qemu [panic]}
flow=${2:-powerdown}  # powerdown, or panic: pillar's crash path with tests/guests/panic.bin
SRC=${VMM_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${VMM_BUILD_DIR:-$SRC/build}
QEMU=${QEMU:-qemu-system-x86_64}
guest=$BUILD/tests/guests/$flow.bin
[[ -f $guest ]] || { echo "SKIP: $guest not built (target test_guests)"; exit 77; }

tmp=$(mktemp -d /tmp/pillar-flow.XXXXXX)
pid=
cleanup() {
    [[ -n $pid ]] && kill -9 "$pid" 2>/dev/null
    wait 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

gobin=$BUILD/tests/qmp-go/qmp-go
rc=0; "$SRC/tests/qmp-go/build.sh" "$gobin" || rc=$?
[[ $rc -eq 0 ]] || exit $rc

case $target in
anchor)
    [[ -e /dev/kvm ]] || { echo "SKIP: /dev/kvm missing: the anchor needs KVM"; exit 77; }
    anchor=$BUILD/anchor/vmm-anchor
    [[ -x $anchor ]] || { echo "FAIL: $anchor not built"; exit 1; }
    cat >"$tmp/pillar.json" <<JSON
{"name": "pillar", "kernel": "$guest", "memory_mb": 16,
 "flat": {"load_address": "0x100000", "entry": "0x100000", "mode": "protected32"},
 "start_paused": true, "on_poweroff": "pause", "on_crash": "pause"}
JSON
    "$anchor" --manifest "$tmp/pillar.json" --run-dir "$tmp/run" </dev/null >"$tmp/serial.out" 2>"$tmp/log" &
    pid=$!
    dir=$tmp/run/kvm/pillar
    ;;
qemu)
    command -v "$QEMU" >/dev/null || { echo "SKIP: $QEMU not installed (apt-get install qemu-system-x86)"; exit 77; }
    accel=tcg; [[ -w /dev/kvm ]] && accel=kvm
    dir=$tmp/qemu; mkdir -p "$dir"
    "$QEMU" -S -no-shutdown -M pc -accel $accel -m 64 -display none -nodefaults -monitor none \
        -serial "file:$tmp/serial.out" -device isa-debug-exit,iobase=0xf4,iosize=0x04 -kernel "$guest" \
        -device pvpanic -action panic=pause \
        -qmp "unix:$dir/qmp,server=on,wait=off" -qmp "unix:$dir/listener.qmp,server=on,wait=off" \
        </dev/null >"$tmp/log" 2>&1 &
    pid=$!
    ;;
*) echo "usage: pillar_flow.sh anchor|qemu"; exit 64 ;;
esac

for _ in $(seq 400); do [[ -S $dir/qmp && -S $dir/listener.qmp ]] && break; sleep 0.05; done
status=0
if [[ $flow == panic ]]; then
    timeout 120 "$gobin" -panic "$tmp/core" "$dir/qmp" "$dir/listener.qmp" || status=1
else
    timeout 120 "$gobin" -guest -bench "${BENCH:-0}" -serial "$tmp/serial.out" "$dir/qmp" "$dir/listener.qmp" || status=1
fi
# After quit the process ends by itself within 5 s (pillar SIGKILLs one that does not).
for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$pid" 2>/dev/null; then
    echo "FAIL: $target still running 5 s after quit"; status=1
else
    wait "$pid"; code=$?; pid=
    echo "$target exited with status $code"
fi
if [[ $target == anchor && -e $dir ]]; then
    echo "FAIL: the anchor left its state dir $dir"; status=1
fi
if [[ $status -ne 0 ]]; then
    echo "--- $target log"; cat "$tmp/log"; echo "--- serial"; cat "$tmp/serial.out"
fi
exit $status
