#include "anchor/stop_reason.h"

namespace vmm::anchor {

int exit_status(const StopReason& r) {
    switch (r.kind) {
    case StopKind::GuestExitPort: return ((r.guest_code << 1) | 1) & 0xff;
    case StopKind::PowerOff: return kExitPowerOff;
    case StopKind::Reset: return kExitReset;
    case StopKind::TripleFault: return kExitTripleFault;
    case StopKind::InternalError:
    case StopKind::GuestPanicked: return kExitInternalError;
    case StopKind::HostRequest: return kExitHostRequest;
    case StopKind::HostError: return kExitHostSetup;
    }
    return kExitHostSetup;
}

std::string describe(const StopReason& r) {
    std::string s;
    switch (r.kind) {
    case StopKind::GuestExitPort: s = "guest exited through the debug-exit port with value " + std::to_string(r.guest_code); break;
    case StopKind::PowerOff: s = "guest powered off"; break;
    case StopKind::Reset: s = "guest reset the machine"; break;
    case StopKind::TripleFault: s = "guest triple-faulted"; break;
    case StopKind::InternalError: s = "KVM internal error"; break;
    case StopKind::GuestPanicked: s = "guest panicked"; break;
    case StopKind::HostRequest: s = "stopped by the host"; break;
    case StopKind::HostError: s = "host error"; break;
    }
    if (!r.detail.empty()) s += ": " + r.detail;
    return s;
}

}  // namespace vmm::anchor
