// The ACPI tables of an x86 domain, built for one machine configuration, and how they reach
// the guest. What the guest gets (ACPI 6.4 §5.2):
//   RSDP (rev 2) -> XSDT (and RSDT) -> FADT (rev 6, not hardware-reduced), MADT, MCFG
//                   FADT -> FACS, DSDT
// All of it lies in the BIOS area [kAcpiTablesStart, kAcpiTablesEnd) = 0xf0000..0xfffff,
// which the e820 map reserves; the RSDP is first, at 0xf0000 (16-byte aligned, where a guest
// scanning 0xe0000..0xfffff finds it without boot_params.acpi_rsdp_addr), the FACS 64-byte
// aligned, the others 16-byte aligned after it. See tables.h and dsdt.h for each table's
// content.
//
// Platform choices the tables announce (and the anchor must wire the same way):
//   - ACPI PM registers (legacy::AcpiPm) at I/O port kPmIoBase = 0x600, 12 ports;
//     SCI = ISA IRQ 9, level, active-high (MADT interrupt source override), as QEMU does.
//   - Reset: RESET_REG = I/O port 0x64, value 0xfe (the i8042's "pulse reset line" command,
//     which legacy::I8042 implements); 0xcf9 belongs to the PCI host bridge's ports.
//   - S5 = SLP_TYP legacy::AcpiPm::kS5SlpTyp (5).
//   - Fixed-feature power button (FADT PWR_BUTTON clear), no sleep button, no GPE blocks.
//
// Callers: the anchor's main thread at boot (build_tables, write_tables) and its --dump-acpi
// option (dump_tables); tests. Setup errors (bad config, no room, unwritable dir) throw.
#pragma once

#include "devicemodel/bus/guest_memory.h"
#include "x86/memory_layout.h"

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace vmm::x86::acpi {

inline constexpr std::uint64_t kAcpiTablesStart = kBiosAreaStart;  // 0xf0000
inline constexpr std::uint64_t kAcpiTablesEnd = kHighMemStart;     // 0x100000
inline constexpr std::uint16_t kPmIoBase = 0x600;
inline constexpr std::uint8_t kSciIrq = 9;
inline constexpr std::uint16_t kResetPort = 0x64;
inline constexpr std::uint8_t kResetValue = 0xfe;
inline constexpr unsigned kIoapicPins = 24;
// xAPIC ids 0..254 (255 is the broadcast id); more would need x2APIC MADT entries.
inline constexpr unsigned kMaxVcpus = 254;

struct AcpiConfig {
    unsigned vcpus = 1;                   // APIC ids 0..vcpus-1, vCPU 0 is the BSP
    RamLayout ram;                        // for the 64-bit PCI window (above RAM)
    std::uint64_t tables_start = kAcpiTablesStart;  // where the RSDP and the tables go
    std::uint64_t tables_end = kAcpiTablesEnd;      // exclusive
    std::uint16_t pm_io_base = kPmIoBase;
    std::uint8_t ioapic_id = 0;
};

struct AcpiTables {
    std::uint64_t rsdp_addr = 0;
    // (guest-physical address, bytes) for each table, the RSDP first.
    std::vector<std::pair<std::uint64_t, std::vector<std::uint8_t>>> blobs;
};

// Builds every table for `config`. Throws vmm::Error if vcpus is 0 or above kMaxVcpus, or
// the tables do not fit in [tables_start, tables_end).
AcpiTables build_tables(const AcpiConfig& config);

// Copies every blob into guest memory. Throws vmm::Error if a blob is not in guest RAM.
void write_tables(const GuestMemory& mem, const AcpiTables& tables);

// The table's signature as acpidump names it: "RSDP" for the RSDP, else its first 4 bytes.
std::string table_signature(const std::vector<std::uint8_t>& blob);

// Writes each table to <dir>/<SIG>.dat (RSDP.dat, FACS.dat, DSDT.dat, FACP.dat, APIC.dat,
// MCFG.dat, XSDT.dat, RSDT.dat) — the names `iasl -d` and acpixtract use. `dir` must exist.
// Throws std::system_error naming the file on a write error.
void dump_tables(const AcpiTables& tables, const std::string& dir);

}  // namespace vmm::x86::acpi
