#include "anchor/exit_handler.h"

#include "common/log.h"

#include <cstdio>

namespace vmm::anchor {

namespace {
constexpr std::uint64_t kLoggedUnhandled = 16;
}

void ExitHandler::note_unhandled(const char* bus, std::uint64_t addr, std::size_t size, bool is_write) {
    const auto n = unhandled_.fetch_add(1);
    if (n < kLoggedUnhandled) {
        logger("anchor")->debug("unhandled {} {} at {:#x} ({} bytes){}", bus, is_write ? "write" : "read", addr, size,
                                n + 1 == kLoggedUnhandled ? "; not logging further ones" : "");
    }
}

void ExitHandler::stop_with_state(Vcpu& vcpu, StopKind kind, const std::string& what) {
    const std::string state = vcpu.describe_state();
    logger("anchor")->error("vcpu{}: {}{}{}", vcpu.index(), what, state.empty() ? "" : "; ", state);
    control_.guest_stop({kind, 0, what + (state.empty() ? "" : " [" + state + "]")});
}

bool ExitHandler::handle(Vcpu& vcpu, VcpuExit& exit) {
    switch (exit.kind) {
    case VcpuExit::Kind::Io: {
        // A string instruction (rep ins/outs) arrives as `count` accesses of `size` bytes.
        for (std::uint32_t i = 0; i < exit.count; ++i) {
            auto chunk = exit.data.subspan(std::size_t(i) * exit.size, exit.size);
            const bool hit = exit.is_write ? pio_.write(exit.addr, chunk) : pio_.read(exit.addr, chunk);
            if (!hit) note_unhandled("port", exit.addr, exit.size, exit.is_write);
        }
        break;
    }
    case VcpuExit::Kind::Mmio: {
        const bool hit = exit.is_write ? mmio_.write(exit.addr, exit.data) : mmio_.read(exit.addr, exit.data);
        if (!hit) note_unhandled("mmio", exit.addr, exit.size, exit.is_write);
        break;
    }
    case VcpuExit::Kind::Interrupted: break;
    case VcpuExit::Kind::Shutdown: stop_with_state(vcpu, StopKind::TripleFault, "triple fault"); break;
    case VcpuExit::Kind::SystemEvent:
        switch (static_cast<SystemEvent>(exit.detail)) {
        case SystemEvent::Shutdown: control_.guest_stop({StopKind::PowerOff, 0, "system event"}); break;
        case SystemEvent::Reset: control_.guest_stop({StopKind::Reset, 0, "system event"}); break;
        case SystemEvent::Crash: stop_with_state(vcpu, StopKind::InternalError, "guest crash system event"); break;
        default:
            stop_with_state(vcpu, StopKind::InternalError, "unknown system event " + std::to_string(exit.detail));
        }
        break;
    case VcpuExit::Kind::Hlt:
        // Only reachable without the in-kernel irqchip, which the anchor always creates.
        stop_with_state(vcpu, StopKind::InternalError, "unexpected hlt exit (no in-kernel irqchip?)");
        break;
    case VcpuExit::Kind::InternalError:
        stop_with_state(vcpu, StopKind::InternalError, "KVM internal error, suberror " + std::to_string(exit.detail));
        break;
    case VcpuExit::Kind::FailEntry:
        stop_with_state(vcpu, StopKind::InternalError,
                        "VM entry failed, hardware reason " + std::to_string(exit.detail));
        break;
    case VcpuExit::Kind::Unknown:
        stop_with_state(vcpu, StopKind::InternalError, "unhandled KVM exit reason " + std::to_string(exit.detail));
        break;
    }
    // A guest stop with the "stay" policy paused the domain: the loop parks this vCPU.
    return !control_.stopping();
}

void run_vcpu_loop(Vcpu& vcpu, ExitHandler& handler, VmControl& control) {
    try {
        while (!control.stopping()) {
            control.park_if_paused();
            if (control.stopping()) break;
            VcpuExit exit = vcpu.run();
            if (!handler.handle(vcpu, exit)) break;
        }
    } catch (const std::exception& e) {
        logger("anchor")->error("vcpu{}: {}", vcpu.index(), e.what());
        control.request_stop({StopKind::HostError, 0, e.what()});
    }
}

}  // namespace vmm::anchor
