// A transient systemd scope for a running process, asked of PID 1 directly.
//
// vmmd --systemd-slice puts each anchor into vmm-<domain>.scope of a slice (machine.slice in the
// packaged unit) with its cpu and memory limits, as libvirt does for its machines. Instead of
// exec'ing `systemd-run --scope` for every start (which doubled a start in the emulated L1,
// bench/RESULTS.md), vmmd sends the one D-Bus call systemd-run makes,
// org.freedesktop.systemd1.Manager.StartTransientUnit, over PID 1's private socket
// (/run/systemd/private: root only, peer to peer, no bus daemon): authentication EXTERNAL, one
// method call, its reply. Only what that call needs of the D-Bus wire format is here
// (little-endian marshalling of "ssa(sv)a(sa(sv))", reply and error parsing); the replies are
// hostile-input-checked like anything else read from a socket.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace vmm::jail {

struct ScopeRequest {
    std::string unit;         // "vmm-web.scope"
    std::string slice;        // "machine.slice"
    std::string description;  // "vmm domain web"
    pid_t pid = -1;           // moved into the scope when it starts
    std::optional<std::uint64_t> memory_max;           // MemoryMax=, bytes
    std::optional<std::uint64_t> cpu_quota_per_sec_us;  // CPUQuota= as µs of CPU time per second
};

// The scope's cgroup v2 path below the hierarchy's root, as systemd lays slices out (a dash
// in a slice's name nests it in the slice named by what comes before): "/machine.slice/
// vmm-web.scope"; "/a.slice/a-b.slice/vmm-web.scope" for slice "a-b.slice"; "/vmm-web.scope"
// for the root slice "-.slice". Throws vmm::Error for a name that is not a slice's.
std::string scope_cgroup_path(const ScopeRequest& request);

// The StartTransientUnit method call (mode "fail", CollectMode=inactive-or-failed so that the
// scope is forgotten once its process has exited and the domain can start again), as the bytes
// of one D-Bus message with this serial.
std::vector<std::uint8_t> start_transient_unit_message(const ScopeRequest& request, std::uint32_t serial);

// Connects to `socket_path` (PID 1's private bus socket), authenticates as this process's uid,
// sends the call and waits up to `timeout` for its reply. Returns the job's object path. Throws
// vmm::Error with systemd's error name and message ("org.freedesktop.systemd1.UnitExists: Unit
// vmm-web.scope was already loaded or has a fragment file.") or std::system_error naming the
// socket.
std::string start_transient_scope(const std::string& socket_path, const ScopeRequest& request,
                                  std::chrono::milliseconds timeout);

}  // namespace vmm::jail
