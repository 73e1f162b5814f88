// Builders for the fixed-layout ACPI tables (each returns the finished table with its
// checksum); acpi_tables.cpp places them and fills in the addresses. References: ACPI 6.4
// §5.2.5 RSDP, §5.2.7 RSDT, §5.2.8 XSDT, §5.2.9 FADT, §5.2.10 FACS, §5.2.12 MADT; MCFG: PCI
// Firmware Specification 3.0 §4.1.2.
//
// Pure functions; callers: build_tables and tests, on any thread.
#pragma once

#include "x86/acpi/acpi_tables.h"

#include <cstdint>
#include <vector>

namespace vmm::x86::acpi {

inline constexpr std::size_t kRsdpSize = 36;
inline constexpr std::size_t kFacsSize = 64;
inline constexpr std::size_t kFadtSize = 276;  // revision 6, minor version 3 (ACPI 6.3+)
inline constexpr std::uint8_t kFadtRevision = 6;
inline constexpr std::uint8_t kFadtMinorVersion = 3;
inline constexpr std::uint8_t kMadtRevision = 5;

// FADT fixed feature flags (§5.2.9, Table 5.10) and IA-PC boot architecture flags (Table 5.11).
inline constexpr std::uint32_t kFadtWbinvd = 1u << 0;
inline constexpr std::uint32_t kFadtProcC1 = 1u << 2;
inline constexpr std::uint32_t kFadtPwrButton = 1u << 4;  // set = control-method power button
inline constexpr std::uint32_t kFadtSlpButton = 1u << 5;  // set = no fixed sleep button
inline constexpr std::uint32_t kFadtFixRtc = 1u << 6;     // set = no RTC wake status in PM1
inline constexpr std::uint32_t kFadtTmrValExt = 1u << 8;  // set = 32-bit PM timer
inline constexpr std::uint32_t kFadtResetRegSup = 1u << 10;
inline constexpr std::uint32_t kFadtHwReducedAcpi = 1u << 20;
inline constexpr std::uint16_t kBootArchLegacyDevices = 1u << 0;
inline constexpr std::uint16_t kBootArch8042 = 1u << 1;
inline constexpr std::uint16_t kBootArchVgaNotPresent = 1u << 2;
inline constexpr std::uint8_t kCmosCentury = 0x32;  // legacy::CmosRtc's century byte

// RSDP revision 2 (ACPI 2.0+), both checksums.
std::vector<std::uint8_t> build_rsdp(std::uint64_t xsdt_addr, std::uint32_t rsdt_addr);
std::vector<std::uint8_t> build_xsdt(const std::vector<std::uint64_t>& entries);
std::vector<std::uint8_t> build_rsdt(const std::vector<std::uint32_t>& entries);
// 64 bytes, version 2, no global lock in use, no waking vector (no S3).
std::vector<std::uint8_t> build_facs();
// The FADT: PM1a event block at pm_io_base (4 bytes), PM1a control at +4 (2), PM timer at +8
// (4, 24-bit), SCI_INT kSciIrq, no SMI_CMD, RESET_REG port 0x64 = 0xfe, both the 32-bit and
// the X_ address fields set.
std::vector<std::uint8_t> build_fadt(const AcpiConfig& config, std::uint64_t facs_addr, std::uint64_t dsdt_addr);
// MADT: a Processor Local APIC per vCPU (UID = APIC id = index), the I/O APIC (ioapic_id,
// 0xfec00000, GSI base 0), ISOs IRQ0 -> GSI 2 (edge, high) and IRQ 9 -> GSI 9 (level, high),
// a Local APIC NMI on LINT1 for all processors. PCAT_COMPAT: the 8259s are present.
std::vector<std::uint8_t> build_madt(const AcpiConfig& config);
// MCFG: one allocation, ECAM at kPciEcamBase for segment 0, buses 0..255.
std::vector<std::uint8_t> build_mcfg();

}  // namespace vmm::x86::acpi
