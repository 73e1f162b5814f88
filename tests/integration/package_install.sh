#!/bin/bash
# The Debian package (packaging/, issue 7): cpack builds the .deb from the build directory, dpkg
# installs it into a scratch root (dpkg --root with a fresh admin dir; the maintainer scripts
# run chrootless with DPKG_ROOT set and leave the host alone), and the test checks the files
# and their modes, the package's dependencies, the tmpfiles.d entry, the systemd unit
# (systemd-analyze verify, where available), that the installed programs run, and removal.
# Skips (77) when the programs are not built or dpkg/cpack are missing.
set -u
B=${VMM_BUILD_DIR:-$(cd "$(dirname "$0")/../.." && pwd)/build}
skip() { echo "SKIP: $*"; exit 77; }
for x in vmmd/vmmd vmctl/vmctl anchor/vmm-anchor; do
    [ -x "$B/$x" ] || skip "$B/$x is not built (build vmmd vmctl vmm-anchor first)"
done
[ -f "$B/CPackConfig.cmake" ] || skip "$B/CPackConfig.cmake missing (packaging/ not configured)"
for tool in cpack dpkg dpkg-deb dpkg-shlibdeps; do
    command -v "$tool" >/dev/null || skip "$tool not found (apt-get install cmake dpkg-dev)"
done

