// Why a domain stopped, and the anchor's exit status for it.
//
// Exit statuses (docs/ARCHITECTURE.md):
//   0              the guest powered off
//   (v << 1) | 1   the guest wrote v to the debug-exit port (QEMU isa-debug-exit), always odd
//   2              the guest reset the machine (i8042, triple-fault is separate) with on_reboot=exit
//   4              triple fault (KVM shutdown exit)
//   6              KVM internal error / entry failure / unhandled exit / guest panic (pvpanic)
//   8              stopped by a signal (SIGINT/SIGTERM) or a host request
//   64             bad manifest or command line
//   70             host setup failure (no KVM, cannot map memory, ...)
#pragma once

#include <string>

namespace vmm::anchor {

enum class StopKind { GuestExitPort, PowerOff, Reset, TripleFault, InternalError, GuestPanicked, HostRequest, HostError };

struct StopReason {
    StopKind kind = StopKind::HostError;
    int guest_code = 0;  // the value written to the debug-exit port
    std::string detail;  // human-readable context (registers for faults)
    bool restart = false;  // a host-requested reset (QMP system_reset): the anchor restarts
};

inline constexpr int kExitPowerOff = 0, kExitReset = 2, kExitTripleFault = 4, kExitInternalError = 6,
                     kExitHostRequest = 8, kExitUsage = 64, kExitHostSetup = 70;

int exit_status(const StopReason& reason);
std::string describe(const StopReason& reason);

}  // namespace vmm::anchor
