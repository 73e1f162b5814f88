#!/bin/bash
# The controller scenario of issue 5: a controller drops three manifests in vmmd's spool
# directory (two kvm domains run by tests/tools/fake_anchor, one null domain) and all three run;
# vmmd is killed with SIGKILL and restarted, and adopts all three still running; a changed
# manifest restarts its domain; a removed manifest stops its domain cleanly; vmctl shows it all,
# and `vmctl dump` writes a domain's memory (or says why it cannot).
# With VMM_CONTROLLER_ANCHOR=real (tests/integration/vmmd_controller_kvm.sh) the kvm domains are
# real vmm-anchors running tests/guests/idle.bin under KVM, and `vmctl console` is driven
# under a pty (script(1)) as a user would: it shows the guest's line, Ctrl-] detaches.
set -u
B=${VMM_BUILD_DIR:-$(cd "$(dirname "$0")/../.." && pwd)/build}
VMMD=$B/vmmd/vmmd VMCTL=$B/vmctl/vmctl FAKE=$B/tests/tools/fake_anchor
REAL=${VMM_CONTROLLER_ANCHOR:-fake}
if [ "$REAL" = real ]; then
    [ -e /dev/kvm ] || { echo "SKIP: /dev/kvm missing: the real anchor needs KVM"; exit 77; }
    FAKE=$B/anchor/vmm-anchor
    GUEST=$B/tests/guests/idle.bin
    [ -f "$GUEST" ] || { echo "SKIP: $GUEST is not built"; exit 77; }
fi
for x in "$VMMD" "$VMCTL" "$FAKE"; do
    [ -x "$x" ] || { echo "SKIP: $x is not built"; exit 77; }
done

