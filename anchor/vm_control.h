// VmControl: the domain's run state shared by the vCPU threads and the main thread.
// request_stop() may be called from any thread; the first reason wins. The stop hook (set by
// the wiring before threads start) kicks every vCPU and wakes the main loop.
#pragma once

#include "anchor/stop_reason.h"

#include <atomic>
#include <functional>
#include <mutex>
#include <optional>

namespace vmm::anchor {

class VmControl {
public:
    void set_stop_hook(std::function<void()> hook) { stop_hook_ = std::move(hook); }
    // Returns true if this call set the reason (false if the domain was already stopping).
    bool request_stop(StopReason reason);
    bool stopping() const noexcept { return stopping_.load(std::memory_order_acquire); }
    std::optional<StopReason> reason() const;

private:
    mutable std::mutex mutex_;
    std::optional<StopReason> reason_;
    std::atomic<bool> stopping_{false};
    std::function<void()> stop_hook_;
};

}  // namespace vmm::anchor
