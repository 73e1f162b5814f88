// PassthroughVm: what a passed-through PCI function needs from the VM around it, and nothing
// else. The anchor implements it with KVM (memory slots, MSI routes + irqfds, a resampling
// irqfd on the function's INTx GSI); tests implement it with recorders. The device model never
// sees KVM.
#pragma once

#include "devicemodel/pci/msi.h"

#include <cstdint>
#include <memory>

namespace vmm::vfio {

class PassthroughVm {
public:
    virtual ~PassthroughVm() = default;

    // Makes host memory [host, host + size) (an mmapped part of a BAR) appear at guest-physical
    // `gpa`, so guest accesses reach the device without a VM exit. gpa, host and size are
    // page-aligned. Returns a handle for unmap_bar(). Throws on a host failure.
    virtual std::uint32_t map_bar(std::uint64_t gpa, void* host, std::uint64_t size) = 0;
    virtual void unmap_bar(std::uint32_t handle) = 0;

    // `count` MSI or MSI-X vectors as eventfds the function signals itself; the sink routes
    // each by the message the guest programs and holds a masked vector's signals.
    virtual std::shared_ptr<pci::MsiEventfdSink> msi_vectors(unsigned count) = 0;

    // INTx: `trigger` is signalled when the function asserts its line; the VM then asserts the
    // function's INTx input (level) and signals `resample` when the guest's EOI ends it (the
    // line is re-armed through VFIO's unmask eventfd). disconnect_intx undoes it.
    virtual void connect_intx(int trigger, int resample) = 0;
    virtual void disconnect_intx(int trigger) = 0;
};

}  // namespace vmm::vfio
