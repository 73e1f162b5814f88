#include "x86/acpi/tables.h"

#include "devicemodel/legacy/acpi_pm.h"
#include "x86/acpi/sdt.h"
#include "x86/memory_layout.h"

#include <cstring>

namespace vmm::x86::acpi {

namespace {

using legacy::AcpiPm;

// MADT interrupt controller structure types (§5.2.12, Table 5.21).
constexpr std::uint8_t kMadtLocalApic = 0;
constexpr std::uint8_t kMadtIoApic = 1;
constexpr std::uint8_t kMadtIntSrcOverride = 2;
constexpr std::uint8_t kMadtLocalApicNmi = 4;
constexpr std::uint32_t kMadtPcatCompat = 1;
constexpr std::uint32_t kLocalApicEnabled = 1;
// MPS INTI flags (Table 5.26): polarity bits 0-1 (1 = high, 3 = low), trigger bits 2-3
// (1 = edge, 3 = level); 0 = "conforms to the bus" (ISA: edge, high).
constexpr std::uint16_t kIntiConforming = 0;
constexpr std::uint16_t kIntiLevelHigh = 0x1 | (0x3 << 2);
constexpr std::uint8_t kAllProcessors = 0xff;

}  // namespace

std::vector<std::uint8_t> build_rsdp(std::uint64_t xsdt_addr, std::uint32_t rsdt_addr) {
    std::vector<std::uint8_t> b(kRsdpSize, 0);
    std::memcpy(b.data(), "RSD PTR ", 8);
    std::memcpy(b.data() + 9, kOemId, 6);
    b[15] = 2;  // revision: ACPI 2.0+
    for (int i = 0; i < 4; ++i) b[16 + i] = static_cast<std::uint8_t>(rsdt_addr >> (8 * i));
    for (int i = 0; i < 4; ++i) b[20 + i] = static_cast<std::uint8_t>(kRsdpSize >> (8 * i));
    for (int i = 0; i < 8; ++i) b[24 + i] = static_cast<std::uint8_t>(xsdt_addr >> (8 * i));
    // Checksum covers the ACPI 1.0 part (first 20 bytes), the extended one all 36.
    b[8] = checksum_for(std::span(b.data(), 20));
    b[32] = checksum_for(b);
    return b;
}

std::vector<std::uint8_t> build_xsdt(const std::vector<std::uint64_t>& entries) {
    SdtWriter w("XSDT", 1);
    for (auto e : entries) w.u64(e);
    return std::move(w).finish();
}

std::vector<std::uint8_t> build_rsdt(const std::vector<std::uint32_t>& entries) {
    SdtWriter w("RSDT", 1);
    for (auto e : entries) w.u32(e);
    return std::move(w).finish();
}

std::vector<std::uint8_t> build_facs() {
    // No SDT header and no checksum (§5.2.10, Table 5.14).
    std::vector<std::uint8_t> b(kFacsSize, 0);
    std::memcpy(b.data(), "FACS", 4);
    b[4] = kFacsSize;
    b[32] = 2;  // version
    return b;
}

std::vector<std::uint8_t> build_fadt(const AcpiConfig& config, std::uint64_t facs_addr, std::uint64_t dsdt_addr) {
    const std::uint32_t pm1_evt = config.pm_io_base + AcpiPm::kPm1EventOffset;
    const std::uint32_t pm1_cnt = config.pm_io_base + AcpiPm::kPm1ControlOffset;
    const std::uint32_t pm_tmr = config.pm_io_base + AcpiPm::kPmTimerOffset;

    SdtWriter w("FACP", kFadtRevision);
    w.u32(static_cast<std::uint32_t>(facs_addr));  // FIRMWARE_CTRL (36)
    w.u32(static_cast<std::uint32_t>(dsdt_addr));  // DSDT (40)
    w.u8(0);                                       // reserved (INT_MODEL in ACPI 1.0)
    w.u8(0);                                       // Preferred_PM_Profile: unspecified
    w.u16(kSciIrq);                                // SCI_INT (46)
    w.u32(0);                                      // SMI_CMD: none, ACPI mode is fixed
    w.u8(0).u8(0).u8(0).u8(0);                     // ACPI_ENABLE, ACPI_DISABLE, S4BIOS_REQ, PSTATE_CNT
    w.u32(pm1_evt);                                // PM1a_EVT_BLK (56)
    w.u32(0);                                      // PM1b_EVT_BLK
    w.u32(pm1_cnt);                                // PM1a_CNT_BLK (64)
    w.u32(0);                                      // PM1b_CNT_BLK
    w.u32(0);                                      // PM2_CNT_BLK
    w.u32(pm_tmr);                                 // PM_TMR_BLK (76)
    w.u32(0).u32(0);                               // GPE0_BLK, GPE1_BLK
    w.u8(AcpiPm::kPm1EventLength);                 // PM1_EVT_LEN (88)
    w.u8(AcpiPm::kPm1ControlLength);               // PM1_CNT_LEN
    w.u8(0);                                       // PM2_CNT_LEN
    w.u8(AcpiPm::kPmTimerLength);                  // PM_TMR_LEN
    w.u8(0).u8(0).u8(0);                           // GPE0_BLK_LEN, GPE1_BLK_LEN, GPE1_BASE
    w.u8(0);                                       // CST_CNT
    w.u16(101);                                    // P_LVL2_LAT > 100: no C2
    w.u16(1001);                                   // P_LVL3_LAT > 1000: no C3
    w.u16(0).u16(0);                               // FLUSH_SIZE, FLUSH_STRIDE
    w.u8(0).u8(0);                                 // DUTY_OFFSET, DUTY_WIDTH
    w.u8(0).u8(0);                                 // DAY_ALRM, MON_ALRM
    w.u8(kCmosCentury);                            // CENTURY (108)
    w.u16(kBootArchLegacyDevices | kBootArch8042 | kBootArchVgaNotPresent);  // IAPC_BOOT_ARCH (109)
    w.u8(0);                                       // reserved
    w.u32(kFadtWbinvd | kFadtProcC1 | kFadtSlpButton | kFadtFixRtc | kFadtResetRegSup);  // Flags (112)
    w.gas(AddressSpace::SystemIo, 8, 0, AccessSize::Byte, kResetPort);                  // RESET_REG (116)
    w.u8(kResetValue);                             // RESET_VALUE (128)
    w.u16(0);                                      // ARM_BOOT_ARCH
    w.u8(kFadtMinorVersion);                       // FADT Minor Version (131)
    w.u64(facs_addr);                              // X_FIRMWARE_CTRL (132)
    w.u64(dsdt_addr);                              // X_DSDT (140)
    w.gas(AddressSpace::SystemIo, 8 * AcpiPm::kPm1EventLength, 0, AccessSize::Word, pm1_evt);    // X_PM1a_EVT_BLK
    w.gas_none();                                                                                 // X_PM1b_EVT_BLK
    w.gas(AddressSpace::SystemIo, 8 * AcpiPm::kPm1ControlLength, 0, AccessSize::Word, pm1_cnt);  // X_PM1a_CNT_BLK
    w.gas_none();                                                                                 // X_PM1b_CNT_BLK
    w.gas_none();                                                                                 // X_PM2_CNT_BLK
    w.gas(AddressSpace::SystemIo, 8 * AcpiPm::kPmTimerLength, 0, AccessSize::DWord, pm_tmr);     // X_PM_TMR_BLK
    w.gas_none().gas_none();                       // X_GPE0_BLK, X_GPE1_BLK
    w.gas_none().gas_none();                       // SLEEP_CONTROL_REG, SLEEP_STATUS_REG (HW-reduced only)
    w.u64(0);                                      // Hypervisor Vendor Identity (268)
    return std::move(w).finish();
}

std::vector<std::uint8_t> build_madt(const AcpiConfig& config) {
    SdtWriter w("APIC", kMadtRevision);
    w.u32(static_cast<std::uint32_t>(kLapicAddr));
    w.u32(kMadtPcatCompat);
    for (unsigned i = 0; i < config.vcpus; ++i) {
        // Processor Local APIC (Table 5.22): UID, APIC id, flags.
        w.u8(kMadtLocalApic).u8(8).u8(static_cast<std::uint8_t>(i)).u8(static_cast<std::uint8_t>(i));
        w.u32(kLocalApicEnabled);
    }
    // I/O APIC (Table 5.24).
    w.u8(kMadtIoApic).u8(12).u8(config.ioapic_id).u8(0);
    w.u32(static_cast<std::uint32_t>(kIoapicAddr));
    w.u32(0);  // GSI base
    // Interrupt Source Overrides (Table 5.25): bus 0 (ISA), source IRQ, GSI, flags.
    w.u8(kMadtIntSrcOverride).u8(10).u8(0).u8(0).u32(2).u16(kIntiConforming);
    w.u8(kMadtIntSrcOverride).u8(10).u8(0).u8(kSciIrq).u32(kSciIrq).u16(kIntiLevelHigh);
    // Local APIC NMI (Table 5.29): all processors, conforming flags, LINT1.
    w.u8(kMadtLocalApicNmi).u8(6).u8(kAllProcessors).u16(kIntiConforming).u8(1);
    return std::move(w).finish();
}

std::vector<std::uint8_t> build_mcfg() {
    SdtWriter w("MCFG", 1);
    w.zeros(8);  // reserved
    // Configuration space base address allocation structure (PCI Firmware spec Table 4-3).
    w.u64(kPciEcamBase);
    w.u16(0);    // PCI segment group
    w.u8(0);     // start bus
    w.u8(static_cast<std::uint8_t>(kPciEcamSize / (1u << 20) - 1));  // end bus: 1 MiB of ECAM per bus
    w.u32(0);    // reserved
    return std::move(w).finish();
}

}  // namespace vmm::x86::acpi
