// Vcpu: the narrow interface the anchor's exit loop drives. KvmVcpu implements it with
// KVM_RUN; tests implement it with a scripted vCPU that replays the port/MMIO accesses a
// driver makes. Nothing here includes linux/kvm.h.
//
// run() and the exit's data buffer belong to the vCPU's own thread; kick() may be called from
// any thread to make a blocked run() return VcpuExit::Kind::Interrupted soon.
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace vmm {

struct VcpuExit {
    enum class Kind {
        Io,             // port I/O: addr = port, size, count, is_write, data (size*count bytes)
        Mmio,           // addr = GPA, size, is_write, data (size bytes)
        Hlt,            // hlt with no in-kernel irqchip
        Shutdown,       // triple fault (KVM_EXIT_SHUTDOWN)
        SystemEvent,    // detail = a SystemEvent value below
        InternalError,  // detail = suberror
        FailEntry,      // detail = hardware entry failure reason
        Interrupted,    // run() returned because of kick() / a signal
        Unknown,        // detail = raw exit reason
    };
    Kind kind = Kind::Unknown;
    std::uint64_t addr = 0;
    std::uint32_t size = 0;
    std::uint32_t count = 1;
    bool is_write = false;
    std::span<std::uint8_t> data;  // reads: the handler fills it; writes: what the guest wrote
    std::uint64_t detail = 0;
};

// KVM_EXIT_SYSTEM_EVENT types, normalised (the same numbers as the KVM API's).
enum class SystemEvent : std::uint64_t { Shutdown = 1, Reset = 2, Crash = 3 };

const char* to_string(VcpuExit::Kind kind);

class Vcpu {
public:
    virtual ~Vcpu() = default;
    virtual unsigned index() const = 0;
    // Runs the guest until the next exit that needs userspace. Throws std::system_error only
    // for host failures (not for anything the guest does).
    virtual VcpuExit run() = 0;
    // Makes a concurrent or the next run() return Interrupted; thread-safe.
    virtual void kick() = 0;
    // Registers and segment state for crash reports; empty if unavailable.
    virtual std::string describe_state() { return {}; }
};

}  // namespace vmm
