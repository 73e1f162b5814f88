#include "devicemodel/pci/pci_bus.h"

#include "common/error.h"
#include "common/log.h"
#include "devicemodel/pci/pci_config_port.h"
#include "devicemodel/pci/pci_ecam.h"
#include "devicemodel/pci/pci_host_bridge.h"

#include <linux/pci_regs.h>

#include <algorithm>
#include <cstdio>
#include <string>

namespace vmm::pci {

namespace {

std::uint32_t read32(PciDevice& dev, std::uint32_t offset) {
    std::uint8_t b[4];
    dev.config_read(offset, b);
    return std::uint32_t(bus_value(b));
}

void write32(PciDevice& dev, std::uint32_t offset, std::uint32_t v) {
    std::uint8_t b[4];
    set_bus_value(b, v);
    dev.config_write(offset, b);
}

bool valid_width(std::uint32_t offset, std::size_t len) {
    return (len == 1 || len == 2 || len == 4) && (offset % 4) + len <= 4 && offset < kConfigSpaceSize;
}

// Touches the command register or a BAR: mappings may change.
bool touches_decoding(std::uint32_t offset, std::size_t len) {
    const std::uint32_t end = offset + std::uint32_t(len);
    return (offset < PCI_COMMAND + 2 && end > PCI_COMMAND) ||
           (offset < PCI_BASE_ADDRESS_5 + 4 && end > PCI_BASE_ADDRESS_0);
}

std::string hex(std::uint64_t v) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "%#llx", static_cast<unsigned long long>(v));
    return buf;
}

}  // namespace

PciWindows pc_pci_windows(const x86::RamLayout& ram) {
    PciWindows w;
    w.mmio32_start = x86::kPciMmio32Start;
    w.mmio32_end = x86::kPciMmio32End;
    w.mmio64_start = x86::pci_mmio64_start(ram.high_size);
    w.mmio64_end = w.mmio64_start + x86::kPciMmio64Size;
    w.io_start = x86::kPciIoStart;
    w.io_end = x86::kPciIoEnd;
    // Low RAM and the legacy areas below 1 MiB; high RAM; the in-kernel IOAPIC and LAPIC, the
    // KVM TSS/identity map and the BIOS flash area up to 4 GiB.
    w.reserved.emplace_back(0, std::max(ram.low_size, x86::kHighMemStart));
    if (ram.high_size) w.reserved.emplace_back(x86::k4GiB, x86::k4GiB + ram.high_size);
    w.reserved.emplace_back(x86::kIoapicAddr, x86::k4GiB);
    return w;
}

PciRootBus::PciRootBus(IoBus& pio, IoBus& mmio, PciWindows windows, PciIntxRouter::LineFactory intx)
    : pio_(pio),
      mmio_(mmio),
      windows_(std::move(windows)),
      intx_(std::move(intx)),
      log_(vmm::logger("pci")),
      config_port_(std::make_shared<PciConfigPort>(*this)),
      ecam_(std::make_shared<PciEcam>(*this)),
      next_io_(windows_.io_start),
      next_mmio32_(windows_.mmio32_start),
      next_mmio64_(windows_.mmio64_start) {
    slots_[0].device = std::make_shared<PciHostBridge>();
}

PciRootBus::~PciRootBus() {
    if (installed_) {
        pio_.remove(PciConfigPort::kBase);
        mmio_.remove(x86::kPciEcamBase);
    }
    for (auto& s : slots_) {
        if (!s.device) continue;
        for (unsigned i = 0; i < kNumBars; ++i) {
            if (!s.mapped[i]) continue;
            auto bar = s.device->bar(i);
            (bar && bar->kind == PciBarKind::Io ? pio_ : mmio_).remove(*s.mapped[i]);
        }
    }
}

void PciRootBus::install_config_access() {
    pio_.insert(PciConfigPort::kBase, PciConfigPort::kPorts, config_port_);
    mmio_.insert(x86::kPciEcamBase, x86::kPciEcamSize, ecam_);
    installed_ = true;
}

