#include "x86/acpi/dsdt.h"

#include "devicemodel/legacy/acpi_pm.h"
#include "x86/acpi/aml.h"
#include "x86/acpi/sdt.h"
#include "x86/memory_layout.h"

#include <cstdio>

namespace vmm::x86::acpi {

namespace {

using aml::Bytes;
using aml::ResourceTemplate;

constexpr unsigned kPciSlots = 32;
constexpr unsigned kPciPins = 4;
constexpr std::uint8_t kStaPresentEnabledShown = 0x0f;  // _STA: present, enabled, shown, functioning

Bytes pci_root_bridge(const AcpiConfig& config) {
    const std::uint64_t mmio64 = pci_mmio64_start(config.ram.high_size);
    ResourceTemplate crs;
    crs.word_bus_number(0, 255)
        .io(0xcf8, 0xcf8, 1, 8)
        .word_io(kPciIoStart, static_cast<std::uint16_t>(kPciIoEnd - 1))
        .dword_memory(static_cast<std::uint32_t>(kPciMmio32Start), static_cast<std::uint32_t>(kPciMmio32End - 1),
                      /*cacheable=*/false)
        .qword_memory(mmio64, mmio64 + kPciMmio64Size - 1, /*cacheable=*/true);

    // _PRT (§6.2.13): {address = slot << 16 | 0xffff (any function), pin, source 0 (a GSI, no
    // link device), source index = the GSI}. Slot 0 is the host bridge, which has no INTx.
    std::vector<Bytes> prt;
    for (unsigned slot = 1; slot < kPciSlots; ++slot) {
        for (unsigned pin = 0; pin < kPciPins; ++pin) {
            prt.push_back(aml::package({aml::integer((std::uint64_t(slot) << 16) | 0xffff), aml::integer(pin),
                                        aml::integer(0), aml::integer(pci_intx_gsi(slot, pin))}));
        }
    }
    // 31 * 4 = 124 entries: fits one Package (255 at most).
    return aml::device("PCI0", aml::concat({
                                   aml::name("_HID", aml::eisa_id("PNP0A08")),
                                   aml::name("_CID", aml::eisa_id("PNP0A03")),
                                   aml::name("_SEG", aml::integer(0)),
                                   aml::name("_BBN", aml::integer(0)),
                                   aml::name("_UID", aml::integer(0)),
                                   aml::name("_CRS", crs.to_aml()),
                                   aml::name("_PRT", aml::package(prt)),
                               }));
}

Bytes legacy_device(const char* name, const Bytes& hid, std::uint64_t uid, const ResourceTemplate& crs) {
    return aml::device(name, aml::concat({aml::name("_HID", hid), aml::name("_UID", aml::integer(uid)),
                                          aml::name("_CRS", crs.to_aml())}));
}

}  // namespace

std::vector<std::uint8_t> build_dsdt(const AcpiConfig& config) {
    Bytes sb = pci_root_bridge(config);

    // Motherboard resources: the ECAM window, so Linux accepts MCFG (pci_mmcfg_reserved).
    aml::append(sb, legacy_device("MBRS", aml::eisa_id("PNP0C02"), 0,
                                  ResourceTemplate().memory32_fixed(static_cast<std::uint32_t>(kPciEcamBase),
                                                                    static_cast<std::uint32_t>(kPciEcamSize))));
    aml::append(sb, legacy_device("COM1", aml::eisa_id("PNP0501"), 1, ResourceTemplate().io(0x3f8, 0x3f8, 1, 8).irq_no_flags({4})));
    aml::append(sb, legacy_device("RTC", aml::eisa_id("PNP0B00"), 0, ResourceTemplate().io(0x70, 0x70, 1, 2).irq_no_flags({8})));
    aml::append(sb, legacy_device("KBD", aml::eisa_id("PNP0303"), 0,
                                  ResourceTemplate().io(0x60, 0x60, 1, 1).io(0x64, 0x64, 1, 1).irq_no_flags({1})));
    aml::append(sb, legacy_device("MOU", aml::eisa_id("PNP0F13"), 0, ResourceTemplate().irq_no_flags({12})));
    // pvpanic: QEMU's ISA device, which Linux's pvpanic driver binds by _HID QEMU0001.
    aml::append(sb, aml::device("PEVT", aml::concat({
                                            aml::name("_HID", aml::string("QEMU0001")),
                                            aml::name("_UID", aml::integer(0)),
                                            aml::name("_CRS", ResourceTemplate().io(0x505, 0x505, 1, 1).to_aml()),
                                            aml::method("_STA", 0, aml::return_value(aml::integer(kStaPresentEnabledShown))),
                                        })));
    // Processor devices (§8.4): _UID matches the MADT's ACPI processor UID.
    for (unsigned i = 0; i < config.vcpus; ++i) {
        char cpu[16];
        std::snprintf(cpu, sizeof cpu, "C%03X", i & 0xfff);
        aml::append(sb, aml::device(cpu, aml::concat({aml::name("_HID", aml::string("ACPI0007")),
                                                      aml::name("_UID", aml::integer(i))})));
    }

    const std::uint8_t s5 = legacy::AcpiPm::kS5SlpTyp;
    const Bytes body = aml::concat({
        // \_S5: {PM1a_CNT.SLP_TYP, PM1b_CNT.SLP_TYP, reserved, reserved} (§7.4.2).
        aml::name("\\_S5", aml::package({aml::integer(s5), aml::integer(s5), aml::integer(0), aml::integer(0)})),
        aml::scope("\\_SB", sb),
    });

    SdtWriter w("DSDT", kDsdtRevision);
    w.bytes(body);
    return std::move(w).finish();
}

}  // namespace vmm::x86::acpi
