// DomainControl: the requests vmmd sends a running anchor (power-down, quit, pause, resume,
// status). QmpControl speaks QMP over the state directory's `qmp` socket; SignalControl is the
// fallback for anchors without one: SIGTERM (the anchor exits with status 8), SIGSTOP/SIGCONT.
// Called on vmmd's io_context thread; each call is short and blocking (a QMP request has a
// deadline of about a second).
#pragma once

#include <chrono>
#include <memory>
#include <string>

namespace vmm::qmp {
class QmpClient;
}

namespace vmm::hv::kvm {

class DomainControl {
public:
    virtual ~DomainControl() = default;
    // Asks the guest to power down (ACPI power button); it may ignore it.
    virtual void powerdown() = 0;
    // Ends the domain now.
    virtual void quit() = 0;
    virtual void pause() = 0;
    virtual void resume() = 0;
    // "running", "paused", ... (QMP query-status's status), or "" if unknown.
    virtual std::string query_status() = 0;
    virtual std::string kind() const = 0;  // "qmp" | "signal"
};

// Signals through a pidfd (no pid reuse race). Does not own the pidfd.
class SignalControl : public DomainControl {
public:
    SignalControl(int pidfd, int pid) : pidfd_(pidfd), pid_(pid) {}
    void powerdown() override;
    void quit() override;
    void pause() override;
    void resume() override;
    std::string query_status() override;
    std::string kind() const override { return "signal"; }

private:
    void send(int sig);
    int pidfd_, pid_;
};

// QMP over <state-dir>/qmp (qmp/qmp_client.h): system_powerdown, quit, stop, cont,
// query-status. Each request has a short deadline; errors throw (vmm::Error,
// qmp::CommandError), and the caller falls back or escalates.
class QmpControl : public DomainControl {
public:
    // Connects and negotiates; throws if the socket does not answer within `timeout`.
    QmpControl(const std::string& socket_path, std::chrono::milliseconds timeout);
    ~QmpControl() override;
    void powerdown() override;
    void quit() override;
    void pause() override;
    void resume() override;
    std::string query_status() override;
    std::string kind() const override { return "qmp"; }

private:
    std::unique_ptr<qmp::QmpClient> client_;
    std::chrono::milliseconds timeout_;
};

// The control for an anchor: QMP when its state directory has a `qmp` socket that answers,
// else signals.
std::unique_ptr<DomainControl> make_domain_control(const std::string& state_dir, int pidfd, int pid);

// pidfd_open(2) / pidfd_send_signal(2) (glibc 2.36 has no wrappers for every one we need).
int pidfd_open(int pid);
int pidfd_send_signal(int pidfd, int sig);

}  // namespace vmm::hv::kvm
