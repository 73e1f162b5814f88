#include "anchor/vm_control.h"

#include "common/log.h"

namespace vmm::anchor {

const char* qmp_name(RunState state) {
    switch (state) {
    case RunState::Prelaunch: return "prelaunch";
    case RunState::Running: return "running";
    case RunState::Paused: return "paused";
    case RunState::Shutdown: return "shutdown";
    case RunState::InternalError: return "internal-error";
    case RunState::GuestPanicked: return "guest-panicked";
    }
    return "running";
}

void VmControl::set_vcpu_count(unsigned n) {
    std::lock_guard lock(mutex_);
    vcpus_ = n;
}

void VmControl::start_paused() {
    std::lock_guard lock(mutex_);
    paused_ = true;
    state_ = RunState::Prelaunch;
}

void VmControl::emit(const std::string& event, const nlohmann::json& data) const {
    if (sink_) sink_(event, data);
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

void VmControl::guest_stop(StopReason reason) {
    std::optional<RunState> stay;
    nlohmann::json event_data;
    std::string event;
    switch (reason.kind) {
    case StopKind::PowerOff:
    case StopKind::Reset:
        if (reason.kind == StopKind::Reset && policy_.restart_on_reboot) {
            emit("RESET", {{"guest", true}, {"reason", "guest-reset"}});
            break;  // the anchor restarts the domain once it has stopped (anchor/main.cpp)
        }
        if (policy_.stay_on_poweroff) {
            stay = RunState::Shutdown;
            event = "SHUTDOWN";
            event_data = {{"guest", true}, {"reason", reason.kind == StopKind::PowerOff ? "guest-shutdown" : "guest-reset"}};
        }
        break;
    case StopKind::TripleFault:
    case StopKind::InternalError:
        if (policy_.stay_on_crash) stay = RunState::InternalError;
        break;
    case StopKind::GuestPanicked:
        if (policy_.stay_on_crash) {
            stay = RunState::GuestPanicked;
            event = "GUEST_PANICKED";
            event_data = {{"action", "pause"}};
        }
        break;
    case StopKind::GuestExitPort:
    case StopKind::HostRequest:
    case StopKind::HostError: break;
    }
    if (!stay) {
        // QEMU without -no-shutdown: SHUTDOWN, then the process exits.
        if ((reason.kind == StopKind::PowerOff || (reason.kind == StopKind::Reset && !policy_.restart_on_reboot)) &&
            !stopping())
            emit("SHUTDOWN", {{"guest", true}, {"reason", reason.kind == StopKind::PowerOff ? "guest-shutdown" : "guest-reset"}});
        request_stop(std::move(reason));
        return;
    }
    {
        std::lock_guard lock(mutex_);
        if (stopping() || state_ == *stay) return;
        state_ = *stay;
        paused_ = true;
    }
    logger("anchor")->warn("{}; domain stays in run-state {} until quit", describe(reason), qmp_name(*stay));
    if (kicker_) kicker_();
    if (!event.empty()) emit(event, event_data);
    emit("STOP", nullptr);
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
        if (state_ == RunState::Running) state_ = RunState::Paused;
    }
    if (!was_paused && kicker_) kicker_();
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [this] { return parked_ >= vcpus_ || stopping(); });
}

bool VmControl::resume() {
    {
        std::lock_guard lock(mutex_);
        if (state_ == RunState::Shutdown || state_ == RunState::InternalError || state_ == RunState::GuestPanicked)
            return false;
        paused_ = false;
        state_ = RunState::Running;
    }
    cv_.notify_all();
    return true;
}

bool VmControl::paused() const {
    std::lock_guard lock(mutex_);
    return paused_;
}

RunState VmControl::run_state() const {
    std::lock_guard lock(mutex_);
    return state_;
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
