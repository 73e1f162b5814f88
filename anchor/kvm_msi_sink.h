// KvmMsiSink: a device's MSI/MSI-X vectors delivered by KVM without a userspace injection on
// the hot path: each vector gets an eventfd bound (KVM_IRQFD) to its own MSI GSI route; the
// route's address/data follow the guest's MSI-X table (configure), and trigger() is one
// eventfd write, from whichever thread completes the request.
//
// Two modes:
//   Emulated (virtio): the device model never triggers a masked vector (it keeps the pending
//     bit), so a masked vector simply keeps its route and irqfd.
//   Passthrough (VFIO, hold_masked): the host function signals the eventfds itself, masked or
//     not. A masked vector's irqfd is detached, so signals accumulate in the eventfd counter;
//     unmasking re-attaches it and KVM delivers what is pending (KVM_IRQFD checks the eventfd
//     on assignment).
// Threads: configure() on vCPU threads, trigger() on any; the device model serialises calls
// per device (devicemodel/pci/msi.h), routes are serialised inside KvmVm.
#pragma once

#include "common/fd.h"
#include "devicemodel/pci/msi.h"
#include "kvm/kvm_vm.h"

#include <cstdint>
#include <mutex>
#include <vector>

namespace vmm::anchor {

class KvmMsiSink : public pci::MsiEventfdSink {
public:
    KvmMsiSink(KvmVm& vm, unsigned vectors, bool hold_masked = false);
    ~KvmMsiSink() override;

    void configure(unsigned vector, std::uint64_t address, std::uint32_t data, bool masked) override;
    void trigger(unsigned vector) override;
    unsigned vector_count() const override { return unsigned(vectors_.size()); }
    int vector_eventfd(unsigned vector) const override;

private:
    struct Vector {
        Fd eventfd;
        std::uint32_t gsi = 0;
        bool routed = false;    // a GSI route exists
        bool attached = false;  // the irqfd is bound to it
        std::uint64_t address = 0;
        std::uint32_t data = 0;
    };
    void detach_locked(Vector& v);

    KvmVm& vm_;
    const bool hold_masked_;
    mutable std::mutex mutex_;
    std::vector<Vector> vectors_;
};

}  // namespace vmm::anchor
