#include "vmctl/format.h"

#include <algorithm>
#include <cstdio>
#include <sstream>
#include <vector>

namespace vmm::vmctl {

using nlohmann::json;

std::string format_uptime(const json& seconds) {
    if (!seconds.is_number()) return "-";
    const std::int64_t s = seconds.get<std::int64_t>();
    char buf[32];
    if (s < 60) {
        std::snprintf(buf, sizeof buf, "%llds", static_cast<long long>(s));
    } else if (s < 3600) {
        std::snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
    } else if (s < 86400) {
        std::snprintf(buf, sizeof buf, "%lldh%02lldm", static_cast<long long>(s / 3600),
                      static_cast<long long>(s % 3600 / 60));
    } else {
        std::snprintf(buf, sizeof buf, "%lldd%02lldh", static_cast<long long>(s / 86400),
                      static_cast<long long>(s % 86400 / 3600));
    }
    return buf;
}

std::string format_memory_mb(std::uint64_t mb) {
    if (mb >= 1024 && mb % 1024 == 0) return std::to_string(mb / 1024) + "G";
    return std::to_string(mb) + "M";
}

namespace {

std::string text(const json& v) {
    if (v.is_null()) return "-";
    if (v.is_string()) return v.get<std::string>().empty() ? "-" : v.get<std::string>();
    return v.dump();
}

}  // namespace

std::string format_domain_table(const json& domains) {
    std::vector<std::vector<std::string>> rows = {{"NAME", "HYPERVISOR", "STATE", "VCPUS", "MEMORY", "PID", "UPTIME"}};
    for (const auto& d : domains) {
        std::string state = d.value("state", "?");
        if (d.contains("restart_pending") && d["restart_pending"].is_boolean() && d["restart_pending"].get<bool>())
            state += " (restarting)";
        rows.push_back({text(d.value("name", json())), text(d.value("hypervisor", json())), state,
                        text(d.value("vcpus", json())),
                        d.value("memory_mb", json()).is_number() ? format_memory_mb(d["memory_mb"].get<std::uint64_t>()) : "-",
                        text(d.value("pid", json())), format_uptime(d.value("uptime_s", json()))});
    }
    std::vector<std::size_t> width(rows[0].size(), 0);
    for (const auto& r : rows)
        for (std::size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
    std::ostringstream out;
    for (const auto& r : rows) {
        std::string line;
        for (std::size_t i = 0; i < r.size(); ++i) {
            line += r[i];
            if (i + 1 < r.size()) line += std::string(width[i] - r[i].size() + 2, ' ');
        }
        out << line << "\n";
    }
    return out.str();
}

std::string format_domain_info(const json& d) {
    std::ostringstream out;
    auto line = [&](const std::string& key, const std::string& value) { out << key << ": " << value << "\n"; };
    line("name", text(d.value("name", json())));
    line("hypervisor", text(d.value("hypervisor", json())));
    line("state", text(d.value("state", json())));
    line("vcpus", text(d.value("vcpus", json())));
    line("memory", d.value("memory_mb", json()).is_number() ? format_memory_mb(d["memory_mb"].get<std::uint64_t>()) : "-");
    line("pid", text(d.value("pid", json())));
    line("uptime", format_uptime(d.value("uptime_s", json())));
    line("state dir", text(d.value("state_dir", json())));
    line("console", text(d.value("console", json())));
    line("adopted", d.value("adopted", false) ? "yes" : "no");
    line("restart policy", text(d.value("restart_policy", json())));
    line("restarts", text(d.value("restarts", json())));
    const json exit = d.value("exit", json());
    if (exit.is_object()) {
        line("last exit", text(exit.value("detail", json())) +
                              (exit.value("status", json()).is_number() ? " (status " + exit["status"].dump() + ")" : ""));
    }
    const json usage = d.value("usage", json());
    if (usage.is_object()) {
        char cpu[64];
        std::snprintf(cpu, sizeof cpu, "%.2fs", static_cast<double>(usage.value("cpu_total_ns", std::uint64_t{0})) / 1e9);
        line("cpu time", cpu);
        line("memory used", std::to_string(usage.value("used_memory_mb", std::uint64_t{0})) + "M (max " +
                                std::to_string(usage.value("max_used_memory_mb", std::uint64_t{0})) + "M)");
    }
    return out.str();
}

}  // namespace vmm::vmctl
