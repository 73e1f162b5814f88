#include "hypervisor/proc_stats.h"

#include <unistd.h>

#include <fstream>
#include <sstream>

namespace vmm::hv {

namespace {

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return {};
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

// "VmRSS:     1234 kB" -> 1234, "Uid:\t1000\t1000\t1000\t1000" -> 1000 (the first number after the key)
std::optional<std::uint64_t> status_number(const std::string& status, const std::string& key) {
    std::istringstream in(status);
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind(key + ":", 0) == 0) {
            std::istringstream v(line.substr(key.size() + 1));
            std::uint64_t n = 0;
            if (v >> n) return n;
            return std::nullopt;
        }
    }
    return std::nullopt;
}

std::uint64_t status_kb(const std::string& status, const std::string& key) {
    return status_number(status, key).value_or(0);
}

// The system's boot time (btime in /proc/stat), seconds since the epoch.
std::int64_t boot_time(const std::string& proc_root) {
    std::istringstream in(slurp(proc_root + "/stat"));
    std::string key;
    while (in >> key) {
        if (key == "btime") {
            std::int64_t t = 0;
            in >> t;
            return t;
        }
        in.ignore(1 << 20, '\n');
    }
    return 0;
}

}  // namespace

bool parse_proc_stat(const std::string& text, std::uint64_t& utime, std::uint64_t& stime,
                     std::uint64_t& starttime) {
    const auto close = text.rfind(')');
    if (close == std::string::npos) return false;
    std::istringstream in(text.substr(close + 1));
    // After ')' comes field 3 (state); utime is field 14, stime 15, starttime 22.
    std::string field;
    for (int i = 3; i <= 22; ++i) {
        if (!(in >> field)) return false;
        try {
            if (i == 14) utime = std::stoull(field);
            if (i == 15) stime = std::stoull(field);
            if (i == 22) starttime = std::stoull(field);
        } catch (const std::exception&) {
            return false;
        }
    }
    return true;
}

std::optional<ProcessUsage> read_process_usage(int pid, const std::string& proc_root) {
    if (pid <= 0) return std::nullopt;
    const std::string dir = proc_root + "/" + std::to_string(pid);
    const std::string stat = slurp(dir + "/stat");
    std::uint64_t utime = 0, stime = 0, starttime = 0;
    if (stat.empty() || !parse_proc_stat(stat, utime, stime, starttime)) return std::nullopt;
    const long hz = ::sysconf(_SC_CLK_TCK) > 0 ? ::sysconf(_SC_CLK_TCK) : 100;
    ProcessUsage u;
    u.cpu_total_ns = (utime + stime) * (1000000000ull / static_cast<std::uint64_t>(hz));
    const std::string status = slurp(dir + "/status");
    u.rss_kb = status_kb(status, "VmRSS");
    u.hwm_kb = status_kb(status, "VmHWM");
    const std::int64_t start_ms = boot_time(proc_root) * 1000 + static_cast<std::int64_t>(starttime * 1000 / hz);
    u.started = std::chrono::system_clock::time_point(std::chrono::milliseconds(start_ms));
    return u;
}

std::vector<int> read_process_children(int pid, const std::string& proc_root) {
    std::vector<int> children;
    if (pid <= 0) return children;
    const std::string id = std::to_string(pid);
    std::istringstream in(slurp(proc_root + "/" + id + "/task/" + id + "/children"));
    for (int child = 0; in >> child;) children.push_back(child);
    return children;
}

std::optional<int> pid_namespace_child(int pid, const std::string& proc_root) {
    const std::vector<int> children = read_process_children(pid, proc_root);
    if (children.size() != 1) return std::nullopt;
    const std::string status = slurp(proc_root + "/" + std::to_string(children.front()) + "/status");
    const auto at = status.find("\nNSpid:");
    if (at == std::string::npos) return std::nullopt;
    std::istringstream ids(status.substr(at + 7, status.find('\n', at + 1) - (at + 7)));
    std::vector<long> nspid;
    for (long id = 0; ids >> id;) nspid.push_back(id);
    if (nspid.size() < 2 || nspid.back() != 1) return std::nullopt;
    return children.front();
}

std::optional<unsigned> read_process_uid(int pid, const std::string& proc_root) {
    if (pid <= 0) return std::nullopt;
    const auto uid = status_number(slurp(proc_root + "/" + std::to_string(pid) + "/status"), "Uid");
    if (!uid) return std::nullopt;
    return static_cast<unsigned>(*uid);
}

std::vector<std::string> read_process_cmdline(int pid, const std::string& proc_root) {
    std::vector<std::string> args;
    if (pid <= 0) return args;
    const std::string text = slurp(proc_root + "/" + std::to_string(pid) + "/cmdline");
    std::size_t start = 0;
    while (start < text.size()) {
        auto end = text.find('\0', start);
        if (end == std::string::npos) end = text.size();
        args.push_back(text.substr(start, end - start));
        start = end + 1;
    }
    return args;
}

void read_host_memory(std::uint64_t& total_mb, std::uint64_t& available_mb, const std::string& proc_root) {
    const std::string meminfo = slurp(proc_root + "/meminfo");
    total_mb = status_kb(meminfo, "MemTotal") / 1024;
    available_mb = status_kb(meminfo, "MemAvailable") / 1024;
}

}  // namespace vmm::hv
