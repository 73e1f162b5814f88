#include "x86/mptable.h"

#include "common/error.h"
#include "x86/memory_layout.h"

#include <cstddef>
#include <cstring>
#include <numeric>
#include <string>

namespace vmm::x86 {

namespace {

static_assert(kMpTableAddr == kEbdaStart && kMpTableSpace == kLowRamEnd - kEbdaStart);

// MP spec 1.4, 4.1: MP floating pointer structure.
struct [[gnu::packed]] MpFloating {
    char signature[4];          // "_MP_"
    std::uint32_t config_addr;  // physical address of the config table
    std::uint8_t length;        // in 16-byte paragraphs: 1
    std::uint8_t spec_rev;      // 4 = version 1.4
    std::uint8_t checksum;      // all 16 bytes sum to 0
    std::uint8_t feature[5];    // feature[0] = 0: a config table is present; [1] bit 7 = 0: virtual wire
};
// 4.2: MP configuration table header.
struct [[gnu::packed]] MpConfigHeader {
    char signature[4];          // "PCMP"
    std::uint16_t base_length;  // header + entries
    std::uint8_t spec_rev;      // 4
    std::uint8_t checksum;      // the base table sums to 0
    char oem_id[8];
    char product_id[12];
    std::uint32_t oem_table;
    std::uint16_t oem_table_size, entry_count;
    std::uint32_t lapic_address;
    std::uint16_t ext_length;
    std::uint8_t ext_checksum, reserved;
};
constexpr std::size_t kConfigHeaderSize = sizeof(MpConfigHeader);
static_assert(kConfigHeaderSize == 44);
// 4.3.1 processor entry (type 0).
struct [[gnu::packed]] MpProcessor {
    std::uint8_t type, apic_id, apic_version, cpu_flags;
    std::uint32_t signature, features;
    std::uint32_t reserved[2];
};
// 4.3.2 bus (1), 4.3.3 I/O APIC (2), 4.3.4 I/O interrupt (3), 4.3.5 local interrupt (4).
struct [[gnu::packed]] MpBus {
    std::uint8_t type, bus_id;
    char bus_type[6];
};
struct [[gnu::packed]] MpIoapic {
    std::uint8_t type, id, version, flags;
    std::uint32_t address;
};
struct [[gnu::packed]] MpIntSource {
    std::uint8_t type, int_type;
    std::uint16_t flags;  // polarity bits 0-1, trigger bits 2-3; 0 = conforms to the bus
    std::uint8_t source_bus, source_irq, dest_id, dest_pin;
};
static_assert(sizeof(MpFloating) == 16 && sizeof(MpProcessor) == 20 && sizeof(MpBus) == 8 &&
              sizeof(MpIoapic) == 8 && sizeof(MpIntSource) == 8);

constexpr std::uint8_t kEntryProcessor = 0, kEntryBus = 1, kEntryIoapic = 2, kEntryIoInt = 3, kEntryLocalInt = 4;
constexpr std::uint8_t kIntTypeInt = 0, kIntTypeNmi = 1, kIntTypeExtInt = 3;
constexpr std::uint8_t kCpuEnabled = 1, kCpuBsp = 2;
constexpr std::uint8_t kLapicVersion = 0x14, kIoapicVersion = 0x11;
// A family 6 CPU with FPU and APIC (CPUID.1 EAX / EDX), the plausible fixed values the spec
// asks for when a processor cannot be identified; Linux does not rely on them.
constexpr std::uint32_t kCpuSignature = 0x600, kCpuFeatures = 0x201;
constexpr unsigned kIsaIrqs = 16;
constexpr std::uint8_t kIsaBusId = 0;

constexpr std::size_t table_size(unsigned cpus) {
    return sizeof(MpFloating) + kConfigHeaderSize + cpus * sizeof(MpProcessor) + sizeof(MpBus) + sizeof(MpIoapic) +
           (kIsaIrqs - 1) * sizeof(MpIntSource) + 2 * sizeof(MpIntSource);
}
static_assert(table_size(kMpTableMaxCpus) <= kMpTableSpace && table_size(kMpTableMaxCpus + 1) > kMpTableSpace);

std::uint8_t checksum_byte(const std::uint8_t* p, std::size_t n) {
    return static_cast<std::uint8_t>(-std::accumulate(p, p + n, 0u));
}

// The entry structs are packed plain integers: their bytes are their wire format.
template <typename T>
void append(std::vector<std::uint8_t>& out, const T& v) {
    const auto* p = reinterpret_cast<const std::uint8_t*>(&v);
    out.insert(out.end(), p, p + sizeof v);
}

std::uint16_t get16(const std::uint8_t* p) { std::uint16_t v; std::memcpy(&v, p, 2); return v; }
std::uint32_t get32(const std::uint8_t* p) { std::uint32_t v; std::memcpy(&v, p, 4); return v; }

}  // namespace

void write_mptable(const GuestMemory& mem, unsigned vcpu_count) {
    if (vcpu_count == 0) throw Error("MP table: vcpu_count must be at least 1");
    if (vcpu_count > kMpTableMaxCpus)
        throw Error("MP table: " + std::to_string(vcpu_count) + " vCPUs do not fit in the 1 KiB EBDA (at most " +
                    std::to_string(kMpTableMaxCpus) + "); use ACPI (MADT) for more");

    const std::uint64_t config_addr = kMpTableAddr + sizeof(MpFloating);
    std::vector<std::uint8_t> cfg(kConfigHeaderSize, 0);
    std::uint16_t entries = 0;
    for (unsigned i = 0; i < vcpu_count; ++i, ++entries) {
        const std::uint8_t flags = kCpuEnabled | (i == 0 ? kCpuBsp : 0);
        append(cfg, MpProcessor{kEntryProcessor, static_cast<std::uint8_t>(i), kLapicVersion, flags, kCpuSignature,
                                kCpuFeatures, {0, 0}});
    }
    append(cfg, MpBus{kEntryBus, kIsaBusId, {'I', 'S', 'A', ' ', ' ', ' '}});
    ++entries;
    const auto ioapic_id = static_cast<std::uint8_t>(vcpu_count);
    append(cfg, MpIoapic{kEntryIoapic, ioapic_id, kIoapicVersion, 1 /* enabled */, static_cast<std::uint32_t>(kIoapicAddr)});
    ++entries;
    for (std::uint8_t irq = 0; irq < kIsaIrqs; ++irq) {
        if (irq == 2) continue;  // the cascade; pin 2 carries IRQ 0 (the PC's timer override)
        const std::uint8_t pin = irq == 0 ? 2 : irq;
        append(cfg, MpIntSource{kEntryIoInt, kIntTypeInt, 0, kIsaBusId, irq, ioapic_id, pin});
        ++entries;
    }
    // Local interrupts to every local APIC (0xff): the 8259 on LINT0, NMI on LINT1 (4.3.5).
    append(cfg, MpIntSource{kEntryLocalInt, kIntTypeExtInt, 0, kIsaBusId, 0, 0xff, 0});
    append(cfg, MpIntSource{kEntryLocalInt, kIntTypeNmi, 0, kIsaBusId, 0, 0xff, 1});
    entries += 2;

    MpConfigHeader h{};
    std::memcpy(h.signature, "PCMP", 4);
    h.base_length = static_cast<std::uint16_t>(cfg.size());
    h.spec_rev = 4;
    std::memcpy(h.oem_id, "VMM     ", 8);
    std::memcpy(h.product_id, "KVM VMM     ", 12);
    h.entry_count = entries;
    h.lapic_address = static_cast<std::uint32_t>(kLapicAddr);
    std::memcpy(cfg.data(), &h, sizeof h);
    cfg[offsetof(MpConfigHeader, checksum)] = checksum_byte(cfg.data(), cfg.size());

    MpFloating fp{};
    std::memcpy(fp.signature, "_MP_", 4);
    fp.config_addr = static_cast<std::uint32_t>(config_addr);
    fp.length = 1;
    fp.spec_rev = 4;
    fp.checksum = checksum_byte(reinterpret_cast<const std::uint8_t*>(&fp), sizeof fp);

    if (sizeof fp + cfg.size() > kMpTableSpace) throw Error("MP table: internal size error");
    mem.write_or_throw(kMpTableAddr, &fp, sizeof fp, "MP floating pointer");
    mem.write_or_throw(config_addr, cfg.data(), cfg.size(), "MP configuration table");
}

std::optional<MpInfo> parse_mptable(const GuestMemory& mem) {
    auto area = mem.span(kMpTableAddr, kMpTableSpace);
    if (!area) return std::nullopt;
    for (std::size_t off = 0; off + sizeof(MpFloating) <= area->size(); off += 16) {
        const std::uint8_t* f = area->data() + off;
        if (std::memcmp(f, "_MP_", 4) != 0 || f[8] != 1) continue;
        if (checksum_byte(f, sizeof(MpFloating)) != 0) continue;
        MpInfo info;
        info.floating_addr = kMpTableAddr + off;
        info.config_addr = get32(f + 4);
        info.spec_rev = f[9];
        auto head = mem.span(info.config_addr, kConfigHeaderSize);
        if (!head || std::memcmp(head->data(), "PCMP", 4) != 0) return std::nullopt;
        const std::uint16_t len = get16(head->data() + 4);
        if (len < kConfigHeaderSize) return std::nullopt;
        auto table = mem.span(info.config_addr, len);
        if (!table || checksum_byte(table->data(), len) != 0) return std::nullopt;
        const std::uint8_t* t = table->data();
        const std::uint16_t count = get16(t + offsetof(MpConfigHeader, entry_count));
        info.lapic_address = get32(t + offsetof(MpConfigHeader, lapic_address));
        std::size_t pos = kConfigHeaderSize;
        for (unsigned i = 0; i < count; ++i) {
            if (pos >= len) return std::nullopt;
            const std::uint8_t type = t[pos];
            const std::size_t size = type == kEntryProcessor ? sizeof(MpProcessor) : 8;
            if (type > kEntryLocalInt || pos + size > len) return std::nullopt;
            const std::uint8_t* e = t + pos;
            if (type == kEntryProcessor && (e[3] & kCpuEnabled)) {
                info.apic_ids.push_back(e[1]);
                if (e[3] & kCpuBsp) info.bsp_apic_id = e[1];
            } else if (type == kEntryBus) {
                info.bus_types.emplace_back(reinterpret_cast<const char*>(e + 2), 6);
            } else if (type == kEntryIoapic) {
                info.ioapic_id = e[1];
                info.ioapic_version = e[2];
                info.ioapic_address = get32(e + 4);
            } else if (type == kEntryIoInt) {
                info.io_interrupts.push_back({e[1], e[4], e[5], e[6], e[7], get16(e + 2)});
            } else if (type == kEntryLocalInt) {
                ++info.local_interrupts;
            }
            pos += size;
        }
        return info;
    }
    return std::nullopt;
}

}  // namespace vmm::x86
