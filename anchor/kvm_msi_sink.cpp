#include "anchor/kvm_msi_sink.h"

#include "common/log.h"

#include <unistd.h>

namespace vmm::anchor {

KvmMsiSink::KvmMsiSink(KvmVm& vm, unsigned vectors) : vm_(vm), vectors_(vectors) {
    for (auto& v : vectors_) v.eventfd = make_eventfd();
}

KvmMsiSink::~KvmMsiSink() {
    for (auto& v : vectors_) {
        if (!v.routed) continue;
        try {
            vm_.remove_irqfd(v.eventfd.get(), v.gsi);
        } catch (const std::exception& e) {
            logger("anchor")->debug("removing MSI irqfd: {}", e.what());
        }
    }
}

void KvmMsiSink::configure(unsigned vector, std::uint64_t address, std::uint32_t data, bool masked) {
    std::lock_guard lock(mutex_);
    if (vector >= vectors_.size()) return;
    Vector& v = vectors_[vector];
    // A masked vector keeps its route: the model never triggers it while masked, and keeping
    // the GSI avoids re-routing on every mask/unmask the guest does around table updates.
    if (masked && !v.routed) return;
    if (v.routed && v.address == address && v.data == data) return;
    try {
        if (!v.routed) {
            v.gsi = vm_.add_msi_route(address, data);
            vm_.add_irqfd(v.eventfd.get(), v.gsi);
            v.routed = true;
        } else {
            vm_.update_msi_route(v.gsi, address, data);
        }
        v.address = address;
        v.data = data;
    } catch (const std::exception& e) {
        // A host failure here loses interrupts for this vector; it must not kill the vCPU.
        logger("anchor")->error("MSI-X vector {}: cannot route {:#x}/{:#x}: {}", vector, address, data, e.what());
    }
}

void KvmMsiSink::trigger(unsigned vector) {
    int fd = -1;
    {
        std::lock_guard lock(mutex_);
        if (vector >= vectors_.size() || !vectors_[vector].routed) return;
        fd = vectors_[vector].eventfd.get();
    }
    const std::uint64_t one = 1;
    [[maybe_unused]] const ssize_t n = ::write(fd, &one, sizeof one);
}

}  // namespace vmm::anchor