T=$(mktemp -d /tmp/package_install.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# 1. Build the package into the scratch dir (the build dir's own output is not touched).
cpack -G DEB --config "$B/CPackConfig.cmake" -B "$T/pkg" >"$T/cpack.log" 2>&1 ||
    { cat "$T/cpack.log"; fail "cpack -G DEB failed"; }
DEB=$(ls "$T"/pkg/vmm_*.deb 2>/dev/null | head -1)
[ -n "$DEB" ] || { cat "$T/cpack.log"; fail "cpack made no vmm_*.deb"; }
echo "built $(basename "$DEB") ($(du -h "$DEB" | cut -f1))"

# 2. Control data: name, dependencies computed by dpkg-shlibdeps, maintainer scripts.
dpkg-deb -f "$DEB" Package | grep -qx vmm || fail "package name is not vmm"
DEPENDS=$(dpkg-deb -f "$DEB" Depends)
echo "Depends: $DEPENDS"
# libc6 always; libstdc++6 for vmmd/vmctl (vmm-anchor links libstdc++, spdlog, fmt, libseccomp
# and liburing statically: only libc is loaded at its start, issue #8).
for lib in libc6 libstdc++6; do
    echo "$DEPENDS" | grep -q "$lib" || fail "Depends lacks $lib (shlibdeps): $DEPENDS"
done
dpkg-deb -I "$DEB" postinst | grep -q 'systemd-tmpfiles --create' || fail "postinst does not run systemd-tmpfiles"

# 3. Install into a scratch root: an empty dpkg database is all dpkg --root needs; the
#    dependencies are not installed there (--force-depends), and the scripts run on the host
#    with DPKG_ROOT set, which they honour by doing nothing.
R=$T/root
mkdir -p "$R/var/lib/dpkg/info" "$R/var/lib/dpkg/updates"
: >"$R/var/lib/dpkg/status"
dpkg --root="$R" --force-depends --force-script-chrootless --path-include='/usr/share/doc/vmm/*' \
    -i "$DEB" >"$T/dpkg.log" 2>&1 || { cat "$T/dpkg.log"; fail "dpkg --root -i failed"; }
dpkg --root="$R" -s vmm 2>/dev/null | grep -q '^Status: install ok installed' || fail "vmm not 'install ok installed'"

# 4. Files and modes.
check_mode() {  # PATH MODE
    [ -e "$R$1" ] || fail "$1 not installed"
    local m
    m=$(stat -c %a "$R$1")
    [ "$m" = "$2" ] || fail "$1 has mode $m, expected $2"
}
check_mode /usr/bin/vmmd 755
check_mode /usr/bin/vmctl 755
check_mode /usr/bin/vmm-anchor 755
check_mode /lib/systemd/system/vmmd.service 644
check_mode /usr/lib/tmpfiles.d/vmm.conf 644
check_mode /usr/share/doc/vmm/README.md 644
check_mode /usr/share/doc/vmm/ARCHITECTURE.md 644
check_mode /usr/share/doc/vmm/SECURITY.md 644
if command -v file >/dev/null; then
    file "$R/usr/bin/vmm-anchor" | grep -q "not stripped" && fail "vmm-anchor is not stripped"
fi
grep -q '^ExecStart=/usr/bin/vmmd ' "$R/lib/systemd/system/vmmd.service" || fail "unit does not start /usr/bin/vmmd"
grep -q '^ExecStart=/usr/bin/vmmd .* --jail' "$R/lib/systemd/system/vmmd.service" || fail "unit does not jail its anchors (--jail)"
# what the jail needs: namespaces and mounts, its device nodes; the pid namespace keeper's chroot
for cap in CAP_SYS_ADMIN CAP_MKNOD CAP_CHOWN CAP_SYS_CHROOT; do
    grep -q "^CapabilityBoundingSet=.*$cap" "$R/lib/systemd/system/vmmd.service" || fail "unit's bounding set lacks $cap (the jail needs it)"
done

# 5. tmpfiles.d: /run/hypervisor, root only.
grep -Eq '^d /run/hypervisor 0700 root root' "$R/usr/lib/tmpfiles.d/vmm.conf" || fail "tmpfiles entry wrong"
if command -v systemd-tmpfiles >/dev/null; then
    systemd-tmpfiles --create --root="$R" vmm.conf >"$T/tmpfiles.log" 2>&1 ||
        { cat "$T/tmpfiles.log"; fail "systemd-tmpfiles --create failed"; }
    check_mode /run/hypervisor 700
else
    echo "note: systemd-tmpfiles not found; the entry was checked as text only"
fi

# 6. The unit: systemd-analyze verify, which also checks that ExecStart's binary exists. It
#    resolves dependencies (sysinit.target...) against the host's units, so the installed unit
#    is verified from a copy whose program paths point into R.
if command -v systemd-analyze >/dev/null; then
    mkdir -p "$T/unit"
    sed "s|=/usr/bin/|=$R/usr/bin/|g" "$R/lib/systemd/system/vmmd.service" >"$T/unit/vmmd.service"
    if systemd-analyze verify "$T/unit/vmmd.service" >"$T/verify.log" 2>&1; then
        echo "systemd-analyze verify: ok"
    else
        cat "$T/verify.log"
        fail "systemd-analyze verify rejects vmmd.service"
    fi
    # Any complaint about our unit is a failure even with exit status 0 (unknown keys are warnings).
    grep -i 'vmmd.service' "$T/verify.log" && fail "systemd-analyze verify warns about vmmd.service"
else
    echo "note: systemd-analyze not found; skipping the unit verification"
fi

# 7. The installed programs run (dependencies come from the host here).
"$R/usr/bin/vmctl" --help >"$T/vmctl.out" 2>&1 || { cat "$T/vmctl.out"; fail "installed vmctl --help failed"; }
grep -qi 'vmctl' "$T/vmctl.out" || fail "vmctl --help says nothing about vmctl"
"$R/usr/bin/vmm-anchor" --help >"$T/anchor.out" 2>&1 || fail "installed vmm-anchor --help failed"
grep -q -- '--seccomp' "$T/anchor.out" || fail "vmm-anchor --help lacks --seccomp"
# The anchor is a static PIE (start-up and memory, issue #8): no loader, no shared library,
# and still position independent (ASLR).
if command -v readelf >/dev/null; then
    needed=$(readelf -d "$R/usr/bin/vmm-anchor" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort | tr '\n' ' ')
    [ -z "$needed" ] || fail "vmm-anchor needs shared libraries: $needed"
    readelf -l "$R/usr/bin/vmm-anchor" | grep -q INTERP && fail "vmm-anchor names a dynamic loader"
    readelf -h "$R/usr/bin/vmm-anchor" | grep -q 'Type:.*DYN' || fail "vmm-anchor is not position independent"
fi
"$R/usr/bin/vmmd" --help >/dev/null 2>&1 || fail "installed vmmd --help failed"

# 8. Removal takes every file with it.
dpkg --root="$R" --force-script-chrootless -r vmm >"$T/remove.log" 2>&1 || { cat "$T/remove.log"; fail "dpkg -r failed"; }
for f in /usr/bin/vmmd /usr/bin/vmm-anchor /lib/systemd/system/vmmd.service /usr/lib/tmpfiles.d/vmm.conf; do
    [ ! -e "$R$f" ] || fail "$f left after dpkg -r"
done
echo "PASS: package builds, installs into $R, verifies and removes cleanly"
