#!/usr/bin/env bash
# run-in-l1.sh — run a command inside a throw-away L1 Linux VM that has a
# working /dev/kvm, on a host WITHOUT /dev/kvm.
#
# The L1 VM is booted with QEMU's TCG emulator and an emulated AMD SVM CPU
# (TCG implements SVM incl. nested paging); inside it, kvm_amd is loaded and
# the command runs with real (nested, emulated) KVM.
#
# Usage: run-in-l1.sh [--timeout SECONDS] [--share HOSTDIR] [--systemd] [--verbose] -- COMMAND...
#
# The host's root filesystem is shared read-only (virtio-fs) and becomes the
# L1's root via chroot, with a tmpfs overlay on top (writes outside HOSTDIR are
# discarded when the VM exits). HOSTDIR (default: $PWD) is shared read-write at
# the same absolute path. COMMAND runs in the caller's cwd with the caller's
# exported environment, as root, stdin=/dev/null; its stdout+stderr are printed
# (merged, via the serial console).
#
# --systemd: the L1 root then boots the host's systemd as PID 1 (switch_root; fstab ignored,
# units from the host's root, writes to the tmpfs overlay), and COMMAND runs as a oneshot
# service of its own target (vmm-nested.target = basic.target + the command) once basic.target
# is up; the VM powers off when it ends. For tests of what runs under a real service manager
# (the packaged vmmd.service).
#
# Exit status: COMMAND's exit status; 77 if the L1 VM cannot provide /dev/kvm
# (or the required tools are unavailable); 124 on timeout; 125 if the VM failed
# in some other way.
#
# Environment:
#   VMM_NESTED_CACHE        cache dir (default ${XDG_CACHE_HOME:-$HOME/.cache}/vmm-nested)
#   VMM_NESTED_KERNEL_DEB   use this linux-image .deb instead of downloading one
#   VMM_NESTED_KERNEL_PKG   meta package to resolve (default linux-image-cloud-amd64)
#   VMM_NESTED_CPU          QEMU -cpu (default qemu64,+svm,+npt)
#   VMM_NESTED_MEM          L1 memory in MiB (default 2048)
#   VMM_NESTED_SMP          L1 vCPUs (default 1)
#   VMM_NESTED_KVM_AMD_ARGS kvm_amd module parameters (default "nested=1")
#   VMM_NESTED_TRANSPORT    auto (default; virtio-fs if possible, else 9p), virtiofs or 9p
#   VMM_NESTED_VERBOSE=1    same as --verbose: show the whole L1 console
#   VMM_NESTED_IOMMU        1 (default): a q35 machine with an emulated Intel IOMMU and
#                           two PCI functions for VFIO tests: QEMU's "edu" device (MSI, DMA)
#                           and a modern virtio-blk-pci behind the IOMMU (iommu_platform,
#                           MSI-X) on a scratch 1 MiB image; vfio-pci and
#                           vfio_iommu_type1 are loaded in L1. 0: the plain i440fx machine.
set -euo pipefail

PROG=${0##*/}
SCRIPT_PATH=$(readlink -f "$0")
die()  { echo "$PROG: $*" >&2; exit 125; }
skip() { echo "$PROG: SKIP: $*" >&2; exit 77; }
log()  { [[ $VERBOSE == 1 ]] && echo "$PROG: $*" >&2; return 0; }

usage() { sed -n '2,/^set -euo/p' "$SCRIPT_PATH" | sed '$d; s/^# \{0,1\}//'; }

TIMEOUT=600
SHARE=$PWD
INIT_MODE=chroot
VERBOSE=${VMM_NESTED_VERBOSE:-0}
while [[ $# -gt 0 ]]; do
    case $1 in
        --timeout) TIMEOUT=${2:?}; shift 2 ;;
        --timeout=*) TIMEOUT=${1#*=}; shift ;;
        --share) SHARE=${2:?}; shift 2 ;;
        --share=*) SHARE=${1#*=}; shift ;;
        --systemd) INIT_MODE=systemd; shift ;;
        --verbose|-v) VERBOSE=1; shift ;;
        -h|--help) usage; exit 0 ;;
        --) shift; break ;;
        *) break ;;
    esac
