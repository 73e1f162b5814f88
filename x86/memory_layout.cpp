#include "x86/memory_layout.h"

#include "common/error.h"

#include <cstdio>

namespace vmm::x86 {

RamLayout ram_layout(std::uint64_t memory_bytes) {
    if (memory_bytes < 2 * 1024 * 1024) throw Error("guest memory must be at least 2 MiB");
    if (memory_bytes % 4096 != 0) throw Error("guest memory must be a multiple of 4 KiB");
    RamLayout l;
    l.low_size = memory_bytes < kPciHoleStart ? memory_bytes : kPciHoleStart;
    l.high_size = memory_bytes - l.low_size;
    return l;
}

std::vector<E820Entry> e820_map(const RamLayout& ram) {
    std::vector<E820Entry> m;
    m.push_back({0, kEbdaStart, E820Type::Ram});
    m.push_back({kEbdaStart, kLowRamEnd - kEbdaStart, E820Type::Reserved});
    m.push_back({kBiosAreaStart, kHighMemStart - kBiosAreaStart, E820Type::Reserved});
    if (ram.low_size > kHighMemStart) m.push_back({kHighMemStart, ram.low_size - kHighMemStart, E820Type::Ram});
    // The PCI ECAM window, as QEMU reserves it: Linux uses MMCONFIG only where it is reserved.
    m.push_back({kPciEcamBase, kPciEcamSize, E820Type::Reserved});
    if (ram.high_size > 0) m.push_back({k4GiB, ram.high_size, E820Type::Ram});
    return m;
}

std::string to_string(const std::vector<E820Entry>& map) {
    std::string s;
    char line[96];
    for (const auto& e : map) {
        std::snprintf(line, sizeof line, "[mem 0x%016llx-0x%016llx] %s\n", static_cast<unsigned long long>(e.addr),
                      static_cast<unsigned long long>(e.addr + e.size - 1),
                      e.type == E820Type::Ram ? "usable" : e.type == E820Type::Acpi ? "ACPI data" : "reserved");
        s += line;
    }
    return s;
}

}  // namespace vmm::x86

namespace vmm::x86 {

std::uint64_t pci_mmio64_start(std::uint64_t high_ram_size) {
    constexpr std::uint64_t k1GiB = 1ull << 30;
    const std::uint64_t end = k4GiB + high_ram_size;
    return (end + k1GiB - 1) / k1GiB * k1GiB;
}

}  // namespace vmm::x86
