// vmctl's output: the domain table of `vmctl list`, `vmctl info` lines, durations. Pure.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

namespace vmm::vmctl {

// "45s", "3m07s", "2h05m", "3d04h"; "-" for null.
std::string format_uptime(const nlohmann::json& seconds);
// "512M", "2G" (whole GiB), from MiB.
std::string format_memory_mb(std::uint64_t mb);
// Columns NAME HYPERVISOR STATE VCPUS MEMORY PID UPTIME, sized to their content; one line per
// domain of a `list` reply's "domains".
std::string format_domain_table(const nlohmann::json& domains);
// `vmctl info`: "key: value" lines for a domain document.
std::string format_domain_info(const nlohmann::json& domain);

}  // namespace vmm::vmctl
