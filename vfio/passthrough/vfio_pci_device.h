// VfioPciDevice: a host PCI function passed through to the guest (QEMU's vfio-pci, crosvm's
// VfioPciDevice), on top of a VfioDeviceIo.
//
// Configuration space: passed through to the function except what the VMM must own:
//   - the BARs (0x10..0x27): emulated with sizing semantics; the guest's addresses never reach
//     the function (its real BARs hold host addresses);
//   - the expansion ROM BAR (0x30): reads 0 (not exposed, like QEMU's rombar=0);
//   - interrupt line (0x3c, scratch) and pin (0x3d: the function's pin if VFIO offers INTx);
//   - the MSI capability (control, address, data, mask bits) and the MSI-X message control
//     word (enable, function mask): the guest's values drive VFIO and the VM's routes, the
//     function's own registers are programmed by the host kernel.
//   Everything else (command, status, other capabilities, extended space) goes to the function.
// BARs: each mappable, page-aligned part of a memory BAR is mapped into the guest at the BAR's
//   address (PassthroughVm::map_bar) whenever the guest enables decoding; the rest (I/O BARs,
//   small BARs, the MSI-X table and PBA pages) is trapped: bar_device() forwards accesses to the
//   function, except the MSI-X table and PBA, which are emulated (pci::MsixTable).
// Interrupts: one mode at a time, as VFIO requires: INTx (trigger + resample eventfds) while
//   neither MSI nor MSI-X is enabled, MSI (1..32 vectors) or MSI-X (the table's vectors) as
//   eventfds from PassthroughVm::msi_vectors. A host failure to switch is logged and leaves no
//   interrupt mode; it never throws into a vCPU.
// Reset: start() and the destructor reset the function (VFIO_DEVICE_RESET) when it can be.
//
// Threads: config accesses and bar_mapped() come from PciRootBus under its lock; BAR accesses
// from vCPU threads at any time (region I/O is thread-safe, the MSI-X table has its own lock).
#pragma once

#include "devicemodel/pci/msix.h"
#include "devicemodel/pci/pci_config_space.h"
#include "devicemodel/pci/pci_device.h"
#include "vfio/passthrough/passthrough_vm.h"
#include "vfio/vfio_device_io.h"

#include "common/fd.h"

#include <array>
#include <bitset>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace vmm::vfio {

enum class IrqMode { None, Intx, Msi, Msix };
const char* to_string(IrqMode mode);

class VfioPciDevice : public pci::PciDevice, public std::enable_shared_from_this<VfioPciDevice> {
public:
    // Reads the function's config space and regions and maps its BARs (host side). Throws
    // vmm::Error when the function is not usable (no config region, a BAR the model cannot
    // describe). `vm` must outlive the device.
    VfioPciDevice(std::shared_ptr<VfioDeviceIo> device, PassthroughVm& vm);
    ~VfioPciDevice() override;
    VfioPciDevice(const VfioPciDevice&) = delete;
    VfioPciDevice& operator=(const VfioPciDevice&) = delete;

    // Resets the function and arms INTx (if it has a pin); call once it is on the bus and the
    // VM can route its interrupts, before the guest runs.
    void start();

    std::string name() const override;
    void config_read(std::uint32_t offset, std::span<std::uint8_t> data) override;
    void config_write(std::uint32_t offset, std::span<const std::uint8_t> data) override;
    std::optional<pci::PciBar> bar(unsigned index) const override;
    std::shared_ptr<BusDevice> bar_device(unsigned index) override;
    void bar_mapped(unsigned index, std::optional<std::uint64_t> gpa) override;
    std::uint8_t interrupt_pin() const override { return pin_; }
    // INTx goes through PassthroughVm::connect_intx (an irqfd with resample), not a line.
    void attach_intx(std::shared_ptr<InterruptLine> /*line*/) override {}

    IrqMode irq_mode() const;
    // Where the capabilities the model owns are (0: absent).
    std::uint8_t msi_capability() const { return msi_cap_; }
    std::uint8_t msix_capability() const { return msix_cap_; }
    // How many BAR pages are mapped into the guest right now (for logs and tests).
    std::size_t mapped_bar_slots() const;

private:
    struct Bar {
        pci::PciBar desc;
        std::vector<VfioRegionMapping> mappings;                 // host mmaps of the BAR
        std::vector<std::pair<std::uint64_t, std::uint64_t>> map_areas;  // parts given to the guest
        std::vector<std::uint32_t> slots;                        // PassthroughVm handles while mapped
        std::shared_ptr<BusDevice> trap;
    };
    class BarTrap;

    void read_capabilities();
    void setup_msi_shadow();
    void setup_msix();
    void plan_bar_maps(unsigned index);
    void read_device_config(std::uint32_t offset, std::span<std::uint8_t> out) const;
    void write_device_config(std::uint32_t offset, std::span<const std::uint8_t> in);
    void after_msi_write();
    void after_msix_write();
    void set_mode_locked(IrqMode mode, unsigned msi_vectors = 0);
    void unmap_bar_locked(Bar& bar);

    std::shared_ptr<VfioDeviceIo> device_;
    PassthroughVm& vm_;
    std::string name_;
    std::uint64_t config_size_ = 0;
    std::vector<std::uint8_t> initial_config_;
    pci::PciConfigSpace shadow_;          // the bytes the model owns, with their write masks
    std::bitset<pci::kConfigSpaceSize> emulated_;
    std::array<std::optional<Bar>, pci::kNumBars> bars_{};
    std::uint8_t pin_ = 0;

    std::uint8_t msi_cap_ = 0;
    std::uint32_t msi_end_ = 0;  // past the capability's last emulated byte
    bool msi_64bit_ = false, msi_maskable_ = false;
    unsigned msi_max_vectors_ = 0;
    std::shared_ptr<pci::MsiEventfdSink> msi_sink_;
    unsigned msi_enabled_vectors_ = 0;

    std::uint8_t msix_cap_ = 0;
    unsigned msix_table_bar_ = 0, msix_pba_bar_ = 0;
    std::uint64_t msix_table_offset_ = 0, msix_pba_offset_ = 0;
    std::shared_ptr<pci::MsiEventfdSink> msix_sink_;
    std::shared_ptr<pci::MsixTable> msix_;

    Fd intx_trigger_, intx_resample_;
    mutable std::mutex mutex_;  // irq mode and BAR slots
    IrqMode mode_ = IrqMode::None;
};

}  // namespace vmm::vfio
