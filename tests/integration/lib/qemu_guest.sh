# Shared by the tests/integration/guests_*_qemu.sh scripts that boot a test guest under QEMU TCG
# (source it after `set -uo pipefail`). Provides:
#   qg_init NAME TOOL...   checks QEMU and the tools (exit 77 naming what is missing), sets
#                          $build (VMM_BUILD_DIR), $tmp (removed on exit), pass/fail counters
#   qg_need FILE           exit 77 unless the built guest FILE exists
#   run LABEL IMAGE ARGS   boots IMAGE with -kernel (q35 unless ARGS say -M; isa-debug-exit at
#                          0xf4, COM1 to a file): $got (output), $status, $ms, $tmp/LABEL.log
#   expect LABEL STATUS RE the run's status and its whole output (ERE, anchored; the final
#                          newline is part of it)
#   patch_flag IMAGE TAG OUT  a copy of IMAGE with the u32 after the 16-byte TAG set to 1
#   patch_u32 IMAGE TAG AT VALUE OUT   the same for the u32 AT bytes from TAG's start, set to VALUE
#   qg_finish              prints the summary; exits 0 or 1
PROG=${0##*/}
QEMU=${QEMU:-qemu-system-x86_64}
skip() { echo "$PROG: SKIP: $*"; exit 77; }
pass() { echo "PASS $*"; passes=$((passes + 1)); }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }

qg_init() {
  local name=$1 tool
  shift
  command -v "$QEMU" >/dev/null 2>&1 || skip "$QEMU not found (apt-get install qemu-system-x86)"
  for tool in timeout grep dd cut head "$@"; do
    command -v "$tool" >/dev/null 2>&1 || skip "$tool not found"
  done
  build=${VMM_BUILD_DIR:-}
  [[ -n $build ]] || { echo "$PROG: VMM_BUILD_DIR is not set (run through ctest)"; exit 1; }
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/$name.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  failures=0
  passes=0
}

qg_need() {
  [[ -f $1 ]] || skip "$1 missing: build the test_guests target (needs nasm, gcc -m32)"
}

run() {
  local label=$1 image=$2
  shift 2
  local out=$tmp/$label.out
  : >"$out"
  local machine=(-M q35)
  [[ " $* " == *" -M "* ]] && machine=()
  local start
  start=$(date +%s%N)
  timeout 60 "$QEMU" "${machine[@]}" -accel tcg -display none -no-reboot -monitor none -nodefaults \
    -serial "file:$out" -device isa-debug-exit,iobase=0xf4,iosize=0x04 -m 64 -kernel "$image" "$@" \
    </dev/null >"$tmp/$label.log" 2>&1
  status=$?
  ms=$((($(date +%s%N) - start) / 1000000))
  got=$(cat "$out"; echo .)
  got=${got%.}
  [[ $status == 124 ]] && echo "  $label: timed out after 60 s"
  return 0
}

expect() {
  local label=$1 want_status=$2 want=$3
  if [[ $status == "$want_status" && $got =~ ^${want}$ ]]; then
    pass "$label (status $status, ${ms} ms)"
  else
    fail "$label: status $status (want $want_status), ${ms} ms"
    echo "  want output (regex): $(printf '%q' "$want")"
    echo "  got output:          $(printf '%q' "$got")"
    sed 's/^/  qemu: /' "$tmp/$label.log"
  fi
}

patch_flag() {
  patch_u32 "$1" "$2" 16 1 "$3"
}

patch_u32() {
  local image=$1 tag=$2 at=$3 value=$4 copy=$5
  [[ $image == "$copy" ]] || cp "$image" "$copy"
  local off
  off=$(grep -obUaF -- "$tag" "$copy" | head -1 | cut -d: -f1)
  if [[ -z $off ]]; then
    fail "$(basename "$image"): tag $tag not found in the image"
    return 1
  fi
  printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $((value & 255)) $((value >> 8 & 255)) $((value >> 16 & 255)) $((value >> 24 & 255)))" |
    dd of="$copy" bs=1 seek=$((off + at)) conv=notrunc status=none
}

qg_finish() {
  echo "$PROG: $passes passed, $failures failed"
  [[ $failures == 0 ]]
  exit $?
}
