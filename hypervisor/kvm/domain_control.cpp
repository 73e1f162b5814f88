#include "hypervisor/kvm/domain_control.h"

#include "common/error.h"
#include "common/log.h"
#include "qmp/qmp_client.h"

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

QmpControl::QmpControl(const std::string& socket_path, std::chrono::milliseconds timeout)
    : client_(std::make_unique<qmp::QmpClient>(socket_path, timeout)), timeout_(timeout) {}

QmpControl::~QmpControl() = default;

void QmpControl::powerdown() { client_->execute("system_powerdown", qmp::Json::object(), timeout_); }

void QmpControl::quit() {
    try {
        client_->execute("quit", qmp::Json::object(), timeout_);
    } catch (const qmp::CommandError&) {
        throw;
    } catch (const vmm::Error&) {
        // The anchor may close the connection as it exits, before or instead of the reply.
    }
}

void QmpControl::pause() { client_->execute("stop", qmp::Json::object(), timeout_); }
void QmpControl::resume() { client_->execute("cont", qmp::Json::object(), timeout_); }

std::string QmpControl::query_status() {
    const qmp::Json r = client_->execute("query-status", qmp::Json::object(), timeout_);
    return r.is_object() && r.contains("status") && r["status"].is_string() ? r["status"].get<std::string>() : "";
}

std::unique_ptr<DomainControl> make_domain_control(const std::string& state_dir, int pidfd, int pid) {
    const std::string socket = state_dir + "/qmp";
    if (::access(socket.c_str(), F_OK) == 0) {
        try {
            return std::make_unique<QmpControl>(socket, std::chrono::milliseconds(1000));
        } catch (const std::exception& e) {
            logger("kvm")->warn("QMP at {} does not answer ({}); using signals", socket, e.what());
        }
    }
    return std::make_unique<SignalControl>(pidfd, pid);
}

}  // namespace vmm::hv::kvm
