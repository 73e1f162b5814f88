// PciDevice: one PCI function as the root bus (devicemodel/pci/pci_bus.h) sees it: a 4 KiB
// configuration space, up to six BARs, each answered by a BusDevice, and an optional INTx pin.
//
// Devices implement config_read/config_write themselves, usually on top of PciConfigSpace
// (pci_config_space.h), which gives the standard type-0 header semantics (BAR sizing, the
// capability list, read-only/writable masks).
//
// Threads: config_read/config_write/bar_mapped/attach_intx are called by PciRootBus under its
// config lock (one at a time, from a vCPU thread or, at setup, from the anchor's main thread).
// The BusDevices returned by bar_device() are called from vCPU threads concurrently with
// everything else: devices guard their own state.
#pragma once

#include "devicemodel/bus/bus_device.h"
#include "devicemodel/bus/interrupt_line.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

namespace vmm::pci {

inline constexpr unsigned kNumBars = 6;
inline constexpr std::uint32_t kConfigSpaceSize = 4096;  // PCIe extended configuration space

enum class PciBarKind { Io, Mem32, Mem64 };

// What a BAR decodes. A Mem64 BAR at index i also uses register i+1 (its upper half), which
// then has no description of its own. size is a power of two (>= 16 for memory, >= 4 for I/O).
struct PciBar {
    PciBarKind kind = PciBarKind::Mem32;
    std::uint64_t size = 0;
    bool prefetchable = false;
};

class PciDevice {
public:
    virtual ~PciDevice() = default;

    // For logs ("virtio-blk0", "host-bridge").
    virtual std::string name() const = 0;

    // Configuration space access at `offset` (< kConfigSpaceSize) of 1, 2 or 4 bytes that do
    // not cross a dword boundary (the bus guarantees it; other accesses never reach a device).
    virtual void config_read(std::uint32_t offset, std::span<std::uint8_t> data) = 0;
    virtual void config_write(std::uint32_t offset, std::span<const std::uint8_t> data) = 0;

    // The BAR at `index` (0..5), or nullopt if unused / the upper half of a Mem64 BAR.
    virtual std::optional<PciBar> bar(unsigned index) const = 0;
    // Answers accesses inside BAR `index` (offset relative to the BAR's base). Stable for the
    // device's life.
    virtual std::shared_ptr<BusDevice> bar_device(unsigned index) = 0;
    // The bus mapped BAR `index` at `gpa` (a guest-physical address or an I/O port), or unmapped
    // it (nullopt): decoding was switched on/off in the command register or the BAR moved.
    virtual void bar_mapped(unsigned /*index*/, std::optional<std::uint64_t> /*gpa*/) {}

    // Interrupt pin the device uses: 0 = none, 1 = INTA# .. 4 = INTD# (config offset 0x3d).
    virtual std::uint8_t interrupt_pin() const { return 0; }
    // The bus hands the device its INTx line (level: set_level) once, when it is added.
    virtual void attach_intx(std::shared_ptr<InterruptLine> /*line*/) {}
};

}  // namespace vmm::pci
