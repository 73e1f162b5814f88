#include "anchor/vm_control.h"

namespace vmm::anchor {

bool VmControl::request_stop(StopReason reason) {
    {
        std::lock_guard lock(mutex_);
        if (reason_) return false;
        reason_ = std::move(reason);
        stopping_.store(true, std::memory_order_release);
    }
    if (stop_hook_) stop_hook_();
    return true;
}

std::optional<StopReason> VmControl::reason() const {
    std::lock_guard lock(mutex_);
    return reason_;
}

}  // namespace vmm::anchor
