#!/bin/bash
# The Debian package under a real systemd (packaging/, issue 7). package_install.sh checks the
# .deb's files in a scratch root; this test installs it for real, as an operator does, on a
# system whose PID 1 is systemd, and runs a jailed KVM domain through the packaged unit:
#   - dpkg -i: the postinst creates /run/hypervisor (tmpfiles), enables and starts vmmd.service;
#   - the unit's hardening holds in vmmd: NoNewPrivs, its capability bounding set, /usr
#     read-only (ProtectSystem=full), a private /tmp;
#   - vmctl start runs tests/guests/idle.bin jailed (the unit's --jail): the anchor is in its
#     scope machine.slice/vmm-idle.scope with the manifest's limits (the unit's
#     --systemd-slice), in a mount namespace of its own, seccomp-filtered, and its guest says
#     "idle: up";
#   - systemctl restart vmmd: the domain survives (KillMode=process) and the new vmmd adopts it;
#   - a site's drop-in adding --jail-uids (and SETUID/SETGID to the bounding set): the next
#     domain's anchor runs as the range's first uid;
#   - a drop-in adding --jail-pid-ns: the pid file names the keeper, the anchor is pid 1 of its
#     own namespace, and both are in the domain's scope;
#   - vmctl stop, systemctl stop, dpkg -r: nothing is left running or installed.
# There is no systemd PID 1 on the host (nor, in CI, /dev/kvm), so the host side builds the
# .deb with cpack and boots the nested-KVM VM with systemd as its init
# (tests/nested/run-in-l1.sh --systemd), where this script runs again with --inside.
# Skips (77) when the programs, the guest, cpack, qemu or systemd are missing.
set -u
skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }

