// Resource accounting from /proc, as EVE reports it (DomainMetric: CPUTotalNs, UsedMemory,
// MaxUsedMemory): per process CPU time and resident memory, the host's CPUs and memory, a
// process's start time and command line. `proc_root` is "/proc" except in tests.
// Pure readers, thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace vmm::hv {

struct ProcessUsage {
    std::uint64_t cpu_total_ns = 0;  // utime + stime
    std::uint64_t rss_kb = 0;        // VmRSS
    std::uint64_t hwm_kb = 0;        // VmHWM
    std::chrono::system_clock::time_point started;
};

// Nothing when the process is gone (or unreadable).
std::optional<ProcessUsage> read_process_usage(int pid, const std::string& proc_root = "/proc");

// The children of a live process (/proc/PID/task/PID/children); empty when it has none or is gone.
std::vector<int> read_process_children(int pid, const std::string& proc_root = "/proc");

// The one child of `pid` that is pid 1 of a pid namespace below pid's (its NSpid line ends in
// 1): an anchor under its keeper (vmm-anchor --jail-pid-ns). Nothing otherwise.
std::optional<int> pid_namespace_child(int pid, const std::string& proc_root = "/proc");

// The real uid of a live process (the first of /proc/PID/status's Uid line); nothing when gone.
std::optional<unsigned> read_process_uid(int pid, const std::string& proc_root = "/proc");

// The arguments of a live process (NUL-separated in /proc/PID/cmdline); empty when gone.
std::vector<std::string> read_process_cmdline(int pid, const std::string& proc_root = "/proc");

// MemTotal / MemAvailable in MiB, from <proc_root>/meminfo; 0 when unreadable.
void read_host_memory(std::uint64_t& total_mb, std::uint64_t& available_mb,
                      const std::string& proc_root = "/proc");

// Parses the text of /proc/PID/stat: utime and stime (fields 14, 15) and starttime (22), in
// clock ticks. The command name (field 2) may hold spaces and parentheses: fields are counted
// after its last ')'. False if the text is malformed.
bool parse_proc_stat(const std::string& text, std::uint64_t& utime, std::uint64_t& stime,
                     std::uint64_t& starttime);

}  // namespace vmm::hv
