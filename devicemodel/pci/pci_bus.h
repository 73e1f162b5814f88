// PciRootBus: PCI segment 0, bus 0, as the anchor wires it (kvmtool's pci.c, Firecracker's
// PciRoot, in one class):
//   - slot 0 holds the host bridge (pci_host_bridge.h); devices go in slots 1..31, function 0;
//   - configuration space through mechanism #1 (ports 0xcf8..0xcff: config_port_device()) and
//     through ECAM/MMCONFIG (kPciEcamBase, 1 MiB per bus: ecam_device()); absent devices,
//     functions and buses read all-ones and ignore writes;
//   - BAR placement at add time, naturally aligned, from the windows (I/O BARs in the I/O
//     window, 32-bit BARs in the 32-bit window, 64-bit BARs in the 64-bit window above RAM);
//   - BAR mapping: a BAR is on the port or MMIO IoBus while its decode bit (command IO / MEM) is
//     set and its address is sane; when the guest reprograms a BAR or flips the command bits
//     the bus removes/inserts the BAR's BusDevice and tells the device (bar_mapped). A BAR the
//     guest puts over RAM, over a reserved range or over another device stays unmapped (logged)
//     until it is moved somewhere free;
//   - INTx: each device with an interrupt pin gets a line for x86::pci_intx_gsi(slot, pin)
//     through PciIntxRouter (shared GSIs OR their levels); the interrupt line register is
//     initialized to that GSI, as firmware would.
//
// Anchor wiring (replaces legacy::PciConfigAbsent):
//     pci::PciRootBus pci(pio_bus, mmio_bus, pci::pc_pci_windows(ram), [&](uint32_t gsi) {
//         return std::make_shared<KvmIrqLine>(vm, gsi); });
//     pci.install_config_access();              // 0xcf8 (8 ports) + ECAM on the MMIO bus
//     pci.add_device(std::move(transport));     // next free slot; or add_device(slot, dev)
// The PciRootBus must outlive the vCPUs (the IoBuses hold BusDevices that point back to it).
//
// Threads: config accesses come from vCPU threads and are serialized by one mutex; BAR
// (un)mapping and bar_mapped() notifications run under it. add_device runs at setup.
#pragma once

#include "common/log.h"
#include "devicemodel/bus/io_bus.h"
#include "devicemodel/pci/pci_device.h"
#include "devicemodel/pci/pci_intx_router.h"
#include "x86/memory_layout.h"


#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <utility>
#include <vector>

namespace vmm::pci {

// Where BARs go, [start, end) each. `reserved` are guest-physical ranges a memory BAR may
// never cover (RAM; in-kernel devices such as the LAPIC and IOAPIC that are not on the IoBus).
struct PciWindows {
    std::uint64_t mmio32_start = 0, mmio32_end = 0;
    std::uint64_t mmio64_start = 0, mmio64_end = 0;
    std::uint64_t io_start = 0, io_end = 0;
    std::vector<std::pair<std::uint64_t, std::uint64_t>> reserved;
};

// The PC layout of x86/memory_layout.h for a domain with RAM `ram`.
PciWindows pc_pci_windows(const x86::RamLayout& ram);

class PciRootBus {
public:
    // Config address as (bus, device, function); only bus 0 function 0 has devices.
    struct Address {
        unsigned bus = 0, slot = 0, function = 0;
    };

    PciRootBus(IoBus& pio, IoBus& mmio, PciWindows windows, PciIntxRouter::LineFactory intx);
    ~PciRootBus();
    PciRootBus(const PciRootBus&) = delete;
    PciRootBus& operator=(const PciRootBus&) = delete;

    // Adds `device` at `slot` (1..31), places its BARs and wires its INTx pin. Throws
    // vmm::Error if the slot is taken or a window is exhausted.
    void add_device(unsigned slot, std::shared_ptr<PciDevice> device);
    // Same, in the lowest free slot; returns it.
    unsigned add_device(std::shared_ptr<PciDevice> device);

    // Registers config_port_device() at port 0xcf8 (8 ports) and ecam_device() at
    // x86::kPciEcamBase (x86::kPciEcamSize) on the buses given to the constructor.
    void install_config_access();
    std::shared_ptr<BusDevice> config_port_device() const { return config_port_; }
    std::shared_ptr<BusDevice> ecam_device() const { return ecam_; }

    // One config access (1, 2 or 4 bytes, not crossing a dword; anything else reads all-ones).
    void config_read(Address where, std::uint32_t offset, std::span<std::uint8_t> data);
    void config_write(Address where, std::uint32_t offset, std::span<const std::uint8_t> data);

    // Where BAR `index` of the device in `slot` is mapped now (nullopt: not decoding).
    std::optional<std::uint64_t> bar_mapping(unsigned slot, unsigned index) const;
    std::shared_ptr<PciDevice> device(unsigned slot) const;

private:
    struct Slot {
        std::shared_ptr<PciDevice> device;
        std::array<std::optional<std::uint64_t>, kNumBars> mapped{};
        std::array<std::optional<std::uint64_t>, kNumBars> refused{};  // last refused address (log once)
    };

    void place_bars(unsigned slot);
    std::optional<std::uint64_t> wanted_locked(Slot& s, unsigned index, const PciBar& bar);
    void reconcile_locked();
    bool overlaps_reserved(std::uint64_t base, std::uint64_t size) const;

    IoBus& pio_;
    IoBus& mmio_;
    PciWindows windows_;
    PciIntxRouter intx_;
    std::shared_ptr<spdlog::logger> log_;
    std::shared_ptr<BusDevice> config_port_;
    std::shared_ptr<BusDevice> ecam_;
    bool installed_ = false;

    mutable std::mutex mutex_;
    std::array<Slot, 32> slots_{};
    std::uint64_t next_io_ = 0, next_mmio32_ = 0, next_mmio64_ = 0;
};

}  // namespace vmm::pci