if [ "${1:-}" != --inside ]; then
    B=${VMM_BUILD_DIR:-$(cd "$(dirname "$0")/../.." && pwd)/build}
    S=${VMM_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
    for x in vmmd/vmmd vmctl/vmctl anchor/vmm-anchor tests/guests/idle.bin; do
        [ -e "$B/$x" ] || skip "$B/$x is not built"
    done
    [ -f "$B/CPackConfig.cmake" ] || skip "$B/CPackConfig.cmake missing (packaging/ not configured)"
    command -v cpack >/dev/null || skip "cpack not found (apt-get install cmake)"
    [ -x /lib/systemd/systemd ] || skip "no /lib/systemd/systemd to boot in the VM (apt-get install systemd)"
    # The VM shares the host's root read-only but mounts its own /tmp, /run and /dev: the
    # source tree (this script, the build, the package built under it) is shared at its path.
    case $B/ in "$S"/*) ;; *) skip "the build directory $B is not inside the source tree $S (the VM shares that one directory)" ;; esac
    T=$(mktemp -d "$B/package_systemd.XXXXXX")
    trap 'rm -rf "$T"' EXIT
    cpack -G DEB --config "$B/CPackConfig.cmake" -B "$T" >"$T/cpack.log" 2>&1 ||
        { cat "$T/cpack.log"; fail "cpack -G DEB failed"; }
    DEB=$(ls "$T"/vmm_*.deb 2>/dev/null | head -1)
    [ -n "$DEB" ] || fail "cpack made no vmm_*.deb"
    echo "built $(basename "$DEB"); booting the nested VM with systemd as PID 1"
    exec "$S/tests/nested/run-in-l1.sh" --systemd --timeout "${VMM_L1_TIMEOUT:-800}" --share "$S" -- \
        bash "$S/tests/integration/package_systemd_l1.sh" --inside "$DEB" "$B/tests/guests/idle.bin"
fi

# ---- inside the VM, as a systemd service's command ----
DEB=$2 GUEST=$3
[ "$(cat /proc/1/comm)" = systemd ] || fail "PID 1 is $(cat /proc/1/comm), not systemd"
[ -c /dev/kvm ] || skip "the VM has no /dev/kvm"
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
journal() { echo "--- journalctl -u vmmd:"; journalctl -u vmmd --no-pager -o cat 2>&1 | tail -n 40; }
die() { echo "FAIL: $*"; journal; exit 1; }
# wait_for DESCRIPTION COMMAND...: retries the command for up to 20 s.
wait_for() {
    local what=$1; shift
    for _ in $(seq 200); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
    die "timed out waiting for $what"
}
SOCK=/run/hypervisor/vmmd.sock
vmctl_ok() { vmctl list >/dev/null 2>&1; }
state_of() { vmctl info "$1" --json | sed -n 's/^  "state": "\(.*\)",$/\1/p'; }
is_state() { [ "$(state_of "$1")" = "$2" ]; }
echo "systemd $(systemctl --version | sed -n '1s/^systemd \([0-9]*\).*/\1/p') is PID 1; $(systemctl is-system-running 2>&1)"

# 1. Install as an operator does. The postinst starts the daemon.
dpkg -i "$DEB" >/tmp/dpkg.log 2>&1 || { cat /tmp/dpkg.log; die "dpkg -i failed"; }
cat /tmp/dpkg.log | grep -v '^(Reading database' || true
[ "$(systemctl is-enabled vmmd.service)" = enabled ] || die "postinst did not enable vmmd.service"
wait_for "vmmd.service active" bash -c '[ "$(systemctl is-active vmmd.service)" = active ]'
wait_for "vmmd's API socket" vmctl_ok
[ "$(stat -c '%a %U' /run/hypervisor)" = "700 root" ] || die "/run/hypervisor is $(stat -c '%a %U' /run/hypervisor)"
PID=$(systemctl show -p MainPID --value vmmd.service)
[ "$(cat /proc/$PID/comm)" = vmmd ] || die "vmmd.service's main process $PID is $(cat /proc/$PID/comm)"
echo "vmmd.service active, pid $PID"

# 2. The unit's hardening, as the kernel sees it in vmmd.
grep -q '^NoNewPrivs:[[:space:]]*1$' /proc/$PID/status || die "vmmd runs without NoNewPrivs"
want=0  # CapabilityBoundingSet= in packaging/vmmd.service
for c in 0 1 3 5 8 12 14 18 21 24 27; do want=$((want | (1 << c))); done
have=$((16#$(sed -n 's/^CapBnd:[[:space:]]*//p' /proc/$PID/status)))
[ "$have" = "$want" ] || die "vmmd's bounding set is $(printf %x $have), the unit says $(printf %x $want)"
nsenter -t "$PID" -m touch /usr/vmm-probe 2>/tmp/ro.err && die "vmmd can write /usr (ProtectSystem=full)"
grep -q "Read-only file system" /tmp/ro.err || die "writing /usr in vmmd's namespace: $(cat /tmp/ro.err)"
touch /tmp/vmm-host-probe
nsenter -t "$PID" -m test -e /tmp/vmm-host-probe && die "vmmd sees the host's /tmp (PrivateTmp=yes)"
echo "hardening: NoNewPrivs, CapBnd $(printf %x $have), /usr read-only, private /tmp"

# 3. A jailed domain through the unit. Manifest and guest live outside /tmp: vmmd has its own
#    (PrivateTmp=yes), so an image under a /tmp checkout would not be there for it.
mkdir -p /var/lib/vmm-test
cp "$GUEST" /var/lib/vmm-test/idle.bin
GUEST=/var/lib/vmm-test/idle.bin
cat >/var/lib/vmm-test/idle.json <<EOF
{ "name": "idle", "vcpus": 1, "memory_mb": 16, "kernel": "$GUEST", "cpu_quota": 0.5,
  "flat": { "load_address": "0x100000", "entry": "0x100000", "mode": "protected32" } }
EOF
vmctl start /var/lib/vmm-test/idle.json || die "vmctl start"
is_state idle running || die "idle is $(state_of idle) after vmctl start"
ANCHOR=$(cat /run/hypervisor/kvm/idle/pid)
[ "$(cat /proc/$ANCHOR/comm)" = vmm-anchor ] || die "pid file names $ANCHOR, which is $(cat /proc/$ANCHOR/comm)"
# The unit's --systemd-slice: the anchor's cgroup is a scope of machine.slice with its limits.
SCOPE=/sys/fs/cgroup/machine.slice/vmm-idle.scope
grep -q '^0::/machine.slice/vmm-idle.scope$' /proc/$ANCHOR/cgroup ||
    die "the anchor is not in its scope vmm-idle.scope: $(cat /proc/$ANCHOR/cgroup)"
[ "$(systemctl is-active vmm-idle.scope)" = active ] || die "systemd does not know vmm-idle.scope as active"
[ "$(cat $SCOPE/cpu.max)" = "50000 100000" ] || die "the scope's cpu.max is $(cat $SCOPE/cpu.max), cpu_quota 0.5 asks 50000 100000"
MEMMAX=$(cat $SCOPE/memory.max)
[[ $MEMMAX =~ ^[0-9]+$ ]] && [ "$MEMMAX" -gt $((16 << 20)) ] || die "the scope's memory.max is $MEMMAX, not guest RAM plus overhead"
# The jail: a mount namespace of its own whose root holds the domain's files, not the host's.
[ "$(readlink /proc/$ANCHOR/ns/mnt)" != "$(readlink /proc/$PID/ns/mnt)" ] || die "the anchor shares vmmd's mount namespace"
[ -e "/proc/$ANCHOR/root$GUEST" ] || die "the guest image $GUEST is not in the anchor's jail"
[ -e /proc/$ANCHOR/root/usr/bin/vmmd ] && die "the anchor's jail holds the host's /usr"
grep -q '^Seccomp:[[:space:]]*2$' /proc/$ANCHOR/status || die "the anchor has no seccomp filter"
grep -q '^NoNewPrivs:[[:space:]]*1$' /proc/$ANCHOR/status || die "the anchor runs without NoNewPrivs"
wait_for "the guest's line on its console log" grep -q "idle: up" /run/hypervisor/kvm/idle/console.log
echo "domain idle running jailed: anchor $ANCHOR in machine.slice/vmm-idle.scope (cpu.max 50000 100000, memory.max $MEMMAX), a mount namespace of its own, seccomp on"

# 4. Restarting the service keeps the domain; the new vmmd adopts it.
systemctl restart vmmd.service || die "systemctl restart vmmd"
NEW=$(systemctl show -p MainPID --value vmmd.service)
[ "$NEW" != "$PID" ] || die "vmmd.service kept pid $PID across a restart"
wait_for "vmmd's API socket after the restart" vmctl_ok
kill -0 "$ANCHOR" 2>/dev/null || die "the anchor died with the old vmmd"
wait_for "idle adopted and running" is_state idle running
vmctl info idle --json | grep -q '"adopted": true' || die "idle was not adopted: $(vmctl info idle --json)"
grep -q '^0::/machine.slice/vmm-idle.scope$' /proc/$ANCHOR/cgroup || die "the restart moved the anchor: $(cat /proc/$ANCHOR/cgroup)"
echo "systemctl restart vmmd: vmmd $PID -> $NEW, anchor $ANCHOR adopted"

vmctl stop idle --timeout 5 || die "vmctl stop idle"
wait_for "the anchor gone" bash -c "! kill -0 $ANCHOR 2>/dev/null"
wait_for "the scope collected" bash -c "[ ! -d $SCOPE ]"

# 5. A site's drop-in gives every domain a uid of its own (docs/SECURITY.md: --jail-uids needs
#    CAP_SETUID and CAP_SETGID added to the unit's bounding set).
mkdir -p /etc/systemd/system/vmmd.service.d
cat >/etc/systemd/system/vmmd.service.d/jail-uids.conf <<EOF
[Service]
ExecStart=
ExecStart=$(sed -n 's/^ExecStart=//p' /lib/systemd/system/vmmd.service) --jail-uids 70000-70009
CapabilityBoundingSet=CAP_SETUID CAP_SETGID
EOF
systemctl daemon-reload && systemctl restart vmmd.service || die "restart with the drop-in"
wait_for "vmmd's API socket with the drop-in" vmctl_ok
vmctl start /var/lib/vmm-test/idle.json >/dev/null || die "vmctl start with --jail-uids"
ANCHOR=$(cat /run/hypervisor/kvm/idle/pid)
grep -q '^Uid:[[:space:]]*70000[[:space:]]*70000[[:space:]]*70000[[:space:]]*70000$' /proc/$ANCHOR/status ||
    die "the anchor does not run as uid 70000: $(grep -E '^(Uid|Gid):' /proc/$ANCHOR/status)"
wait_for "the guest's line as uid 70000" grep -q "idle: up" /run/hypervisor/kvm/idle/console.log
echo "with --jail-uids 70000-70009 (a drop-in): anchor $ANCHOR runs as uid 70000"
vmctl stop idle --timeout 5 >/dev/null || die "vmctl stop idle (uid 70000)"
wait_for "the anchor gone" bash -c "! kill -0 $ANCHOR 2>/dev/null"
rm -r /etc/systemd/system/vmmd.service.d && systemctl daemon-reload

# 5b. A drop-in gives every anchor a pid namespace of its own (--jail-pid-ns): the pid file names
#     the keeper vmmd spawned; the anchor, its child, is pid 1 of its namespace, and both are in
#     the domain's scope (vmmd moves the child there after systemd placed the keeper).
mkdir -p /etc/systemd/system/vmmd.service.d
cat >/etc/systemd/system/vmmd.service.d/pid-ns.conf <<EOF
[Service]
ExecStart=
ExecStart=$(sed -n 's/^ExecStart=//p' /lib/systemd/system/vmmd.service) --jail-pid-ns
EOF
systemctl daemon-reload && systemctl restart vmmd.service || die "restart with the pid-ns drop-in"
wait_for "vmmd's API socket with --jail-pid-ns" vmctl_ok
vmctl start /var/lib/vmm-test/idle.json >/dev/null || die "vmctl start with --jail-pid-ns"
is_state idle running || die "idle is $(state_of idle) with --jail-pid-ns"
KEEPER=$(cat /run/hypervisor/kvm/idle/pid)
ANCHOR=$(cat /proc/$KEEPER/task/$KEEPER/children | tr -d ' ')
[[ $ANCHOR =~ ^[0-9]+$ ]] || die "the keeper $KEEPER has no single child: '$ANCHOR'"
grep -q "^NSpid:[[:space:]]*$ANCHOR[[:space:]]*1$" /proc/$ANCHOR/status ||
    die "the anchor is not pid 1 of a namespace: $(grep NSpid /proc/$ANCHOR/status)"
for P in $KEEPER $ANCHOR; do
    grep -q '^0::/machine.slice/vmm-idle.scope$' /proc/$P/cgroup || die "pid $P is not in vmm-idle.scope: $(cat /proc/$P/cgroup)"
done
[ -e "/proc/$ANCHOR/root$GUEST" ] && [ ! -e /proc/$ANCHOR/root/usr/bin/vmmd ] || die "the anchor is not jailed"
wait_for "the guest's line in a pid namespace" grep -q "idle: up" /run/hypervisor/kvm/idle/console.log
echo "with --jail-pid-ns (a drop-in): keeper $KEEPER and anchor $ANCHOR (pid 1 inside) in vmm-idle.scope"
vmctl stop idle --timeout 5 >/dev/null || die "vmctl stop idle (pid namespace)"
wait_for "keeper and anchor gone" bash -c "! kill -0 $KEEPER 2>/dev/null && ! kill -0 $ANCHOR 2>/dev/null"
wait_for "the scope collected" bash -c "[ ! -d $SCOPE ]"
rm -r /etc/systemd/system/vmmd.service.d && systemctl daemon-reload

# 6. Everything stops and goes.
systemctl stop vmmd.service || die "systemctl stop vmmd"
[ "$(systemctl is-active vmmd.service)" = inactive ] || die "vmmd.service is $(systemctl is-active vmmd.service) after stop"
pgrep -x vmm-anchor >/dev/null && die "an anchor outlived the stopped service: $(pgrep -a -x vmm-anchor)"
journalctl -u vmmd --no-pager -o cat | grep -q . || die "journald has nothing from vmmd"
dpkg -r vmm >/tmp/dpkg-r.log 2>&1 || { cat /tmp/dpkg-r.log; die "dpkg -r vmm"; }
[ ! -e /lib/systemd/system/vmmd.service ] || die "the unit outlived dpkg -r"
systemctl cat vmmd.service >/dev/null 2>&1 && die "systemd still knows vmmd.service after dpkg -r"
echo "PASS: the package installs, starts under systemd, runs a jailed domain, restarts, stops, removes"
