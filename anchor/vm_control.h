// VmControl: the domain's run state, shared by the vCPU threads, the devices and the main
// thread (QMP), with QEMU's run-state names so QMP clients see what they know.
//
//   prelaunch ──cont──► running ◄──cont── paused
//                        │  └────stop────────►┘
//                        ├─ guest power-off / reset (policy "stay") ──► shutdown
//                        ├─ KVM internal error (policy "stay")      ──► internal-error
//                        └─ pvpanic (policy "stay")                 ──► guest-panicked
//   any ── request_stop (quit, signal, or a guest stop with policy "exit") ──► the anchor exits
//
// Stop: request_stop() may be called from any thread; the first reason wins; the kicker makes
// every vCPU leave KVM_RUN and the stop hook wakes the main loop.
// Pause: pause() (main thread) returns once every vCPU is parked outside KVM_RUN, as QEMU's
// `stop` guarantees before it replies; resume() lets them run. A guest-initiated stop with the
// "stay" policy (QEMU's -no-shutdown, what EVE's pillar runs with) parks the vCPUs in a
// terminal state that only a reset or quit leaves; it is called on a vCPU thread and does not
// wait (that vCPU parks itself when its exit handler returns).
// Events (SHUTDOWN, STOP, GUEST_PANICKED, ...) go to the event sink, on the calling thread;
// the sink must be thread-safe (the QMP server posts them to its io_context).
#pragma once

#include "anchor/stop_reason.h"

#include <nlohmann/json.hpp>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>

namespace vmm::anchor {

enum class RunState { Prelaunch, Running, Paused, Shutdown, InternalError, GuestPanicked };
// QEMU's RunState enum values ("prelaunch", "running", "paused", "shutdown", ...).
const char* qmp_name(RunState state);

// What a guest-initiated stop does: exit the anchor (a standalone domain, test guests) or stay
// with the domain parked until quit (a managed domain: pillar's -no-shutdown).
struct GuestStopPolicy {
    bool stay_on_poweroff = false;  // power-off and reset (with on_reboot=exit): → shutdown
    bool stay_on_crash = false;     // internal error, triple fault, pvpanic: → internal-error / guest-panicked
    bool restart_on_reboot = false;  // reset: RESET event, then the anchor restarts the domain
};

class VmControl {
public:
    using EventSink = std::function<void(const std::string& event, const nlohmann::json& data)>;

    // Called before vCPU threads start.
    void set_vcpu_count(unsigned n);
    void set_kicker(std::function<void()> kick_all_vcpus) { kicker_ = std::move(kick_all_vcpus); }
    void set_stop_hook(std::function<void()> hook) { stop_hook_ = std::move(hook); }
    void set_event_sink(EventSink sink) { sink_ = std::move(sink); }
    void set_policy(GuestStopPolicy policy) { policy_ = policy; }
    void start_paused();

    // Returns true if this call set the reason (false if the domain was already stopping).
    bool request_stop(StopReason reason);
    bool stopping() const noexcept { return stopping_.load(std::memory_order_acquire); }
    std::optional<StopReason> reason() const;

    // A stop the guest caused (power-off, reset, crash, panic, the debug-exit port): applies
    // the policy. Any thread; never blocks on other vCPUs.
    void guest_stop(StopReason reason);

    // Main thread. pause() blocks until all vCPUs are parked (or the domain stops).
    void pause();
    // false (nothing changed) when the state needs a reset first (shutdown, internal-error,
    // guest-panicked), as QEMU's `cont` refuses.
    bool resume();
    bool paused() const;
    RunState run_state() const;

    // vCPU threads, between exits: blocks while the domain is paused.
    void park_if_paused();

private:
    void emit(const std::string& event, const nlohmann::json& data) const;

    mutable std::mutex mutex_;
    std::condition_variable cv_;
    std::optional<StopReason> reason_;
    std::atomic<bool> stopping_{false};
    bool paused_ = false;
    RunState state_ = RunState::Running;
    unsigned vcpus_ = 0;
    unsigned parked_ = 0;
    GuestStopPolicy policy_;
    std::function<void()> kicker_;
    std::function<void()> stop_hook_;
    EventSink sink_;
};

}  // namespace vmm::anchor
