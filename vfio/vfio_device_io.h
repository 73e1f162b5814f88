// VfioDeviceIo: what the PCI passthrough model (vfio/passthrough/) needs from a VFIO device:
// its regions (BARs, ROM, config space), region access and mmap, interrupt wiring and reset.
// VfioDevice implements it over a real VFIO device fd; tests implement it with a fake function
// (config bytes with real capability layouts, BAR memory in a memfd) so the model is tested
// without an IOMMU.
#pragma once

#include "vfio/vfio_region.h"

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace vmm::vfio {

class VfioDeviceIo {
public:
    virtual ~VfioDeviceIo() = default;

    virtual const std::string& name() const = 0;
    // Indexed by VFIO region index (VFIO_PCI_BAR0_REGION_INDEX .. VFIO_PCI_CONFIG_REGION_INDEX).
    virtual const std::vector<VfioRegionInfo>& regions() const = 0;
    virtual VfioIrqInfo irq_info(std::uint32_t index) const = 0;

    // Throw (std::system_error / vmm::Error) on a host failure or an access outside the region.
    virtual void read_region(std::uint32_t index, std::uint64_t offset, std::span<std::uint8_t> out) const = 0;
    virtual void write_region(std::uint32_t index, std::uint64_t offset, std::span<const std::uint8_t> in) const = 0;
    // mmaps every mappable, page-aligned area of region `index`; empty if none is mappable.
    virtual std::vector<VfioRegionMapping> map_region(std::uint32_t index) const = 0;

    // One eventfd per vector; the device signals them itself.
    virtual void enable_msi(std::span<const std::int32_t> eventfds) = 0;
    virtual void enable_msix(std::span<const std::int32_t> eventfds) = 0;
    // `trigger` is signalled on assertion (VFIO then masks the line); signalling `unmask`
    // unmasks it (wired to KVM's irqfd resample fd: the guest's EOI).
    virtual void enable_intx(std::int32_t trigger, std::int32_t unmask) = 0;
    virtual void disable_irq(std::uint32_t index) = 0;

    virtual bool can_reset() const = 0;
    virtual void reset() = 0;
};

}  // namespace vmm::vfio
