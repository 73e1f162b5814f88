// The state machine of a domain as vmmd reports it, and the restart policy. Pure, thread-safe.
//
//   created ──start──► starting ──up──► running ◄──resume/pause──► paused
//                         │               │  └──stop──► stopping ──exit──► stopped
//                         └── exit ───────┴── unexpected exit ──► crashed / stopped
//   stopped, crashed ──start (again, or by the restart policy)──► starting
#pragma once

#include <chrono>
#include <optional>
#include <string>

namespace vmm::vmmd {

enum class DomainState { Created, Starting, Running, Paused, Stopping, Stopped, Crashed };

std::string to_string(DomainState state);
bool can_transition(DomainState from, DomainState to);
// starting, running, paused, stopping: the domain has (or is about to have) a process.
bool is_active(DomainState state);

enum class RestartPolicy { Never, OnCrash, Always };
std::string to_string(RestartPolicy policy);
// "never" | "on-crash" | "always"; nothing for anything else.
std::optional<RestartPolicy> parse_restart_policy(const std::string& text);

// Exponential backoff: initial * 2^(attempt-1), capped at `max`; attempt counts from 1.
std::chrono::milliseconds restart_backoff(unsigned attempt, std::chrono::milliseconds initial,
                                          std::chrono::milliseconds max);

}  // namespace vmm::vmmd
