#include "vmmd/domain_state.h"

namespace vmm::vmmd {

std::string to_string(DomainState s) {
    switch (s) {
    case DomainState::Created: return "created";
    case DomainState::Starting: return "starting";
    case DomainState::Running: return "running";
    case DomainState::Paused: return "paused";
    case DomainState::Stopping: return "stopping";
    case DomainState::Stopped: return "stopped";
    case DomainState::Crashed: return "crashed";
    }
    return "?";
}

bool can_transition(DomainState from, DomainState to) {
    using S = DomainState;
    switch (from) {
    case S::Created: return to == S::Starting;
    case S::Starting: return to == S::Running || to == S::Paused || to == S::Stopping || to == S::Stopped || to == S::Crashed;
    case S::Running: return to == S::Paused || to == S::Stopping || to == S::Stopped || to == S::Crashed;
    case S::Paused: return to == S::Running || to == S::Stopping || to == S::Stopped || to == S::Crashed;
    case S::Stopping: return to == S::Stopped || to == S::Crashed;
    case S::Stopped:
    case S::Crashed: return to == S::Starting;
    }
    return false;
}

bool is_active(DomainState s) {
    return s == DomainState::Starting || s == DomainState::Running || s == DomainState::Paused || s == DomainState::Stopping;
}

std::string to_string(RestartPolicy p) {
    switch (p) {
    case RestartPolicy::Never: return "never";
    case RestartPolicy::OnCrash: return "on-crash";
    case RestartPolicy::Always: return "always";
    }
    return "?";
}

std::optional<RestartPolicy> parse_restart_policy(const std::string& text) {
    if (text == "never") return RestartPolicy::Never;
    if (text == "on-crash") return RestartPolicy::OnCrash;
    if (text == "always") return RestartPolicy::Always;
    return std::nullopt;
}

std::chrono::milliseconds restart_backoff(unsigned attempt, std::chrono::milliseconds initial,
                                          std::chrono::milliseconds max) {
    if (attempt == 0) attempt = 1;
    auto d = initial;
    for (unsigned i = 1; i < attempt && d < max; ++i) d *= 2;
    return d < max ? d : max;
}

}  // namespace vmm::vmmd
