#include "anchor/kvm_msi_sink.h"

#include "common/log.h"

#include <unistd.h>

namespace vmm::anchor {

KvmMsiSink::KvmMsiSink(KvmVm& vm, unsigned vectors, bool hold_masked)
    : vm_(vm), hold_masked_(hold_masked), vectors_(vectors) {
    for (auto& v : vectors_) v.eventfd = make_eventfd();
}

KvmMsiSink::~KvmMsiSink() {
    for (auto& v : vectors_) detach_locked(v);
}

void KvmMsiSink::detach_locked(Vector& v) {
    if (!v.attached) return;
    v.attached = false;
    try {
        vm_.remove_irqfd(v.eventfd.get(), v.gsi);
    } catch (const std::exception& e) {
        logger("anchor")->debug("removing MSI irqfd: {}", e.what());
    }
}

void KvmMsiSink::configure(unsigned vector, std::uint64_t address, std::uint32_t data, bool masked) {
    std::lock_guard lock(mutex_);
    if (vector >= vectors_.size()) return;
    Vector& v = vectors_[vector];
    if (masked) {
        // Emulated: a masked vector keeps its route (the model never triggers it while masked,
        // and keeping the GSI avoids re-routing on every mask/unmask around table updates).
        // Passthrough: the function fires anyway; hold its signals in the eventfd.
        if (hold_masked_) detach_locked(v);
        return;
    }
    try {
        if (!v.routed) {
            v.gsi = vm_.add_msi_route(address, data);
            v.routed = true;
        } else if (v.address != address || v.data != data) {
            vm_.update_msi_route(v.gsi, address, data);
        }
        v.address = address;
        v.data = data;
        if (!v.attached) {
            vm_.add_irqfd(v.eventfd.get(), v.gsi);
            v.attached = true;
        }
    } catch (const std::exception& e) {
        // A host failure here loses interrupts for this vector; it must not kill the vCPU.
        logger("anchor")->error("MSI vector {}: cannot route {:#x}/{:#x}: {}", vector, address, data, e.what());
    }
}

void KvmMsiSink::trigger(unsigned vector) {
    int fd = -1;
    {
        std::lock_guard lock(mutex_);
        if (vector >= vectors_.size()) return;
        // Emulated devices only trigger routed vectors; an unrouted one has nowhere to go.
        if (!hold_masked_ && !vectors_[vector].attached) return;
        fd = vectors_[vector].eventfd.get();
    }
    signal_eventfd(fd);
}

int KvmMsiSink::vector_eventfd(unsigned vector) const {
    std::lock_guard lock(mutex_);
    return vector < vectors_.size() ? vectors_[vector].eventfd.get() : -1;
}

}  // namespace vmm::anchor
