#include "kvm/vcpu.h"

namespace vmm {

const char* to_string(VcpuExit::Kind kind) {
    switch (kind) {
    case VcpuExit::Kind::Io: return "io";
    case VcpuExit::Kind::Mmio: return "mmio";
    case VcpuExit::Kind::Hlt: return "hlt";
    case VcpuExit::Kind::Shutdown: return "shutdown (triple fault)";
    case VcpuExit::Kind::SystemEvent: return "system-event";
    case VcpuExit::Kind::InternalError: return "internal-error";
    case VcpuExit::Kind::FailEntry: return "fail-entry";
    case VcpuExit::Kind::Interrupted: return "interrupted";
    case VcpuExit::Kind::Unknown: return "unknown";
    }
    return "?";
}

}  // namespace vmm
