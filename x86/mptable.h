// Intel MultiProcessor Specification 1.4 tables: how a guest without ACPI finds its CPUs, the
// I/O APIC and the ISA interrupt routing (Linux: arch/x86/kernel/mpparse.c).
//
// Layout at x86::kEbdaStart (0x9fc00, the 1 KiB e820-reserved EBDA, which Linux scans as "the
// top 1 KiB of base memory", MP spec 4 / 4.1):
//   +0   MP floating pointer structure ("_MP_", 16 bytes)              (spec 4.1)
//   +16  MP configuration table header ("PCMP", 44 bytes)              (spec 4.2)
//        processor entries (20 bytes each, APIC IDs 0..n-1, BSP = 0)     (spec 4.3.1)
//        one bus entry "ISA   ", one I/O APIC entry (id n, 0xfec00000)   (4.3.2, 4.3.3)
//        15 I/O interrupt entries: ISA IRQ 0 -> pin 2, IRQ 1, 3..15 -> same pin
//          (IRQ 2 is the cascade; pin 2 is IRQ 0's, as SeaBIOS does)   (4.3.4)
//        2 local interrupt entries: ExtINT -> LINT0, NMI -> LINT1       (4.3.5)
// 16 + 44 + 20 n + 8 + 8 + 15 * 8 + 2 * 8 = 212 + 20 n <= 1024 bytes, so at most
// kMpTableMaxCpus = 40 vCPUs; beyond that the guest needs ACPI (MADT).
//
// Caller: the anchor's wiring on its main thread before vCPUs run; tests call both functions.
#pragma once

#include "devicemodel/bus/guest_memory.h"
#include "x86/memory_layout.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace vmm::x86 {

inline constexpr std::uint64_t kMpTableAddr = kEbdaStart;  // 0x9fc00
inline constexpr std::uint64_t kMpTableSpace = 1024;
inline constexpr unsigned kMpTableMaxCpus = 40;

// Writes both structures. Throws vmm::Error if vcpu_count is 0 or above kMpTableMaxCpus, or
// if the EBDA is not guest RAM.
void write_mptable(const GuestMemory& mem, unsigned vcpu_count);

struct MpIoInterrupt {
    std::uint8_t type, source_bus, source_irq, ioapic_id, ioapic_pin;
    std::uint16_t flags;
};

// What parse_mptable found.
struct MpInfo {
    std::uint64_t floating_addr = 0, config_addr = 0;
    std::uint8_t spec_rev = 0;
    std::uint32_t lapic_address = 0;
    std::vector<std::uint8_t> apic_ids;  // enabled processors, in table order
    std::optional<std::uint8_t> bsp_apic_id;
    std::uint8_t ioapic_id = 0, ioapic_version = 0;
    std::uint32_t ioapic_address = 0;
    std::vector<std::string> bus_types;
    std::vector<MpIoInterrupt> io_interrupts;
    unsigned local_interrupts = 0;
};

// Finds the floating pointer in the EBDA's first KiB (16-byte aligned) and reads the config
// table. std::nullopt if either is missing, has a bad checksum or an entry runs past the table.
std::optional<MpInfo> parse_mptable(const GuestMemory& mem);

}  // namespace vmm::x86
