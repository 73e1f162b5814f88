#!/usr/bin/env bash
# guests_vfio_edu_qemu.sh — runs tests/guests/vfio_edu.bin under QEMU TCG against QEMU's own
# "edu" educational PCI device (the device vmm-anchor's VFIO passthrough is tested with), so the
# guest's driver is known to be right before vmm-anchor passes an edu through to it. Checks every
# line the guest prints (probe, ID, liveness, factorial, DMA, MSI, INTx through the IOAPIC with
# EOI) and its debug-exit status, on both of QEMU's PC machines:
#   pc   (i440fx/PIIX3): the firmware routes INTA through a PIRQ link to ISA IRQ 10 or 11 and
#        writes that into the interrupt line register; the IOAPIC input of that IRQ is the same
#        number, which is what the guest programs (vmm-anchor writes GSI 16..19 there instead).
#   q35  (ICH9): the same PIRQ -> ISA IRQ routing in the line register (the PIRQ also reaches
#        IOAPIC input 16 + n, which the guest leaves masked).
# Also runs the guest with BAR0 cleared first (image flag VMM-EDU-CLEARBAR: the guest assigns
# BAR0 itself, as no firmware does under vmm-anchor) and without any edu (the failing step is
# named, exit 0x70).
# Run by ctest (label qemu) with VMM_BUILD_DIR set; exit 77 = skipped (no QEMU, QEMU without the
# edu device, or the guests were not built).
#
# Exit status: 0 all passed, 1 some check failed, 77 skipped.
set -uo pipefail

. "$(dirname "$0")/lib/qemu_guest.sh"
qg_init guests_vfio_edu_qemu
"$QEMU" -device help 2>/dev/null | grep -q '^name "edu"' || skip "$QEMU has no edu device"
guest=$build/tests/guests/vfio_edu.bin
qg_need "$guest"
# Exit status of a debug-exit value.
st() { echo $((($1 << 1) | 1)); }

# The guest's whole output with edu at 00:04.0. <bar0 regex> [first-line suffix]. The firmware
# (SeaBIOS) routes the four PIRQ links to ISA IRQs 10, 10, 11, 11.
edu_out() {
  printf '%s\n' \
    "vfio_edu: 00:04\\.0 1234:11e8 bar0 $1 size 100000${2:-}" \
    'vfio_edu: id 010000ed' \
    'vfio_edu: liveness 12345678 -> edcba987' \
    'vfio_edu: factorial 5 -> 120' \
    'vfio_edu: dma ok' \
    'vfio_edu: msi ok' \
    'vfio_edu: intx gsi 1[01]' \
    'vfio_edu: intx ok 2' \
    'vfio_edu: PASS'
}
ok=$(st 0x5e)
edu=(-device edu,addr=0x4)
# A firmware-assigned BAR0: 1 MiB aligned, in the 32-bit PCI hole above the 64 MiB of RAM.
fw_bar='[4-9a-f][0-9a-f]{2}00000'

for machine in pc q35; do
  run "vfio_edu-$machine" "$guest" -M "$machine" "${edu[@]}"
  expect "vfio_edu-$machine" $ok "$(edu_out "$fw_bar")"$'\n'
done

# BAR0 cleared first: the guest assigns it from its window at 0xc0000000 (lib/pci.h), and the
# device answers there.
clear=$tmp/vfio_edu-clearbar.bin
if patch_flag "$guest" VMM-EDU-CLEARBAR "$clear"; then
  run vfio_edu-clearbar "$clear" -M q35 "${edu[@]}"
  expect vfio_edu-clearbar $ok "$(edu_out c0000000 ', assigned by the guest')"$'\n'
fi

# No edu: the probe step fails by name.
run vfio_edu-nodevice "$guest" -M q35
expect vfio_edu-nodevice $(st 0x70) $'vfio_edu: FAIL no edu device \\(1234:11e8\\) \\(exit 70\\)\n'

qg_finish
