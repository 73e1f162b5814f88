#!/usr/bin/env bash
# guests_qemu.sh — boots every test guest of tests/guests/ under QEMU's TCG emulator and checks
# its exact COM1 output and its debug-exit status, so a guest is known to be right before
# vmm-anchor runs it under KVM. Run by ctest (label qemu) with VMM_BUILD_DIR and VMM_SOURCE_DIR
# set; exit 77 = skipped (no QEMU, or the guest toolchain was missing at configure time).
#
# The protected-mode *.bin guests carry a multiboot a.out-kludge header, so QEMU -kernel runs
# the very bytes vmm-anchor loads flat at 0x100000. hello16.bin and hello64.bin run through the
# qemu-hello16.bin / qemu-hello64.bin multiboot wrappers, which recreate the real-mode and
# long-mode entry states.
#
# Exit status: 0 all passed, 1 some check failed, 77 skipped.
set -uo pipefail

PROG=${0##*/}
QEMU=${QEMU:-qemu-system-x86_64}
skip() { echo "$PROG: SKIP: $*"; exit 77; }

command -v "$QEMU" >/dev/null 2>&1 || skip "$QEMU not found (apt-get install qemu-system-x86)"
command -v timeout >/dev/null 2>&1 || skip "timeout (coreutils) not found"
build=${VMM_BUILD_DIR:-}
[[ -n $build ]] || { echo "$PROG: VMM_BUILD_DIR is not set (run through ctest)"; exit 1; }
guests=$build/tests/guests
if [[ ! -f $guests/hello.elf ]]; then
  command -v nasm >/dev/null 2>&1 || skip "nasm not found, so the test guests were not built"
  echo "$PROG: FAIL: no guests in $guests: build the test_guests target first"
  exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/guests_qemu.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
failures=0
passes=0

fail() { echo "FAIL $*"; failures=$((failures + 1)); }

# boot <label> <expected status> <expected output | ~regex> <qemu args...>
# Expected output is compared byte for byte (trailing newline included); a leading '~' makes it
# an extended regex matched against the whole output instead.
boot() {
  local label=$1 want_status=$2 want=$3
  shift 3
  local out=$tmp/$label.out log=$tmp/$label.log
  : >"$out"
  local start=$(date +%s%N)
  timeout 60 "$QEMU" -accel tcg -display none -no-reboot -monitor none -nodefaults \
    -serial "file:$out" -device isa-debug-exit,iobase=0xf4,iosize=0x04 -m 64 "$@" \
    </dev/null >"$log" 2>&1
  local status=$?
  local ms=$((($(date +%s%N) - start) / 1000000))
  local got
  got=$(cat "$out"; echo .)
  got=${got%.}
  local ok=1
  if [[ $want == '~'* ]]; then
    [[ $got =~ ^${want#'~'}$ ]] || ok=0
  else
    [[ $got == "$want" ]] || ok=0
  fi
  if [[ $status != "$want_status" ]]; then
    ok=0
    [[ $status == 124 ]] && echo "  $label: timed out after 60 s"
  fi
  if ((ok)); then
    echo "PASS $label (status $status, ${ms} ms)"
    passes=$((passes + 1))
  else
    fail "$label: status $status (want $want_status), ${ms} ms"
    echo "  want output: $(printf '%q' "$want")"
    echo "  got output:  $(printf '%q' "$got")"
    sed 's/^/  qemu: /' "$log"
  fi
}

# check_flat_header <file>: the a.out-kludge multiboot header (Multiboot 0.6.96 §3.1.3) at
# offset 4 must describe exactly this file loaded and entered at 0x100000.
check_flat_header() {
  local file=$guests/$1
  local -a h
  read -r -a h < <(od -An -t u4 -j 4 -N 32 -v "$file" | tr -s ' \n' ' ')
  local size=$(stat -c %s "$file")
  # magic, flags, checksum, header_addr, load_addr, load_end_addr, bss_end_addr, entry_addr
  if [[ ${h[0]} == $((0x1BADB002)) && $(((h[1] >> 16) & 1)) == 1 && ${h[3]} == $((0x100004)) &&
        ${h[4]} == $((0x100000)) && $((h[5] - h[4])) == "$size" && ${h[6]} -ge ${h[5]} &&
        ${h[7]} == $((0x100000)) && $(((h[0] + h[1] + h[2]) & 0xffffffff)) == 0 ]]; then
    echo "PASS $1: flat image, multiboot header matches ($size bytes)"
    passes=$((passes + 1))
  else
    fail "$1: multiboot a.out-kludge header does not match the file (${h[*]}, size $size)"
  fi
}

# check_size <file> <min> <max>: the raw real-mode and long-mode images exist and are plausible.
check_size() {
  local size=$(stat -c %s "$guests/$1" 2>/dev/null || echo 0)
  if ((size >= $2 && size <= $3)); then
    echo "PASS $1: $size bytes"
    passes=$((passes + 1))
  else
    fail "$1: $size bytes, want $2..$3"
  fi
}

hello=$'Hello from the vmm test guest!\n'
boot hello.elf 1 "$hello" -kernel "$guests/hello.elf"
boot hello.bin 1 "$hello" -kernel "$guests/hello.bin"

# SeaBIOS lists only the first logical CPU of each package in its MP table, and QEMU 7.2's
# -smp N means one socket of N cores: sockets=N gives one MP processor entry per vCPU, as
# vmm-anchor's table has.
smp_output() {
  local n=$1 i
  printf 'smp: %d cpus up\n' "$n"
  for ((i = 0; i < n; ++i)); do printf 'cpu %d online\n' "$i"; done
  printf .
}
for n in 1 2 4; do
  want=$(smp_output "$n")
  boot "smp.elf-smp$n" $(((n << 1) | 1)) "${want%.}" -smp "$n,sockets=$n" -kernel "$guests/smp.elf"
done
want=$(smp_output 4)
boot smp.bin-smp4 9 "${want%.}" -smp 4,sockets=4 -kernel "$guests/smp.bin"

# QEMU's multiboot loader passes "<kernel path> <-append>" as the command line.
boot mbinfo.elf $(((0x2b << 1) | 1)) \
  "~mbinfo: mem_lower=[0-9]+ mem_upper=[0-9]+ cmdline=$guests/mbinfo.elf hello=world"$'\n'"mbinfo: mmap entries=[1-9][0-9]*"$'\n' \
  -kernel "$guests/mbinfo.elf" -append "hello=world"

# With -no-reboot, both a reset request and a triple fault end QEMU with status 0.
boot reset.bin 0 $'reset: pulsing i8042\n' -kernel "$guests/reset.bin"
boot fault.bin 0 $'fault: triple fault now\n' -kernel "$guests/fault.bin"

for bin in hello.bin smp.bin reset.bin fault.bin; do check_flat_header "$bin"; done

check_size hello16.bin 16 512
check_size hello64.bin 16 512
boot hello16.bin $(((0x16 << 1) | 1)) $'hello16: real mode ok\n' -kernel "$guests/qemu-hello16.bin"
boot hello64.bin $(((0x40 << 1) | 1)) $'hello64: long mode ok\n' -kernel "$guests/qemu-hello64.bin"

echo "$PROG: $passes passed, $failures failed"
((failures == 0))
