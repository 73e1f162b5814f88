// VfioDevice: one passed-through PCI function, through its VFIO device fd: region info (with
// sparse-mmap capabilities), config-space and region access, mmap of the mappable parts of
// BARs, interrupt wiring (INTx with an unmask/resample eventfd, MSI, MSI-X) and reset.
//
// The PCI passthrough device model (config virtualisation, BAR trapping) sits on top of this.
// Created on the anchor's main thread at start-up; region reads/writes and unmask_intx() may
// then come from vCPU threads (pread/pwrite/ioctl on one fd are thread-safe); set_irqs and
// reset from one thread at a time.
//
// The parsing of kernel-returned buffers is split into pure functions (parse_region_caps,
// build_irq_set) that are bounds-checked and unit-tested without a device.
#pragma once

#include "common/fd.h"
#include "common/mapping.h"
#include "vfio/vfio_device_io.h"
#include "vfio/vfio_region.h"

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace vmm::vfio {

// Walks the capability chain of a VFIO_DEVICE_GET_REGION_INFO answer (`info` is the whole
// buffer, argsz bytes, starting with struct vfio_region_info) and returns the sparse-mmap
// areas. Offsets outside the buffer, overlapping or looping chains end the walk; areas with
// an end past `region_size` are dropped.
std::vector<VfioSparseArea> parse_region_caps(std::span<const std::uint8_t> info, std::uint64_t region_size,
                                              bool* found_sparse = nullptr);

// A struct vfio_irq_set with `fds` as eventfd data (-1 de-assigns a vector), or no data when
// `fds` is empty and flags says VFIO_IRQ_SET_DATA_NONE.
std::vector<std::uint8_t> build_irq_set(std::uint32_t index, std::uint32_t flags, std::uint32_t start,
                                        std::uint32_t count, std::span<const std::int32_t> fds);

class VfioDevice : public VfioDeviceIo {
public:
    // Takes the fd from VFIO_GROUP_GET_DEVICE_FD; reads the device, region and irq info.
    VfioDevice(Fd fd, std::string name);

    const std::string& name() const override { return name_; }
    int fd() const { return fd_.get(); }
    std::uint32_t flags() const { return flags_; }
    bool is_pci() const;
    bool can_reset() const override;
    const std::vector<VfioRegionInfo>& regions() const override { return regions_; }
    const VfioRegionInfo& region(std::uint32_t index) const;
    VfioIrqInfo irq_info(std::uint32_t index) const override;

    // pread/pwrite within a region; throws std::system_error (with region and offset) on an
    // I/O error and vmm::Error when the access leaves the region.
    void read_region(std::uint32_t index, std::uint64_t offset, std::span<std::uint8_t> out) const override;
    void write_region(std::uint32_t index, std::uint64_t offset, std::span<const std::uint8_t> in) const override;
    // Config space (VFIO_PCI_CONFIG_REGION_INDEX), little-endian, 1/2/4 bytes.
    std::uint32_t read_config(std::uint32_t offset, unsigned bytes) const;
    void write_config(std::uint32_t offset, std::uint32_t value, unsigned bytes) const;

    // mmaps every mappable area of region `index` (BARs); empty if none is mappable.
    std::vector<VfioRegionMapping> map_region(std::uint32_t index) const override;

    // MSI / MSI-X: one eventfd per vector, signalled by the device (hand them to KVM as irqfds).
    void enable_msi(std::span<const std::int32_t> eventfds) override;
    void enable_msix(std::span<const std::int32_t> eventfds) override;
    // INTx: `trigger` is signalled on assertion (the line is then masked by VFIO); signalling
    // `unmask` (KVM's irqfd resample fd, on guest EOI) unmasks it.
    void enable_intx(std::int32_t trigger, std::int32_t unmask) override;
    void unmask_intx();
    // Stops delivery of interrupt `index` (VFIO_IRQ_SET_DATA_NONE | ACTION_TRIGGER, count 0).
    void disable_irq(std::uint32_t index) override;
    // VFIO_DEVICE_RESET (FLR, PM or bus reset as the kernel chooses). Throws if unsupported.
    void reset() override;

private:
    void set_irqs(std::span<const std::uint8_t> irq_set, const char* what);
    VfioRegionInfo query_region(std::uint32_t index) const;

    std::string name_;
    Fd fd_;
    std::uint32_t flags_ = 0;
    std::uint32_t num_irqs_ = 0;
    std::vector<VfioRegionInfo> regions_;
};

}  // namespace vmm::vfio
