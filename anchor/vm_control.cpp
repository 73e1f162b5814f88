#include "anchor/vm_control.h"

namespace vmm::anchor {

void VmControl::set_vcpu_count(unsigned n) {
    std::lock_guard lock(mutex_);
    vcpus_ = n;
}

void VmControl::start_paused() {
    std::lock_guard lock(mutex_);
    paused_ = true;
}

bool VmControl::request_stop(StopReason reason) {
    {
        std::lock_guard lock(mutex_);
        if (reason_) return false;
        reason_ = std::move(reason);
        stopping_.store(true, std::memory_order_release);
    }
    cv_.notify_all();
    if (kicker_) kicker_();
    if (stop_hook_) stop_hook_();
    return true;
}

std::optional<StopReason> VmControl::reason() const {
    std::lock_guard lock(mutex_);
    return reason_;
}

void VmControl::pause() {
    bool was_paused;
    {
        std::lock_guard lock(mutex_);
        if (stopping()) return;
        was_paused = paused_;
        paused_ = true;
    }
    if (!was_paused && kicker_) kicker_();
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [this] { return parked_ >= vcpus_ || stopping(); });
}

void VmControl::resume() {
    {
        std::lock_guard lock(mutex_);
        paused_ = false;
    }
    cv_.notify_all();
}

bool VmControl::paused() const {
    std::lock_guard lock(mutex_);
    return paused_;
}

void VmControl::park_if_paused() {
    std::unique_lock lock(mutex_);
    if (!paused_ || stopping()) return;
    ++parked_;
    cv_.notify_all();
    cv_.wait(lock, [this] { return !paused_ || stopping(); });
    --parked_;
}

}  // namespace vmm::anchor