unsigned PciRootBus::add_device(std::shared_ptr<PciDevice> device) {
    unsigned slot = 1;
    {
        std::lock_guard lock(mutex_);
        while (slot < slots_.size() && slots_[slot].device) ++slot;
    }
    if (slot == slots_.size()) throw Error("PCI: no free slot for " + (device ? device->name() : "device"));
    add_device(slot, std::move(device));
    return slot;
}

void PciRootBus::add_device(unsigned slot, std::shared_ptr<PciDevice> device) {
    if (!device) throw Error("PCI: null device");
    if (slot == 0 || slot >= slots_.size()) throw Error("PCI: bad slot " + std::to_string(slot) + " for " + device->name());
    std::lock_guard lock(mutex_);
    if (slots_[slot].device) throw Error("PCI: slot " + std::to_string(slot) + " already holds " + slots_[slot].device->name());
    slots_[slot] = Slot{};
    slots_[slot].device = device;
    try {
        place_bars(slot);
        if (const unsigned pin = device->interrupt_pin(); pin >= 1 && pin <= 4) {
            device->attach_intx(intx_.line(slot, pin));
            const std::uint8_t line = std::uint8_t(x86::pci_intx_gsi(slot, pin - 1));
            device->config_write(PCI_INTERRUPT_LINE, std::span<const std::uint8_t>(&line, 1));
        }
    } catch (...) {
        slots_[slot] = Slot{};
        throw;
    }
    log_->debug("{} at 00:{:02x}.0", device->name(), slot);
    reconcile_locked();  // a device that comes with decoding on is mapped now
}

void PciRootBus::place_bars(unsigned slot) {
    PciDevice& dev = *slots_[slot].device;
    for (unsigned i = 0; i < kNumBars; ++i) {
        const auto bar = dev.bar(i);
        if (!bar) continue;
        if (bar->kind == PciBarKind::Mem64 && i + 1 >= kNumBars) throw Error("PCI: " + dev.name() + " 64-bit BAR5");
        std::uint64_t* next = &next_mmio32_;
        std::uint64_t end = windows_.mmio32_end;
        if (bar->kind == PciBarKind::Io) {
            next = &next_io_;
            end = windows_.io_end;
        } else if (bar->kind == PciBarKind::Mem64) {
            next = &next_mmio64_;
            end = windows_.mmio64_end;
        }
        // Natural alignment: a BAR's low bits below its size are hard-wired to 0.
        const std::uint64_t base = (*next + bar->size - 1) & ~(bar->size - 1);
        if (base < *next || base + bar->size < base || base + bar->size > end)
            throw Error("PCI: no room for " + dev.name() + " BAR" + std::to_string(i) + " (" + hex(bar->size) + " bytes)");
        *next = base + bar->size;
        const std::uint32_t reg = PCI_BASE_ADDRESS_0 + 4 * i;
        write32(dev, reg, std::uint32_t(base));
        if (bar->kind == PciBarKind::Mem64) write32(dev, reg + 4, std::uint32_t(base >> 32));
    }
}

bool PciRootBus::overlaps_reserved(std::uint64_t base, std::uint64_t size) const {
    for (auto [start, end] : windows_.reserved)
        if (base < end && start < base + size) return true;
    return false;
}

