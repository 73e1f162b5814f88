// The DSDT (ACPI 6.4 §5.2.11.1, revision 2: 64-bit integers), written with the aml builder:
//
//   \_S5   Package {kS5SlpTyp, kS5SlpTyp, 0, 0}           soft off (§7.4.2)
//   \_SB.PCI0  PCI Express root bridge: _HID PNP0A08, _CID PNP0A03, _SEG 0, _BBN 0, _UID 0
//       _CRS: WordBusNumber 0..255, IO 0xcf8..0xcff, WordIO kPciIoStart..kPciIoEnd-1,
//             DWordMemory kPciMmio32Start..kPciMmio32End-1 (non-cacheable),
//             QWordMemory pci_mmio64_start(high RAM) .. + kPciMmio64Size - 1 (cacheable)
//       _PRT: slots 1..31, pins INTA..INTD -> GSI pci_intx_gsi(slot, pin), no link devices
//   \_SB.MBRS  PNP0C02 motherboard resources: the ECAM window (Linux only uses MMCONFIG
//              when the MCFG region is reserved in e820 or by such a device)
//   \_SB.COM1  PNP0501, IO 0x3f8..0x3ff, IRQ 4
//   \_SB.RTC   PNP0B00, IO 0x70..0x71, IRQ 8
//   \_SB.KBD   PNP0303, IO 0x60 and 0x64, IRQ 1;  \_SB.MOU  PNP0F13, IRQ 12  (the i8042)
//   \_SB.PEVT  QEMU0001 pvpanic, IO 0x505
//   \_SB.Cxxx  one ACPI0007 processor device per vCPU, _UID = MADT processor UID
//
// Pure function; callers: build_tables and tests.
#pragma once

#include "x86/acpi/acpi_tables.h"

#include <cstdint>
#include <vector>

namespace vmm::x86::acpi {

inline constexpr std::uint8_t kDsdtRevision = 2;

std::vector<std::uint8_t> build_dsdt(const AcpiConfig& config);

}  // namespace vmm::x86::acpi
