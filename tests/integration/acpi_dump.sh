#!/usr/bin/env bash
# acpi_dump.sh — the ACPI tables vmm-anchor builds for a real manifest, dumped with
# `vmm-anchor --dump-acpi DIR` (one <SIG>.dat per table) and decoded with the ACPICA
# disassembler: every table decodes without errors or warnings (checksums included), the MADT
# has one Processor Local APIC per manifest vCPU, and the DSDT's 64-bit PCI window starts
# above the manifest's RAM. Checks the anchor's wiring of x86/acpi (the unit tests check the
# tables themselves). Needs no /dev/kvm if --dump-acpi runs before the VM is created; the
# anchor's exit status is not checked, only the files it wrote.
# Run by ctest with VMM_BUILD_DIR set; exit 77 = skipped (no iasl, no --dump-acpi option yet,
# or the test guests were not built).
set -uo pipefail

PROG=${0##*/}
skip() { echo "$PROG: SKIP: $*"; exit 77; }
fail() { echo "$PROG: FAIL: $*"; exit 1; }

build=${VMM_BUILD_DIR:-}
[[ -n $build ]] || fail "VMM_BUILD_DIR is not set (run through ctest)"
anchor=$build/anchor/vmm-anchor
guest=$build/tests/guests/hello.bin
command -v iasl >/dev/null 2>&1 || skip "iasl not found (apt-get install acpica-tools)"
command -v timeout >/dev/null 2>&1 || skip "timeout (coreutils) not found"
[[ -x $anchor ]] || skip "$anchor not built"
"$anchor" --help 2>&1 | grep -q -- '--dump-acpi' || skip "vmm-anchor has no --dump-acpi option yet"
[[ -f $guest ]] || skip "$guest not built (nasm missing?)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/acpi_dump.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/acpi" "$tmp/run"

# 3 vCPUs and 5 GiB: 3 GiB below the PCI hole, 2 GiB from 4 GiB, so the 64-bit PCI window
# starts at the first 1 GiB boundary above 6 GiB = 0x180000000.
vcpus=3
cat > "$tmp/m.json" <<JSON
{ "name": "acpidump", "vcpus": $vcpus, "memory_mb": 5120,
  "kernel": "$guest",
  "flat": { "load_address": "0x100000", "entry": "0x100000", "mode": "protected32" } }
JSON

timeout 30 "$anchor" --manifest "$tmp/m.json" --run-dir "$tmp/run" --dump-acpi "$tmp/acpi" \
  </dev/null >"$tmp/anchor.out" 2>&1
echo "$PROG: vmm-anchor exited with $? (not checked)"

for sig in RSDP XSDT FACP FACS DSDT APIC MCFG; do
  [[ -s $tmp/acpi/$sig.dat ]] || { cat "$tmp/anchor.out"; fail "no $sig.dat in the dump"; }
done

status=0
for f in "$tmp"/acpi/*.dat; do
  sig=$(basename "$f" .dat)
  [[ $sig == RSDP ]] && continue  # this iasl cannot decode a bare RSDP
  out=$(iasl -d "$f" 2>&1) || { echo "$out"; echo "$PROG: FAIL: iasl -d $sig failed"; status=1; continue; }
  if grep -Eq 'Error|Warning|Incorrect checksum' <<<"$out"; then
    echo "$out"; echo "$PROG: FAIL: iasl -d $sig reported problems"; status=1
  fi
done

n=$(grep -c '\[Processor Local APIC\]' "$tmp/acpi/APIC.dsl")
[[ $n == "$vcpus" ]] || { echo "$PROG: FAIL: MADT has $n local APICs, manifest has $vcpus vCPUs"; status=1; }
grep -q '0x0000000180000000, // Range Minimum' "$tmp/acpi/DSDT.dsl" ||
  { echo "$PROG: FAIL: DSDT 64-bit PCI window does not start at 0x180000000"; status=1; }
grep -q 'Device (PCI0)' "$tmp/acpi/DSDT.dsl" || { echo "$PROG: FAIL: no PCI0 in the DSDT"; status=1; }

[[ $status == 0 ]] && echo "$PROG: PASS"
exit $status