std::optional<std::uint64_t> PciRootBus::wanted_locked(Slot& s, unsigned index, const PciBar& bar) {
    PciDevice& dev = *s.device;
    const std::uint16_t command = std::uint16_t(read32(dev, PCI_COMMAND));
    const std::uint32_t reg = PCI_BASE_ADDRESS_0 + 4 * index;
    const std::uint32_t lo = read32(dev, reg);
    if (bar.kind == PciBarKind::Io) {
        if (!(command & PCI_COMMAND_IO)) return std::nullopt;
        const std::uint64_t base = lo & PCI_BASE_ADDRESS_IO_MASK;
        if (base == 0 || base + bar.size > 0x10000) return std::nullopt;
        return base;
    }
    if (!(command & PCI_COMMAND_MEMORY)) return std::nullopt;
    std::uint64_t base = lo & PCI_BASE_ADDRESS_MEM_MASK;
    if (bar.kind == PciBarKind::Mem64) base |= std::uint64_t(read32(dev, reg + 4)) << 32;
    if (base == 0 || base + bar.size < base) return std::nullopt;
    if (overlaps_reserved(base, bar.size)) {
        if (s.refused[index] != base)
            log_->warn("{}: BAR{} at {} overlaps RAM or a reserved range: not mapped", dev.name(), index, hex(base));
        s.refused[index] = base;
        return std::nullopt;
    }
    return base;
}

void PciRootBus::reconcile_locked() {
    struct Want {
        unsigned slot, index;
        PciBar bar;
        std::uint64_t base;
    };
    std::vector<Want> to_map;
    // Unmap everything that moved or stopped decoding first, so that a BAR moving into the
    // space another one just left finds it free.
    for (unsigned slot = 0; slot < slots_.size(); ++slot) {
        Slot& s = slots_[slot];
        if (!s.device) continue;
        for (unsigned i = 0; i < kNumBars; ++i) {
            const auto bar = s.device->bar(i);
            if (!bar) continue;
            const auto want = wanted_locked(s, i, *bar);
            if (s.mapped[i] == want) continue;
            if (s.mapped[i]) {
                (bar->kind == PciBarKind::Io ? pio_ : mmio_).remove(*s.mapped[i]);
                s.mapped[i].reset();
                s.device->bar_mapped(i, std::nullopt);
            }
            if (want) to_map.push_back({slot, i, *bar, *want});
        }
    }
    for (const Want& w : to_map) {
        Slot& s = slots_[w.slot];
        IoBus& bus = w.bar.kind == PciBarKind::Io ? pio_ : mmio_;
        try {
            bus.insert(w.base, w.bar.size, s.device->bar_device(w.index));
        } catch (const Error& e) {
            if (s.refused[w.index] != w.base)
                log_->warn("{}: BAR{} at {} not mapped: {}", s.device->name(), w.index, hex(w.base), e.what());
            s.refused[w.index] = w.base;
            continue;
        }
        s.mapped[w.index] = w.base;
        s.refused[w.index].reset();
        s.device->bar_mapped(w.index, w.base);
    }
}

void PciRootBus::config_read(Address where, std::uint32_t offset, std::span<std::uint8_t> data) {
    if (!valid_width(offset, data.size()) || where.bus != 0 || where.slot >= slots_.size() || where.function != 0) {
        for (auto& b : data) b = 0xff;
        return;
    }
    std::lock_guard lock(mutex_);
    auto& dev = slots_[where.slot].device;
    if (!dev) {
        for (auto& b : data) b = 0xff;
        return;
    }
    dev->config_read(offset, data);
}

void PciRootBus::config_write(Address where, std::uint32_t offset, std::span<const std::uint8_t> data) {
    if (!valid_width(offset, data.size()) || where.bus != 0 || where.slot >= slots_.size() || where.function != 0)
        return;
    std::lock_guard lock(mutex_);
    auto& dev = slots_[where.slot].device;
    if (!dev) return;
    dev->config_write(offset, data);
    if (touches_decoding(offset, data.size())) reconcile_locked();
}

std::optional<std::uint64_t> PciRootBus::bar_mapping(unsigned slot, unsigned index) const {
    std::lock_guard lock(mutex_);
    if (slot >= slots_.size() || index >= kNumBars) return std::nullopt;
    return slots_[slot].mapped[index];
}

std::shared_ptr<PciDevice> PciRootBus::device(unsigned slot) const {
    std::lock_guard lock(mutex_);
    return slot < slots_.size() ? slots_[slot].device : nullptr;
}

}  // namespace vmm::pci
