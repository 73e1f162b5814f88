#!/bin/bash
# QMP peer comparison: the same exchange script against qemu-system-x86_64 -M none and against
# vmm's QmpServer (tests/tools/qmp_fake_domain), comparing the shapes of the answers: keys,
# error classes, event names, ids, message order (tests/tools/qmp_exchange.cpp says what a
# shape keeps). Values such as versions and error descriptions are not compared; where the
# descriptions differ, they are printed for information.
#
# Deliberate differences, kept out of the comparison:
#  - the greeting's capabilities: QEMU offers ["oob"], vmm offers [] (no out-of-band
#    execution); so qmp_capabilities {"enable": ["oob"]} succeeds on QEMU and is a
#    GenericError on vmm ("Capability oob not available"), and is not in the script;
#  - one QEMU socket chardev serves one client at a time; a vmm socket serves several;
#  - query-version reports the QEMU release whose QMP vmm follows and package "vmm";
#  - numbers QEMU cannot represent (1e999) it prints as "inf" (not JSON); vmm prints null.
# Exit 77 (skip) when qemu-system-x86_64 is missing.
set -euo pipefail

QEMU=$(command -v qemu-system-x86_64 || true)
[[ -n "$QEMU" ]] || { echo "SKIP: qemu-system-x86_64 not installed"; exit 77; }
SRC=${VMM_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${VMM_BUILD_DIR:-$SRC/build}
TOOLS=$BUILD/tests/tools
for t in qmp_fake_domain qmp_exchange; do
    [[ -x $TOOLS/$t ]] || { echo "FAIL: $TOOLS/$t not built"; exit 1; }
done

tmp=$(mktemp -d /tmp/qmp-peer.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

cat >"$tmp/script" <<'EOF'
# before negotiation
{"execute": "query-status", "id": 1}
{"execute": "no-such-command"}
{"exec-oob": "query-status"}
{"execute": "qmp_capabilities", "arguments": {"bogus": 1}}
{"execute": "qmp_capabilities", "id": "caps"}
{"execute": "qmp_capabilities"}
# ids echoed as given
{"execute": "query-status", "id": {"a": [1, "b", null]}}
{"execute": "query-status", "id": [1, 2]}
{"execute": "query-status", "id": -7}
{"execute": "query-status", "id": 2.5}
{"execute": "query-status", "id": null}
# error shapes
[1, 2]
3
"x"
{}
{"id": 5}
{"execute": 1, "id": 6}
{"execute": "query-status", "arguments": [1]}
{"execute": "query-status", "foo": 1}
{"execute": "no-such-command", "id": 7}
{"execute": "query-status", "arguments": {"x": 1}, "id": 8}
{"execute": "human-monitor-command", "id": 9}
{"execute": "human-monitor-command", "arguments": {"command-line": 5}}
{"execute": "human-monitor-command", "arguments": {"command-line": "info status", "x": 1}}
# JSON parse errors and resync
{"a" 1}
{"a": 1,}
}
{"execute": "query-status" "x"}
{"execute": tru}
{"execute": "\uZZZZ"}
\x01
{"execute": @abc, "x": [1,2]}
{"execute": "a\xff"}
{'execute': 'query-status', 'id': 'single-quoted'}
{"execute": "query-status", "id": "split"
}
{"execute": "query-status", "id": "c1"}{"execute": "query-name", "id": "c2"}
# commands
{"execute": "query-commands"}
{"execute": "query-version"}
{"execute": "query-name"}
{"execute": "query-status"}
{"execute": "query-cpus-fast"}
{"execute": "query-block"}
{"execute": "query-chardev"}
{"execute": "human-monitor-command", "arguments": {"command-line": "info status"}}
{"execute": "stop", "id": "stop"}
{"execute": "query-status"}
{"execute": "human-monitor-command", "arguments": {"command-line": "info status"}}
{"execute": "stop"}
{"execute": "cont", "id": "cont"}
{"execute": "cont"}
{"execute": "system_reset"}
{"execute": "system_powerdown"}
@eof {"execute": "quit", "id": "quit"}
EOF

"$QEMU" -M none -display none -nodefaults -name fake \
    -qmp "unix:$tmp/qemu.sock,server=on,wait=off" >"$tmp/qemu.log" 2>&1 &
qemu_pid=$!
pids+=("$qemu_pid")
"$TOOLS/qmp_fake_domain" --socket "$tmp/vmm.sock" --name fake --state running --vcpus 0 \
    >"$tmp/vmm.log" 2>&1 &
vmm_pid=$!
pids+=("$vmm_pid")

"$TOOLS/qmp_exchange" "$tmp/qemu.sock" "$tmp/script" "$tmp/qemu.shapes" "$tmp/qemu.raw"
"$TOOLS/qmp_exchange" "$tmp/vmm.sock" "$tmp/script" "$tmp/vmm.shapes" "$tmp/vmm.raw"

status=0
# Both peers exit after quit.
for name in qemu vmm; do
    pid_var=${name}_pid
    for _ in $(seq 100); do kill -0 "${!pid_var}" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "${!pid_var}" 2>/dev/null; then
        echo "FAIL: $name still running 10 s after quit"
        status=1
    fi
done

steps=$(grep -c '^>' "$tmp/vmm.shapes")
if diff -u "$tmp/qemu.shapes" "$tmp/vmm.shapes" >"$tmp/shapes.diff"; then
    echo "shapes: identical over $steps steps"
else
    echo "FAIL: QMP shapes differ (- qemu, + vmm):"
    cat "$tmp/shapes.diff"
    status=1
fi
if ! diff -q "$tmp/qemu.raw" "$tmp/vmm.raw" >/dev/null; then
    echo "note: values differ (not compared; - qemu, + vmm):"
    diff -u "$tmp/qemu.raw" "$tmp/vmm.raw" | grep -E '^[-+] ' | grep -v timestamp | cut -c1-240 | head -60 || true
fi
if [[ $status -eq 0 ]]; then echo "1 passed, 0 failed"; else echo "0 passed, 1 failed"; fi
exit $status
