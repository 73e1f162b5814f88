// Watching an anchor from the outside (tests only): its pid file, /proc/PID/status and smaps.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace vmm::test {

// Waits (bounded, 10 s) until <state_dir>/pid holds a pid; -1 when none appears.
int wait_pid_file(const std::string& state_dir);

// A line of /proc/PID/status ("Seccomp:\t2"), or "" when absent.
std::string proc_status_line(int pid, const std::string& key);

// Waits (bounded, 5 s) until /proc/PID/status shows `want` for `key` (the anchor's jail step
// comes a moment after its QMP sockets appear); returns the last line seen.
std::string wait_proc_status(int pid, const std::string& key, const std::string& want);

// One mapping of /proc/PID/smaps: its range, permissions ("rw-p"), VmFlags (" rd wr ... ", each
// flag between spaces) and AnonHugePages in KiB.
struct SmapsMapping {
    std::uintptr_t start = 0, end = 0;
    std::string perms, vm_flags;
    std::uint64_t anon_huge_kib = 0;
    std::uint64_t size() const { return end - start; }
    bool has_flag(const std::string& flag) const { return vm_flags.find(" " + flag + " ") != std::string::npos; }
};
// The mappings of a process ("self" or a pid), in address order; empty when it is gone.
std::vector<SmapsMapping> proc_smaps(const std::string& pid);

// The host's transparent huge page setting (/sys/kernel/mm/transparent_hugepage/enabled, e.g.
// "always [madvise] never"), or "" on a kernel without THP.
std::string thp_setting();
inline bool thp_off(const std::string& setting) { return setting.empty() || setting.find("[never]") != std::string::npos; }

}  // namespace vmm::test
