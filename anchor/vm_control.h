// VmControl: the domain's run state shared by the vCPU threads and the main thread.
//
// Stop: request_stop() may be called from any thread; the first reason wins; the kicker makes
// every vCPU leave KVM_RUN and the stop hook wakes the main loop.
// Pause: pause() (main thread) returns once every vCPU is parked outside KVM_RUN, as QEMU's
// `stop` guarantees before it replies; resume() lets them run. A domain created with
// start_paused begins parked (QEMU's "prelaunch").
#pragma once

#include "anchor/stop_reason.h"

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>

namespace vmm::anchor {

class VmControl {
public:
    // Called before vCPU threads start.
    void set_vcpu_count(unsigned n);
    void set_kicker(std::function<void()> kick_all_vcpus) { kicker_ = std::move(kick_all_vcpus); }
    void set_stop_hook(std::function<void()> hook) { stop_hook_ = std::move(hook); }
    void start_paused();

    // Returns true if this call set the reason (false if the domain was already stopping).
    bool request_stop(StopReason reason);
    bool stopping() const noexcept { return stopping_.load(std::memory_order_acquire); }
    std::optional<StopReason> reason() const;

    // Main thread. pause() blocks until all vCPUs are parked (or the domain stops).
    void pause();
    void resume();
    bool paused() const;

    // vCPU threads, between exits: blocks while the domain is paused.
    void park_if_paused();

private:
    mutable std::mutex mutex_;
    std::condition_variable cv_;
    std::optional<StopReason> reason_;
    std::atomic<bool> stopping_{false};
    bool paused_ = false;
    unsigned vcpus_ = 0;
    unsigned parked_ = 0;
    std::function<void()> kicker_;
    std::function<void()> stop_hook_;
};

}  // namespace vmm::anchor
