// KvmMsiSink: a device's MSI-X vectors delivered by KVM without a userspace injection on the
// hot path: each vector gets an eventfd bound (KVM_IRQFD) to its own MSI GSI route; the
// route's address/data follow the guest's MSI-X table (configure), and trigger() is one
// eventfd write, from whichever thread completes the request.
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

class KvmMsiSink : public pci::MsiVectorSink {
public:
    KvmMsiSink(KvmVm& vm, unsigned vectors);
    ~KvmMsiSink() override;

    void configure(unsigned vector, std::uint64_t address, std::uint32_t data, bool masked) override;
    void trigger(unsigned vector) override;

private:
    struct Vector {
        Fd eventfd;
        std::uint32_t gsi = 0;
        bool routed = false;  // a GSI route + irqfd exist
        std::uint64_t address = 0;
        std::uint32_t data = 0;
    };
    KvmVm& vm_;
    std::mutex mutex_;
    std::vector<Vector> vectors_;
};

}  // namespace vmm::anchor
