// MsiVectorSink: where a device's MSI-X messages go. The device model (msix.h) owns the
// table, the masks and the pending bits; the sink only delivers.
//
// The anchor implements it with KVM: configure() installs/updates an MSI GSI route (from GSI
// 24 up, one per vector) with the message address/data, trigger() writes the vector's irqfd.
// Tests implement it with a recorder.
//
// Threads: configure() comes from a vCPU thread (the guest writing the MSI-X table or the
// capability's control word); trigger() from whichever thread completes a request (an I/O
// thread, a vCPU thread). MsixTable serializes both under its own lock: a sink never sees two
// calls for the same device at once, and sees configure() before the trigger() it governs.
#pragma once

#include <cstdint>

namespace vmm::pci {

class MsiVectorSink {
public:
    virtual ~MsiVectorSink() = default;
    // Vector `vector`'s message changed. masked = the vector must not fire (vector masked,
    // function masked or MSI-X disabled); the model never calls trigger() for it while masked
    // (it records a pending bit instead), so a sink may ignore `masked` or use it to drop the
    // route. Calls are deduplicated (only changes arrive); until its first configure() a
    // vector counts as masked with address and data 0.
    virtual void configure(unsigned vector, std::uint64_t address, std::uint32_t data, bool masked) = 0;
    // Send vector `vector`'s message once (edge).
    virtual void trigger(unsigned vector) = 0;
};

// A sink whose vectors are eventfds that something else signals directly: a passed-through
// function (VFIO writes them from the host's interrupt handler, the VMM never sees the
// interrupt). Since the function fires whether or not the guest masked the vector, such a sink
// must hold a masked vector's signals and deliver them when it is unmasked (the pending bit).
// trigger() signals the eventfd like the function would.
class MsiEventfdSink : public MsiVectorSink {
public:
    virtual unsigned vector_count() const = 0;
    virtual int vector_eventfd(unsigned vector) const = 0;
};

}  // namespace vmm::pci
