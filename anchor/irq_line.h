// KvmIrqLine: an InterruptLine on an in-kernel irqchip GSI (ISA devices: the 16550 on IRQ 4).
// Thread-safe: KVM_IRQ_LINE is serialised by the kernel; the level is tracked to skip
// redundant ioctls.
#pragma once

#include "devicemodel/bus/interrupt_line.h"
#include "kvm/kvm_vm.h"

#include <mutex>

namespace vmm::anchor {

class KvmIrqLine : public InterruptLine {
public:
    KvmIrqLine(KvmVm& vm, std::uint32_t gsi) : vm_(vm), gsi_(gsi) {}
    void trigger() override {
        std::lock_guard lock(mutex_);
        vm_.set_irq_line(gsi_, true);
        vm_.set_irq_line(gsi_, false);
        level_ = false;
    }
    void set_level(bool asserted) override {
        std::lock_guard lock(mutex_);
        if (asserted == level_) return;
        vm_.set_irq_line(gsi_, asserted);
        level_ = asserted;
    }

private:
    KvmVm& vm_;
    std::uint32_t gsi_;
    std::mutex mutex_;
    bool level_ = false;
};

}  // namespace vmm::anchor
