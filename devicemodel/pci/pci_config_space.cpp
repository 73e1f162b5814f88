#include "devicemodel/pci/pci_config_space.h"

#include "common/error.h"

#include <linux/pci_regs.h>

#include <string>

namespace vmm::pci {

namespace {
constexpr std::uint16_t kCommandWritable = PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER |
                                           PCI_COMMAND_PARITY | PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE;

bool is_power_of_two(std::uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }
}  // namespace

PciConfigSpace::PciConfigSpace(const PciIdentity& id) {
    store16(PCI_VENDOR_ID, id.vendor_id);
    store16(PCI_DEVICE_ID, id.device_id);
    store8(PCI_REVISION_ID, id.revision);
    store8(PCI_CLASS_PROG, std::uint8_t(id.class_code));
    store16(PCI_CLASS_DEVICE, std::uint16_t(id.class_code >> 8));
    store8(PCI_HEADER_TYPE, PCI_HEADER_TYPE_NORMAL);
    store16(PCI_SUBSYSTEM_VENDOR_ID, id.subsystem_vendor_id);
    store16(PCI_SUBSYSTEM_ID, id.subsystem_id);
    wmask_[PCI_COMMAND] = std::uint8_t(kCommandWritable);
    wmask_[PCI_COMMAND + 1] = std::uint8_t(kCommandWritable >> 8);
    wmask_[PCI_CACHE_LINE_SIZE] = 0xff;
    wmask_[PCI_LATENCY_TIMER] = 0xff;
    wmask_[PCI_INTERRUPT_LINE] = 0xff;
}

void PciConfigSpace::read(std::uint32_t offset, std::span<std::uint8_t> data) const {
    for (std::size_t i = 0; i < data.size(); ++i) {
        const std::uint64_t at = std::uint64_t(offset) + i;
        data[i] = at < kConfigSpaceSize ? bytes_[at] : 0xff;
    }
}

void PciConfigSpace::write(std::uint32_t offset, std::span<const std::uint8_t> data) {
    for (std::size_t i = 0; i < data.size(); ++i) {
        const std::uint64_t at = std::uint64_t(offset) + i;
        if (at >= kConfigSpaceSize) break;
        bytes_[at] = std::uint8_t((bytes_[at] & ~wmask_[at]) | (data[i] & wmask_[at]));
    }
}

std::uint16_t PciConfigSpace::read16(std::uint32_t offset) const {
    return std::uint16_t(bytes_[offset] | bytes_[offset + 1] << 8);
}
std::uint32_t PciConfigSpace::read32(std::uint32_t offset) const {
    return std::uint32_t(read16(offset)) | std::uint32_t(read16(offset + 2)) << 16;
}
void PciConfigSpace::store16(std::uint32_t offset, std::uint16_t v) {
    bytes_[offset] = std::uint8_t(v);
    bytes_[offset + 1] = std::uint8_t(v >> 8);
}
void PciConfigSpace::store32(std::uint32_t offset, std::uint32_t v) {
    store16(offset, std::uint16_t(v));
    store16(offset + 2, std::uint16_t(v >> 16));
}
void PciConfigSpace::set_wmask32(std::uint32_t offset, std::uint32_t mask) {
    for (unsigned i = 0; i < 4; ++i) wmask_[offset + i] = std::uint8_t(mask >> (8 * i));
}

void PciConfigSpace::add_bar(unsigned index, const PciBar& bar) {
    const std::string what = "PCI BAR" + std::to_string(index);
    if (index >= kNumBars) throw Error(what + ": no such BAR");
    if (bars_[index] || upper_half_[index]) throw Error(what + ": already in use");
    if (!is_power_of_two(bar.size)) throw Error(what + ": size is not a power of two");
    const std::uint32_t reg = PCI_BASE_ADDRESS_0 + 4 * index;
    switch (bar.kind) {
    case PciBarKind::Io:
        // x86 port space is 16 bits: the upper half of an I/O BAR is hard-wired to 0.
        if (bar.size < 4 || bar.size > 256) throw Error(what + ": I/O BAR size must be 4..256");
        if (bar.prefetchable) throw Error(what + ": an I/O BAR cannot be prefetchable");
        store32(reg, PCI_BASE_ADDRESS_SPACE_IO);
        set_wmask32(reg, std::uint32_t(~(bar.size - 1)) & 0xfffcu);
        break;
    case PciBarKind::Mem32:
        if (bar.size < 16 || bar.size > 0x80000000ull) throw Error(what + ": 32-bit BAR size must be 16 B..2 GiB");
        store32(reg, PCI_BASE_ADDRESS_MEM_TYPE_32 | (bar.prefetchable ? PCI_BASE_ADDRESS_MEM_PREFETCH : 0));
        set_wmask32(reg, std::uint32_t(~(bar.size - 1)) & ~0xfu);
        break;
    case PciBarKind::Mem64:
        if (index + 1 >= kNumBars) throw Error(what + ": a 64-bit BAR needs the next register");
        if (bars_[index + 1] || upper_half_[index + 1]) throw Error(what + ": the next register is in use");
        if (bar.size < 16) throw Error(what + ": 64-bit BAR size must be at least 16 B");
        store32(reg, PCI_BASE_ADDRESS_MEM_TYPE_64 | (bar.prefetchable ? PCI_BASE_ADDRESS_MEM_PREFETCH : 0));
        set_wmask32(reg, std::uint32_t(~(bar.size - 1)) & ~0xfu);
        store32(reg + 4, 0);
        set_wmask32(reg + 4, std::uint32_t(~(bar.size - 1) >> 32));
        upper_half_[index + 1] = true;
        break;
    }
    bars_[index] = bar;
}

std::optional<PciBar> PciConfigSpace::bar(unsigned index) const {
    return index < kNumBars ? bars_[index] : std::nullopt;
}

std::uint64_t PciConfigSpace::bar_address(unsigned index) const {
    if (index >= kNumBars || !bars_[index]) return 0;
    const std::uint32_t reg = PCI_BASE_ADDRESS_0 + 4 * index;
    switch (bars_[index]->kind) {
    case PciBarKind::Io: return read32(reg) & PCI_BASE_ADDRESS_IO_MASK;
    case PciBarKind::Mem32: return read32(reg) & PCI_BASE_ADDRESS_MEM_MASK;
    case PciBarKind::Mem64:
        return (read32(reg) & PCI_BASE_ADDRESS_MEM_MASK) | std::uint64_t(read32(reg + 4)) << 32;
    }
    return 0;
}

void PciConfigSpace::set_bar_address(unsigned index, std::uint64_t address) {
    if (index >= kNumBars || !bars_[index]) throw Error("PCI BAR" + std::to_string(index) + ": not declared");
    const std::uint32_t reg = PCI_BASE_ADDRESS_0 + 4 * index;
    std::uint8_t b[8];
    for (unsigned i = 0; i < 8; ++i) b[i] = std::uint8_t(address >> (8 * i));
    write(reg, std::span<const std::uint8_t>(b, bars_[index]->kind == PciBarKind::Mem64 ? 8 : 4));
}

std::uint8_t PciConfigSpace::add_capability(std::uint8_t id, std::span<const std::uint8_t> body) {
    const std::uint32_t at = next_cap_;
    const std::uint32_t len = 2 + std::uint32_t(body.size());
    if (at + len > PCI_CFG_SPACE_SIZE) throw Error("PCI capability list full");
    bytes_[at] = id;
    bytes_[at + 1] = 0;
    for (std::size_t i = 0; i < body.size(); ++i) bytes_[at + 2 + i] = body[i];
    if (last_cap_ == 0) {
        bytes_[PCI_CAPABILITY_LIST] = std::uint8_t(at);
        store16(PCI_STATUS, read16(PCI_STATUS) | PCI_STATUS_CAP_LIST);
    } else {
        bytes_[last_cap_ + 1] = std::uint8_t(at);
    }
    last_cap_ = std::uint8_t(at);
    next_cap_ = (at + len + 3) & ~3u;
    return std::uint8_t(at);
}

void PciConfigSpace::set_writable(std::uint32_t offset, std::span<const std::uint8_t> mask) {
    if (offset + mask.size() > kConfigSpaceSize) throw Error("PCI writable mask out of range");
    for (std::size_t i = 0; i < mask.size(); ++i) wmask_[offset + i] = mask[i];
}

void PciConfigSpace::set_interrupt_pin(std::uint8_t pin) {
    if (pin > 4) throw Error("PCI interrupt pin must be 0..4");
    bytes_[PCI_INTERRUPT_PIN] = pin;
}

void PciConfigSpace::set_interrupt_status(bool pending) {
    const std::uint16_t s = read16(PCI_STATUS);
    store16(PCI_STATUS, pending ? s | PCI_STATUS_INTERRUPT : s & ~PCI_STATUS_INTERRUPT);
}

}  // namespace vmm::pci
