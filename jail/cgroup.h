// cgroup v2 placement of an anchor with cpu and memory limits.
//
// Who calls it: the process that spawns anchors (vmmd's kvm hypervisor, with the unit's
// Delegate=yes), once per domain, before or right after the anchor starts; not wired yet (see
// docs/SECURITY.md). Pure file operations on a cgroup2 mount, so tests run it on a fake tree.
//
// Layout: <root>/<parent>/<name>/ where <parent> is a cgroup without processes of its own
// (cgroup v2's "no internal processes" rule), e.g. vmmd's delegated cgroup + "/domains".
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace vmm::jail {

struct CgroupLimits {
    // memory.max in bytes; nullopt: "max" (no limit).
    std::optional<std::uint64_t> memory_max;
    // cpu.max as a number of CPUs' worth of time per period (the manifest's cpu_quota: 1.5 is
    // one and a half CPUs); nullopt: "max".
    std::optional<double> cpus;
    std::uint64_t cpu_period_us = 100000;
};

// The anchor's memory.max: guest RAM plus the anchor's own overhead (code, heap, per-vCPU
// kvm_run and stacks, virtqueue buffers, page tables for the guest RAM mapping). Generous on
// purpose: hitting it means the OOM killer ends the domain.
std::uint64_t anchor_memory_limit(std::uint64_t memory_mb, unsigned vcpus);

// cpu.max's text for the limits: "max 100000" or "<quota_us> <period_us>".
std::string cpu_max_value(const CgroupLimits& limits);

// Creates <root>/<parent>/<name> (and <parent>), enables the cpu and memory controllers for
// <parent>'s children (each must be listed in <root>/<parent>/cgroup.controllers), writes
// cpu.max and memory.max and moves `pid` in (cgroup.procs). Returns the new cgroup's path.
// Throws vmm::Error / std::system_error naming the file.
std::string place_in_cgroup(const std::string& root, const std::string& parent, const std::string& name, pid_t pid,
                            const CgroupLimits& limits);

// Removes the domain's cgroup once its anchor has exited (rmdir; ENOENT is fine).
void remove_cgroup(const std::string& path);

// The cgroup v2 path of `pid` relative to the cgroup2 mount ("/system.slice/vmmd.service"),
// from /proc/<pid>/cgroup (the "0::" line); `proc` is for tests.
std::string cgroup_of(pid_t pid, const std::string& proc = "/proc");

// Moves the children of `pid` (/proc/<pid>/task/<pid>/children) that are not in `pid`'s cgroup
// into it (<root><cgroup_of(pid)>/cgroup.procs): an anchor with a pid namespace (vmm-anchor
// --jail-pid-ns, jail/pid_namespace.h) is a child of the process the host placed, and it may
// have been forked before that process was moved. Called after the move; a child forked later
// is in the cgroup by birth. Returns how many it moved (0 when `pid` is gone). Throws like
// place_in_cgroup.
int move_children_along(pid_t pid, const std::string& root, const std::string& proc = "/proc");

// The same for a process that someone else moves, later: waits (polling each millisecond, at
// most `timeout`) until `pid` is in `cgroup` (a path below the hierarchy's root, e.g. a systemd
// scope's: PID 1 moves the process when the scope's start job runs, after it has answered the
// call that asked for it), then moves its children along. Throws vmm::Error when `pid` does not
// get there in time or is gone.
int move_children_along_once_in(pid_t pid, const std::string& cgroup, const std::string& root,
                                std::chrono::milliseconds timeout, const std::string& proc = "/proc");

}  // namespace vmm::jail