T=$(mktemp -d /tmp/vmmd_controller.XXXXXX)
RUN=$T/run SPOOL=$T/spool SOCK=$T/vmmd.sock
mkdir -p "$SPOOL"
VMMD_PID=
cleanup() {
    [ -n "$VMMD_PID" ] && kill -9 "$VMMD_PID" 2>/dev/null
    for f in "$RUN"/kvm/*/pid; do [ -e "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null; done
    rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; echo "--- vmmd log"; tail -40 "$T/vmmd.log"; exit 1; }
vmctl() { "$VMCTL" --socket "$SOCK" "$@"; }
# alive PID: a process that has not exited (an orphaned anchor may linger as a zombie until
# whoever adopted it reaps it).
alive() { [ -e "/proc/$1/stat" ] && ! sed 's/.*) //' "/proc/$1/stat" | grep -q '^Z'; }

# Usage errors (64) that leave nothing running: --systemd-slice without systemd as init (where
# it is not), and together with --cgroup-parent.
touch "$T/vmmd.log"
if [ ! -d /run/systemd/system ]; then
    "$VMMD" --run-dir "$RUN" --socket "$SOCK" --systemd-slice machine.slice >"$T/out" 2>&1
    rc=$?
    [ $rc -eq 64 ] || fail "vmmd --systemd-slice without systemd: status $rc"
    grep -q "systemd is not the init system here" "$T/out" || fail "vmmd --systemd-slice without systemd said: $(cat "$T/out")"
fi
"$VMMD" --run-dir "$RUN" --socket "$SOCK" --systemd-slice machine.slice --cgroup-parent vmm >"$T/out" 2>&1
rc=$?
[ $rc -eq 64 ] || fail "vmmd --systemd-slice --cgroup-parent: status $rc"
grep -q "excludes" "$T/out" || fail "vmmd --systemd-slice --cgroup-parent said: $(cat "$T/out")"
[ -e "$SOCK" ] && fail "a refused vmmd left its socket"

start_vmmd() {
    "$VMMD" --run-dir "$RUN" --socket "$SOCK" --manifest-dir "$SPOOL" --anchor "$FAKE" \
        --hypervisors kvm,null --stop-timeout 5 --log-level info >>"$T/vmmd.log" 2>&1 &
    VMMD_PID=$!
    for _ in $(seq 100); do [ -S "$SOCK" ] && vmctl list >/dev/null 2>&1 && return 0; sleep 0.1; done
    fail "vmmd did not come up"
}
# wait_for DESCRIPTION COMMAND...: retries the command for up to 10 s.
wait_for() {
    local what=$1; shift
    for _ in $(seq 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
    fail "timed out waiting for: $what"
}
state_of() { vmctl info "$1" --json | sed -n 's/^  "state": "\(.*\)",$/\1/p'; }
is_state() { [ "$(state_of "$1")" = "$2" ]; }
drop() {  # drop NAME HYPERVISOR VCPUS: written aside, renamed in, as a controller does
    if [ "$REAL" = real ] && [ "$2" = kvm ]; then
        printf '{"name":"%s","hypervisor":"kvm","vcpus":%s,"memory_mb":16,"kernel":"%s",%s}\n' "$1" "$3" "$GUEST" \
            '"flat":{"load_address":"0x100000","entry":"0x100000","mode":"protected32"}' >"$SPOOL/.$1.json.tmp"
    else
        printf '{"name":"%s","hypervisor":"%s","vcpus":%s,"memory_mb":64,"kernel":"%s/kernel.bin"}\n' \
            "$1" "$2" "$3" "$T" >"$SPOOL/.$1.json.tmp"
    fi
    mv "$SPOOL/.$1.json.tmp" "$SPOOL/$1.json"
}
echo "x" >"$T/kernel.bin"

start_vmmd
drop alpha kvm 1
drop beta kvm 2
drop gamma null 4
for d in alpha beta gamma; do wait_for "$d running" is_state $d running; done
echo "--- three manifests dropped:"
vmctl list
ALPHA=$(cat "$RUN/kvm/alpha/pid") BETA=$(cat "$RUN/kvm/beta/pid")
alive "$ALPHA" && alive "$BETA" || fail "the anchors are not running"
if [ "$REAL" = real ]; then
    # vmctl console under a pty, as a user runs it: the guest's line (said before anyone was
    # attached, replayed from the console's buffer), then Ctrl-] detaches with status 0.
    command -v script >/dev/null || fail "script(1) (util-linux) is missing"
    out=$( (sleep 3; printf '\035') | timeout 30 script -qec "$VMCTL --socket $SOCK console alpha" /dev/null 2>&1 ); rc=$?
    echo "--- vmctl console alpha (status $rc):"; printf '%s\n' "$out" | tr -d '\r' | head -5
    [ $rc -eq 0 ] || fail "vmctl console did not detach on Ctrl-] (status $rc)"
    printf '%s' "$out" | grep -q "idle: up" || fail "vmctl console did not show the guest's line"
fi

# vmctl dump: a null domain has no anchor to dump; the fake anchor has no guest memory (its
# refusal is the error, and the file vmctl made is gone again); a real anchor writes an ELF core
# through the descriptor vmctl passed it, an existing file needs --force, and the domain runs on.
vmctl dump gamma "$T/gamma.core" >"$T/out" 2>&1 && fail "vmctl dump of a null domain succeeded"
grep -q "dump needs a kvm domain; 'gamma' runs on null" "$T/out" || fail "vmctl dump gamma: $(cat "$T/out")"
[ -e "$T/gamma.core" ] && fail "vmctl dump gamma made a file"
if [ "$REAL" = real ]; then
    vmctl dump alpha "$T/alpha.core" || fail "vmctl dump alpha"
    [ "$(head -c 4 "$T/alpha.core" | od -An -c | tr -d ' ')" = '177ELF' ] || fail "alpha.core is no ELF file"
    [ "$(stat -c %a "$T/alpha.core")" = 600 ] || fail "alpha.core is not mode 0600"
    vmctl dump alpha "$T/alpha.core" >"$T/out" 2>&1 && fail "vmctl dump overwrote a file without --force"
    grep -q "exists (--force overwrites it)" "$T/out" || fail "vmctl dump alpha again: $(cat "$T/out")"
    vmctl dump --force alpha "$T/alpha.core" || fail "vmctl dump --force alpha"
    is_state alpha running || fail "alpha does not run after its dump"
    echo "--- vmctl dump alpha: $(stat -c %s "$T/alpha.core") bytes"
else
    vmctl dump alpha "$T/alpha.core" >"$T/out" 2>&1 && fail "the fake anchor dumped"
    grep -q "this domain has no guest memory to dump" "$T/out" || fail "vmctl dump alpha: $(cat "$T/out")"
    [ -e "$T/alpha.core" ] && fail "the failed dump left its file"
fi

kill -9 "$VMMD_PID"
wait "$VMMD_PID" 2>/dev/null
VMMD_PID=
alive "$ALPHA" && alive "$BETA" || fail "killing vmmd killed a domain"
start_vmmd
echo "--- after vmmd was killed with SIGKILL and restarted:"
vmctl list
for d in alpha beta gamma; do is_state $d running || fail "$d is not running after the restart"; done
vmctl info alpha --json | grep -q '"adopted": true' || fail "alpha was not adopted"
[ "$(cat "$RUN/kvm/alpha/pid")" = "$ALPHA" ] || fail "alpha's anchor changed"
vmctl info beta | grep -q "^pid: $BETA\$" || fail "vmctl info beta does not show its anchor pid $BETA"

drop alpha kvm 3
wait_for "alpha restarted with 3 vCPUs" bash -c "'$VMCTL' --socket '$SOCK' info alpha --json | grep -q '\"vcpus\": 3'"
wait_for "alpha running again" is_state alpha running
alive "$ALPHA" && fail "alpha's old anchor $ALPHA survived the restart"
echo "--- alpha's manifest changed: restarted"

rm "$SPOOL/beta.json"
wait_for "beta stopped" is_state beta stopped
alive "$BETA" && fail "beta's anchor $BETA is still alive"
[ -e "$RUN/kvm/beta" ] && fail "beta's state directory is left behind"
vmctl info beta | grep -q "crashed" && fail "beta did not stop cleanly"
echo "--- beta's manifest removed:"
vmctl list
vmctl info beta
for d in alpha gamma; do is_state $d running || fail "$d stopped too"; done
vmctl stop alpha --timeout 2 || fail "vmctl stop alpha"
echo "PASS"