done
[[ $# -gt 0 ]] || { usage >&2; exit 2; }
[[ $TIMEOUT =~ ^[0-9]+$ ]] || die "--timeout needs a number of seconds"
[[ -d $SHARE ]] || die "--share: $SHARE is not a directory"
SHARE=$(readlink -f "$SHARE")
CWD=$(pwd -P)

CACHE=${VMM_NESTED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vmm-nested}
CPU=${VMM_NESTED_CPU:-qemu64,+svm,+npt}
MEM=${VMM_NESTED_MEM:-2048}
SMP=${VMM_NESTED_SMP:-1}
KVM_AMD_ARGS=${VMM_NESTED_KVM_AMD_ARGS:-nested=1}
KPKG=${VMM_NESTED_KERNEL_PKG:-linux-image-cloud-amd64}
IOMMU=${VMM_NESTED_IOMMU:-1}

QEMU=$(command -v qemu-system-x86_64) || skip "qemu-system-x86_64 not found (apt-get install qemu-system-x86)"
BUSYBOX=$(command -v busybox || true)
[[ -n $BUSYBOX ]] && ldd "$BUSYBOX" >/dev/null 2>&1 && BUSYBOX=""   # must be static
[[ -z $BUSYBOX && -x /bin/busybox ]] && ! ldd /bin/busybox >/dev/null 2>&1 && BUSYBOX=/bin/busybox
[[ -n $BUSYBOX ]] || skip "static busybox not found (apt-get install busybox-static)"
command -v cpio >/dev/null || skip "cpio not found (apt-get install cpio)"
command -v dpkg-deb >/dev/null || skip "dpkg-deb not found"

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9   # serialise cache preparation between concurrent runs

# ---------------------------------------------------------------- kernel ----
find_deb() {
    if [[ -n ${VMM_NESTED_KERNEL_DEB:-} ]]; then
        [[ -f $VMM_NESTED_KERNEL_DEB ]] || skip "VMM_NESTED_KERNEL_DEB=$VMM_NESTED_KERNEL_DEB does not exist"
        readlink -f "$VMM_NESTED_KERNEL_DEB"; return
    fi
    local pkg deb
    pkg=$(apt-cache depends "$KPKG" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
    if [[ -z $pkg ]]; then   # offline / no apt metadata: take whatever is cached
        deb=$(ls -1 "$CACHE"/linux-image-[0-9]*_amd64.deb 2>/dev/null | sort -V | tail -n1 || true)
        [[ -n $deb ]] || skip "cannot resolve $KPKG via apt-cache and no kernel .deb cached in $CACHE"
        echo "$deb"; return
    fi
    deb=$(ls -1 "$CACHE/${pkg}"_*_amd64.deb 2>/dev/null | sort -V | tail -n1 || true)
    if [[ -z $deb ]]; then
        echo "$PROG: downloading $pkg into $CACHE ..." >&2
        (cd "$CACHE" && apt-get download "$pkg" >&2) || skip "apt-get download $pkg failed"
        deb=$(ls -1 "$CACHE/${pkg}"_*_amd64.deb 2>/dev/null | sort -V | tail -n1 || true)
        [[ -n $deb ]] || skip "apt-get download $pkg produced no .deb"
    fi
    echo "$deb"
}

DEB=$(find_deb) || exit $?
KDIR="$CACHE/$(basename "$DEB" .deb)"
# Modules loaded in L1 besides kvm_amd: the shares, tun for the virtio-net tap tests, VFIO.
EXTRA_MODS="virtio_pci virtiofs overlay 9pnet_virtio 9p tun vfio_iommu_type1 vfio_pci"
if [[ ! -f $KDIR/vmlinuz || "$(cat "$KDIR/modules/.done" 2>/dev/null)" != "$EXTRA_MODS" ]]; then
    log "extracting $DEB"
    rm -rf "$KDIR"; mkdir -p "$KDIR/modules"
    X=$(mktemp -d "$CACHE/extract.XXXXXX")
    dpkg-deb -x "$DEB" "$X"
    VMLINUZ=$(ls "$X"/boot/vmlinuz-* 2>/dev/null | head -n1 || true)
    [[ -n $VMLINUZ ]] || { rm -rf "$X"; skip "$DEB contains no /boot/vmlinuz-*"; }
    cp "$VMLINUZ" "$KDIR/vmlinuz"
    MODROOT=$(ls -d "$X"/lib/modules/* "$X"/usr/lib/modules/* 2>/dev/null | head -n1 || true)
    declare -A MODPATH=() LOADED=()
    while IFS= read -r f; do
        n=${f##*/}; n=${n%%.ko*}; MODPATH[${n//-/_}]=$f
    done < <(find "$MODROOT" -name '*.ko*')
    ORDER=()
    add_mod() {   # add_mod NAME: copy module + its dependencies (uncompressed), record load order
        local n=${1//-/_} f dep deps
        [[ -n ${LOADED[$n]:-} ]] && return 0
        f=${MODPATH[$n]:-}
        [[ -n $f ]] || return 1      # built in, or absent
        LOADED[$n]=1
        case $f in
            *.ko.xz)  xz -dc "$f"   > "$KDIR/modules/$n.ko" ;;
            *.ko.zst) zstd -dqc "$f" > "$KDIR/modules/$n.ko" ;;
            *.ko.gz)  gzip -dc "$f" > "$KDIR/modules/$n.ko" ;;
            *)        cp "$f" "$KDIR/modules/$n.ko" ;;
        esac
        deps=$(tr '\0' '\n' < "$KDIR/modules/$n.ko" | sed -n 's/^depends=//p' | head -n1)
        for dep in ${deps//,/ }; do add_mod "$dep" || true; done
        ORDER+=("$n")
    }
    add_mod kvm_amd || { rm -rf "$X"; skip "$DEB has no kvm-amd module"; }
    for m in $EXTRA_MODS; do add_mod "$m" || true; done
    printf '%s\n' "${ORDER[@]}" > "$KDIR/modules/order"
    echo "$EXTRA_MODS" > "$KDIR/modules/.done"
    rm -rf "$X"
fi

# ------------------------------------------------------------- transport ----
SHARE_MODE=""
VIRTIOFSD=""
for c in "$(command -v virtiofsd || true)" /usr/libexec/virtiofsd /usr/lib/qemu/virtiofsd; do
    [[ -n $c && -x $c ]] && { VIRTIOFSD=$c; break; }
done
WANT=${VMM_NESTED_TRANSPORT:-auto}
if [[ $WANT != 9p && -n $VIRTIOFSD && -f $KDIR/modules/virtiofs.ko && $EUID == 0 ]]; then
    SHARE_MODE=virtiofs
elif [[ $WANT != virtiofs && -f $KDIR/modules/9p.ko && -f $KDIR/modules/9pnet_virtio.ko ]]; then
    SHARE_MODE=9p
else
    skip "no way to share the host filesystem: need virtiofsd (+root) with a virtiofs-capable kernel, or a kernel with 9p modules (try VMM_NESTED_KERNEL_PKG=linux-image-amd64)"
fi
log "share transport: $SHARE_MODE"

# ------------------------------------------------------------- initramfs ----
INITRAMFS="$KDIR/initramfs.cpio.gz"
if [[ ! -f $INITRAMFS || $SCRIPT_PATH -nt $INITRAMFS || $BUSYBOX -nt $INITRAMFS || $KDIR/modules/order -nt $INITRAMFS ]]; then
    log "building $INITRAMFS"
    R=$(mktemp -d "$CACHE/initramfs.XXXXXX")
    mkdir -p "$R"/{bin,dev,proc,sys,tmp,lib/modules,vmm,lower,upper,newroot}
    cp "$BUSYBOX" "$R/bin/busybox"
    cp "$KDIR"/modules/*.ko "$KDIR/modules/order" "$R/lib/modules/"
    cat > "$R/init" <<'INIT_EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || mount -t tmpfs tmpfs /dev
. /vmm/params
# With --systemd the kernel's console (and systemd's) is the second serial line: the first
# carries this script's and the command's output only.
[ "$INIT_MODE" = systemd ] && exec >/dev/ttyS0 2>&1
fail() { echo "@@VMM_NESTED_FAIL@@ $*"; dmesg | tail -n 30; poweroff -f; }

while read -r m; do
    args=""; [ "$m" = kvm_amd ] && args="$KVM_AMD_ARGS"
    insmod /lib/modules/$m.ko $args 2>/tmp/insmod.err || { echo "insmod $m failed: $(cat /tmp/insmod.err)"; }
done < /lib/modules/order

if [ ! -c /dev/kvm ] && grep -q ' kvm$' /proc/misc 2>/dev/null; then
    mknod /dev/kvm c 10 "$(awk '$2=="kvm"{print $1}' /proc/misc)"
fi
if [ ! -c /dev/kvm ]; then
    echo "@@VMM_NESTED_NOKVM@@"
    grep -o -w -E 'svm|npt' /proc/cpuinfo | sort -u | tr '\n' ' '; echo
    dmesg | grep -i -E 'kvm|svm'
    poweroff -f
fi

if [ "$SHARE_MODE" = virtiofs ]; then
    mount -t virtiofs -o ro vmmroot /lower || fail "mounting host root (virtiofs) failed"
else
    mount -t 9p -o ro,trans=virtio,version=9p2000.L,msize=512000,cache=loose vmmroot /lower || fail "mounting host root (9p) failed"
fi
mount -t tmpfs -o mode=755 tmpfs /upper
mkdir -p /upper/u /upper/w
if ! mount -t overlay -o lowerdir=/lower,upperdir=/upper/u,workdir=/upper/w overlay /newroot 2>/dev/null; then
    echo "note: overlayfs unavailable, host root is read-only in the VM"
    mount --bind /lower /newroot
fi
N=/newroot
mount -t proc proc $N/proc
mount -t sysfs sysfs $N/sys
mount -t devtmpfs devtmpfs $N/dev 2>/dev/null || { mount -t tmpfs tmpfs $N/dev; cp -a /dev/. $N/dev/; }
mkdir -p $N/dev/pts $N/dev/shm
mount -t devpts devpts $N/dev/pts
mount -t tmpfs tmpfs $N/dev/shm
mount -t tmpfs -o mode=1777 tmpfs $N/tmp
mount -t tmpfs -o mode=755 tmpfs $N/run
[ -c $N/dev/kvm ] || cp -a /dev/kvm $N/dev/kvm
if [ "$SHARE_DIR" != / ]; then
    mkdir -p "$N$SHARE_DIR"
    if [ "$SHARE_MODE" = virtiofs ]; then
        mount -t virtiofs vmmshare "$N$SHARE_DIR" || fail "mounting $SHARE_DIR failed"
    else
        mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 vmmshare "$N$SHARE_DIR" || fail "mounting $SHARE_DIR failed"
    fi
fi
cp /vmm/cmd.sh $N/run/vmm-cmd.sh
SH=/bin/bash; [ -x $N/bin/bash ] || SH=/bin/sh
if [ "$INIT_MODE" = systemd ]; then
    # The command as a oneshot service; the target is basic.target plus it, so none of the
    # host's multi-user services start. Its output goes straight to the serial line.
    mkdir -p $N/etc/systemd/system
    cat > $N/run/vmm-systemd-cmd.sh <<SVC_EOF
#!$SH
echo "@@VMM_NESTED_BEGIN@@" >/dev/ttyS0
/usr/bin/env -i $SH /run/vmm-cmd.sh </dev/null >/dev/ttyS0 2>&1
echo "@@VMM_NESTED_RC=\$?@@" >/dev/ttyS0
sync
SVC_EOF
    cat > $N/etc/systemd/system/vmm-nested-cmd.service <<SVC_EOF
[Unit]
Description=run-in-l1.sh command
After=basic.target
SuccessAction=poweroff-immediate
FailureAction=poweroff-immediate
[Service]
Type=oneshot
ExecStart=$SH /run/vmm-systemd-cmd.sh
TimeoutStartSec=infinity
SVC_EOF
    cat > $N/etc/systemd/system/vmm-nested.target <<SVC_EOF
[Unit]
Description=run-in-l1.sh: basic.target and the command
Requires=basic.target
Wants=vmm-nested-cmd.service
After=basic.target
AllowIsolate=yes
SVC_EOF
    [ -x $N/lib/systemd/systemd ] || fail "--systemd: the host root has no /lib/systemd/systemd"
    exec switch_root $N /lib/systemd/systemd --unit=vmm-nested.target
fi
echo "@@VMM_NESTED_BEGIN@@"
chroot $N /usr/bin/env -i $SH /run/vmm-cmd.sh </dev/null
rc=$?
echo "@@VMM_NESTED_RC=$rc@@"
sync
poweroff -f
INIT_EOF
    chmod +x "$R/init"
    (cd "$R" && find . | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -1) > "$INITRAMFS.tmp"
    mv "$INITRAMFS.tmp" "$INITRAMFS"
    rm -rf "$R"
fi
flock -u 9

# --------------------------------------------------------- per-run files ----
RUN=$(mktemp -d "${TMPDIR:-/tmp}/vmm-nested.XXXXXX")
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$RUN"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$RUN/cpio/vmm"
{
    printf 'SHARE_MODE=%q\nSHARE_DIR=%q\nKVM_AMD_ARGS=%q\nINIT_MODE=%q\n' "$SHARE_MODE" "$SHARE" "$KVM_AMD_ARGS" "$INIT_MODE"
} > "$RUN/cpio/vmm/params"
{
    echo '# generated by run-in-l1.sh'
    # Caller's exported environment, minus things that make no sense in the VM.
    export -p | grep -v -E '^declare -x (_|SHLVL|PWD|OLDPWD|TMPDIR|TMP|TEMP|XDG_RUNTIME_DIR|DISPLAY|WAYLAND_DISPLAY|SSH_AUTH_SOCK|SSH_AGENT_PID|DBUS_SESSION_BUS_ADDRESS|TERM)(=|$)' || true
    echo 'export TERM=dumb'
    printf 'cd -- %q || exit 125\n' "$CWD"
    printf 'exec'; printf ' %q' "$@"; printf '\n'
} > "$RUN/cpio/vmm/cmd.sh"
(cd "$RUN/cpio" && find . | cpio -o -H newc --quiet) > "$RUN/run.cpio"
# Concatenated initramfs: the kernel only accepts the uncompressed second
# archive at a 4-byte aligned offset, so zero-pad the first one.
{
    cat "$INITRAMFS"
    head -c $(( (4 - $(stat -c %s "$INITRAMFS") % 4) % 4 )) /dev/zero
    cat "$RUN/run.cpio"
} > "$RUN/initrd"

QEMU_ARGS=(
    -accel tcg -cpu "$CPU" -m "$MEM" -smp "$SMP"
    -nographic -no-reboot -monitor none
    -kernel "$KDIR/vmlinuz" -initrd "$RUN/initrd"
    -append "console=ttyS0 loglevel=1 panic=-1 oops=panic"
    -device virtio-rng-pci
)
if [[ $IOMMU == 1 ]]; then
    # The IOMMU comes before any PCI device. The VFIO test devices sit at fixed addresses
    # (00:10.0 edu, 00:11.0 virtio-blk) that tests/integration/vfio_*.sh look for.
    head -c 1M /dev/zero > "$RUN/vfio-blk.img"
    QEMU_ARGS=(-machine q35 -machine kernel-irqchip=split -device intel-iommu,intremap=on "${QEMU_ARGS[@]}"
        -device edu,addr=10.0
        -drive "file=$RUN/vfio-blk.img,if=none,id=vfioblk,format=raw"
        -device virtio-blk-pci,drive=vfioblk,addr=11.0,serial=vmm-vfio-blk,disable-legacy=on,iommu_platform=on)
    QEMU_ARGS=("${QEMU_ARGS[@]/console=ttyS0 loglevel=1/console=ttyS0 intel_iommu=on loglevel=1}")
fi
if [[ $INIT_MODE == systemd ]]; then
    [[ -x /lib/systemd/systemd ]] || skip "--systemd: /lib/systemd/systemd not found (apt-get install systemd)"
    # systemd reads its switches from the kernel's command line: no fstab (the root is ours).
    # The kernel's and systemd's console is a second serial line, kept in a file (its tail is
    # shown when the VM fails); the first carries the command's output alone.
    QEMU_ARGS=("${QEMU_ARGS[@]/console=ttyS0/console=ttyS1}")
    QEMU_ARGS=("${QEMU_ARGS[@]/loglevel=1/loglevel=1 fstab=no systemd.show_status=0}")
    QEMU_ARGS+=(-serial stdio -serial "file:$RUN/systemd-console.log")
fi

start_virtiofsd() {  # start_virtiofsd SOCKET DIR
    local sock=$1 dir=$2 i
    if "$VIRTIOFSD" --help 2>&1 | grep -q -- '--shared-dir'; then   # Rust virtiofsd
        "$VIRTIOFSD" --socket-path="$sock" --shared-dir="$dir" --sandbox=chroot --cache=auto \
            >>"$RUN/virtiofsd.log" 2>&1 &
    else                                                               # QEMU's C virtiofsd
        "$VIRTIOFSD" --socket-path="$sock" -o source="$dir" -o sandbox=chroot -o cache=auto \
            >>"$RUN/virtiofsd.log" 2>&1 &
    fi
    PIDS+=($!)
    for ((i = 0; i < 100; i++)); do [[ -S $sock ]] && return 0; sleep 0.05; done
    cat "$RUN/virtiofsd.log" >&2
    die "virtiofsd did not create $sock"
}

if [[ $SHARE_MODE == virtiofs ]]; then
    start_virtiofsd "$RUN/root.sock" /
    QEMU_ARGS+=(
        -object "memory-backend-memfd,id=mem,size=${MEM}M,share=on" -numa node,memdev=mem
        -chardev "socket,id=vfsroot,path=$RUN/root.sock"
        -device vhost-user-fs-pci,chardev=vfsroot,tag=vmmroot
    )
    if [[ $SHARE != / ]]; then
        start_virtiofsd "$RUN/share.sock" "$SHARE"
        QEMU_ARGS+=(
            -chardev "socket,id=vfsshare,path=$RUN/share.sock"
            -device vhost-user-fs-pci,chardev=vfsshare,tag=vmmshare
        )
    fi
else
    QEMU_ARGS+=(
        -virtfs "local,path=/,mount_tag=vmmroot,security_model=none,readonly=on,multidevs=remap"
        -virtfs "local,path=$SHARE,mount_tag=vmmshare,security_model=none,multidevs=remap"
    )
fi

# ------------------------------------------------------------------- run ----
log "booting L1: $QEMU ${QEMU_ARGS[*]}"
CONSOLE="$RUN/console.log"
set +e
timeout -k 5 "$TIMEOUT" "$QEMU" "${QEMU_ARGS[@]}" </dev/null 2>"$RUN/qemu.err" \
    | tee "$CONSOLE" \
    | awk -v verbose="$VERBOSE" '
        { sub(/\r+$/, "") }
        verbose == 1 { print; fflush(); next }
        on && (i = index($0, "@@VMM_NESTED_RC=")) { if (i > 1) print substr($0, 1, i - 1); on = 0; fflush(); next }
        on { print; fflush() }
        /@@VMM_NESTED_BEGIN@@/ { on = 1 }'
QEMU_RC=${PIPESTATUS[0]}
set -e

RC_LINE=$(tr -d '\r' < "$CONSOLE" | grep -a -o '@@VMM_NESTED_RC=[0-9]*@@' | tail -n1 || true)
if [[ -n $RC_LINE ]]; then
    RC=${RC_LINE#@@VMM_NESTED_RC=}; RC=${RC%@@}
    exit "$RC"
fi
if grep -a -q '@@VMM_NESTED_NOKVM@@' "$CONSOLE"; then
    echo "$PROG: the L1 VM (qemu -cpu $CPU, TCG) could not provide /dev/kvm; L1 kernel says:" >&2
    tr -d '\r' < "$CONSOLE" | sed -n '/@@VMM_NESTED_NOKVM@@/,$p' | sed 1d >&2
    exit 77
fi
if [[ -s $RUN/systemd-console.log ]]; then
    echo "$PROG: last lines of the L1 kernel's and systemd's console:" >&2
    sed 's/\x1b\[[0-9;]*[A-Za-z]//g' "$RUN/systemd-console.log" | tr -d '\r' | tail -n 20 >&2
fi
if [[ $QEMU_RC == 124 || $QEMU_RC == 137 ]]; then
    echo "$PROG: timed out after ${TIMEOUT}s; last console lines:" >&2
    tr -d '\r' < "$CONSOLE" | tail -n 20 >&2
    exit 124
fi
echo "$PROG: L1 VM failed (qemu exit status $QEMU_RC); last console lines:" >&2
tr -d '\r' < "$CONSOLE" | tail -n 30 >&2
cat "$RUN/qemu.err" >&2
[[ -s $RUN/virtiofsd.log ]] && tail -n 20 "$RUN/virtiofsd.log" >&2
exit 125
