#include "devicemodel/pci/msix.h"

#include "common/error.h"

#include <linux/pci_regs.h>

namespace vmm::pci {

namespace {
unsigned checked_vectors(unsigned vectors) {
    if (vectors == 0 || vectors > MsixTable::kMaxVectors) throw Error("MSI-X: table size must be 1..2048");
    return vectors;
}
}  // namespace

MsixTable::MsixTable(unsigned vectors, std::shared_ptr<MsiVectorSink> sink)
    : sink_(std::move(sink)),
      entries_(checked_vectors(vectors)),
      sent_(vectors),
      pending_(vectors, false) {
    if (!sink_) throw Error("MSI-X: no vector sink");
}

std::uint8_t MsixTable::add_capability(PciConfigSpace& config, unsigned table_bar, std::uint32_t table_offset,
                                       unsigned pba_bar, std::uint32_t pba_offset) {
    if (table_bar >= kNumBars || pba_bar >= kNumBars || (table_offset & 7) || (pba_offset & 7))
        throw Error("MSI-X: bad table/PBA location");
    // Body after id/next: message control (table size - 1), table offset|BIR, PBA offset|BIR.
    const std::uint16_t control = std::uint16_t(vectors() - 1);
    const std::uint32_t table = table_offset | table_bar;
    const std::uint32_t pba = pba_offset | pba_bar;
    const std::uint8_t body[10] = {std::uint8_t(control),      std::uint8_t(control >> 8), std::uint8_t(table),
                                   std::uint8_t(table >> 8),   std::uint8_t(table >> 16), std::uint8_t(table >> 24),
                                   std::uint8_t(pba),          std::uint8_t(pba >> 8),    std::uint8_t(pba >> 16),
                                   std::uint8_t(pba >> 24)};
    cap_ = config.add_capability(PCI_CAP_ID_MSIX, body);
    // Only enable (bit 15) and function mask (bit 14) are writable: the high byte's top bits.
    const std::uint8_t wmask[2] = {0, std::uint8_t((PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL) >> 8)};
    config.set_writable(cap_ + PCI_MSIX_FLAGS, wmask);
    return cap_;
}

void MsixTable::config_written(const PciConfigSpace& config) {
    if (cap_ == 0) return;
    const std::uint16_t control = config.read16(cap_ + PCI_MSIX_FLAGS);
    std::lock_guard lock(mutex_);
    const bool enabled = control & PCI_MSIX_FLAGS_ENABLE;
    const bool fmask = control & PCI_MSIX_FLAGS_MASKALL;
    if (enabled == enabled_ && fmask == function_masked_) return;
    enabled_ = enabled;
    function_masked_ = fmask;
    for (unsigned v = 0; v < vectors(); ++v) update_locked(v);
}

bool MsixTable::masked_locked(unsigned v) const {
    return !enabled_ || function_masked_ || (entries_[v].control & PCI_MSIX_ENTRY_CTRL_MASKBIT);
}

void MsixTable::update_locked(unsigned v) {
    const Entry& e = entries_[v];
    const Sent now{std::uint64_t(e.addr_hi) << 32 | e.addr_lo, e.data, masked_locked(v)};
    Sent& last = sent_[v];
    if (now.address != last.address || now.data != last.data || now.masked != last.masked) {
        sink_->configure(v, now.address, now.data, now.masked);
        last = now;
    }
    if (!now.masked && pending_[v]) {
        pending_[v] = false;
        sink_->trigger(v);
    }
}

std::uint32_t MsixTable::table_dword_locked(std::uint64_t offset) const {
    const Entry& e = entries_[offset / PCI_MSIX_ENTRY_SIZE];
    switch (offset % PCI_MSIX_ENTRY_SIZE) {
    case PCI_MSIX_ENTRY_LOWER_ADDR: return e.addr_lo;
    case PCI_MSIX_ENTRY_UPPER_ADDR: return e.addr_hi;
    case PCI_MSIX_ENTRY_DATA: return e.data;
    default: return e.control;
    }
}

void MsixTable::write_table_dword_locked(std::uint64_t offset, std::uint32_t value) {
    const unsigned v = unsigned(offset / PCI_MSIX_ENTRY_SIZE);
    Entry& e = entries_[v];
    switch (offset % PCI_MSIX_ENTRY_SIZE) {
    case PCI_MSIX_ENTRY_LOWER_ADDR: e.addr_lo = value & ~3u; break;  // bits 1:0 reserved
    case PCI_MSIX_ENTRY_UPPER_ADDR: e.addr_hi = value; break;
    case PCI_MSIX_ENTRY_DATA: e.data = value; break;
    default: e.control = value & PCI_MSIX_ENTRY_CTRL_MASKBIT; break;
    }
    update_locked(v);
}

namespace {
bool valid_access(std::uint64_t offset, std::size_t len, std::uint64_t limit) {
    return (len == 4 || len == 8) && offset % len == 0 && offset < limit && len <= limit - offset;
}
}  // namespace

void MsixTable::table_read(std::uint64_t offset, std::span<std::uint8_t> data) {
    if (!valid_access(offset, data.size(), table_bytes())) {
        set_bus_value(data, ~std::uint64_t{0});
        return;
    }
    std::lock_guard lock(mutex_);
    std::uint64_t v = table_dword_locked(offset);
    if (data.size() == 8) v |= std::uint64_t(table_dword_locked(offset + 4)) << 32;
    set_bus_value(data, v);
}

void MsixTable::table_write(std::uint64_t offset, std::span<const std::uint8_t> data) {
    if (!valid_access(offset, data.size(), table_bytes())) return;
    const std::uint64_t v = bus_value(data);
    std::lock_guard lock(mutex_);
    write_table_dword_locked(offset, std::uint32_t(v));
    if (data.size() == 8) write_table_dword_locked(offset + 4, std::uint32_t(v >> 32));
}

void MsixTable::pba_read(std::uint64_t offset, std::span<std::uint8_t> data) {
    if (!valid_access(offset, data.size(), pba_bytes())) {
        set_bus_value(data, ~std::uint64_t{0});
        return;
    }
    std::lock_guard lock(mutex_);
    std::uint64_t v = 0;
    for (unsigned bit = 0; bit < 8 * data.size(); ++bit) {
        const std::uint64_t vector = offset * 8 + bit;
        if (vector < vectors() && pending_[vector]) v |= std::uint64_t{1} << bit;
    }
    set_bus_value(data, v);
}

bool MsixTable::trigger(unsigned vector) {
    std::lock_guard lock(mutex_);
    if (vector >= vectors() || !enabled_) return false;
    if (masked_locked(vector)) {
        pending_[vector] = true;
    } else {
        sink_->trigger(vector);
    }
    return true;
}

bool MsixTable::enabled() const {
    std::lock_guard lock(mutex_);
    return enabled_;
}
bool MsixTable::function_masked() const {
    std::lock_guard lock(mutex_);
    return function_masked_;
}
bool MsixTable::vector_masked(unsigned vector) const {
    std::lock_guard lock(mutex_);
    return vector < vectors() && (entries_[vector].control & PCI_MSIX_ENTRY_CTRL_MASKBIT);
}
bool MsixTable::pending(unsigned vector) const {
    std::lock_guard lock(mutex_);
    return vector < vectors() && pending_[vector];
}

}  // namespace vmm::pci
