#include "hypervisor/kvm/domain_control.h"

#include "common/error.h"
#include "hypervisor/proc_stats.h"

#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fstream>

namespace vmm::hv::kvm {

int pidfd_open(int pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

int pidfd_send_signal(int pidfd, int sig) {
    return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}

void SignalControl::send(int sig) {
    if (pidfd_send_signal(pidfd_, sig) < 0 && errno != ESRCH)
        throw_errno("pidfd_send_signal " + std::to_string(sig) + " to anchor pid " + std::to_string(pid_));
}

void SignalControl::powerdown() { send(SIGTERM); }
void SignalControl::quit() { send(SIGTERM); }
void SignalControl::pause() { send(SIGSTOP); }
void SignalControl::resume() { send(SIGCONT); }

std::string SignalControl::query_status() {
    std::ifstream in("/proc/" + std::to_string(pid_) + "/stat");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto close = text.rfind(')');
    if (close == std::string::npos || close + 2 >= text.size()) return "";
    return text[close + 2] == 'T' ? "paused" : "running";
}

std::unique_ptr<DomainControl> make_domain_control(const std::string& state_dir, int pidfd, int pid) {
    (void)state_dir;
    return std::make_unique<SignalControl>(pidfd, pid);
}

}  // namespace vmm::hv::kvm
