// ExitHandler: what the anchor does with each vCPU exit. Port I/O and MMIO go to the buses;
// guest-caused stops (triple fault, system events) and KVM failures become a StopReason.
// Runs on vCPU threads, several at once; holds no state of its own besides rate limits.
#pragma once

#include "anchor/vm_control.h"
#include "devicemodel/bus/io_bus.h"
#include "kvm/vcpu.h"

#include <atomic>

namespace vmm::anchor {

class ExitHandler {
public:
    ExitHandler(IoBus& pio, IoBus& mmio, VmControl& control) : pio_(pio), mmio_(mmio), control_(control) {}
    // Handles one exit; returns false when this vCPU should stop running.
    bool handle(Vcpu& vcpu, VcpuExit& exit);
    // Accesses that hit no device (counted; the first few are logged).
    std::uint64_t unhandled_accesses() const noexcept { return unhandled_.load(); }

private:
    void note_unhandled(const char* bus, std::uint64_t addr, std::size_t size, bool is_write);
    void stop_with_state(Vcpu& vcpu, StopKind kind, const std::string& what);

    IoBus& pio_;
    IoBus& mmio_;
    VmControl& control_;
    std::atomic<std::uint64_t> unhandled_{0};
};

// The vCPU thread's body: run, handle, repeat until the domain stops. A host failure in run()
// stops the domain with StopKind::HostError instead of escaping the thread.
void run_vcpu_loop(Vcpu& vcpu, ExitHandler& handler, VmControl& control);

}  // namespace vmm::anchor
