// FakeDomain: a scripted QmpDomain for tests and tools (qmp_server_test, tests/tools/
// qmp_fake_domain, the go-qemu test). It keeps a run state and emits the events QEMU 7.2
// emits for each command (cpus.c/runstate.c semantics):
//   stop        running -> paused + STOP; otherwise no change, no event
//   cont        needs-reset states -> GenericError; running -> no change, no event;
//               otherwise -> running + RESUME
//   system_reset     RESET {guest: false, reason: host-qmp-system-reset}; a shut-down or
//                    crashed domain becomes paused (it then needs cont)
//   system_powerdown POWERDOWN; with `guest_acpi`, the "guest" then shuts down:
//                    SHUTDOWN {guest: true, reason: guest-shutdown} and state shutdown
//   quit        SHUTDOWN {guest: false, reason: host-qmp-quit}; calls on_quit
// Header-only; used on the server's io_context thread.
#pragma once

#include "qmp/command_error.h"
#include "qmp/qmp_domain.h"
#include "qmp/qmp_server.h"

#include <functional>
#include <string>
#include <utility>

namespace vmm::qmp {

class FakeDomain : public QmpDomain {
public:
    explicit FakeDomain(std::string name = "fake", std::string state = "prelaunch")
        : name_(std::move(name)), state_(std::move(state)) {}

    void attach(QmpServer& server) { server_ = &server; }

    std::string name() const override { return name_; }
    std::string run_state() const override { return state_; }

    void stop() override {
        ++stops;
        if (state_ != "running") return;
        state_ = "paused";
        event("STOP");
    }
    void cont() override {
        ++conts;
        if (state_ == "shutdown" || state_ == "internal-error" || state_ == "guest-panicked") {
            throw CommandError(kGenericError, "Resetting the Virtual Machine is required");
        }
        if (state_ == "running") return;  // QEMU 7.2: no event (checked by qmp_peer_qemu.sh)
        state_ = "running";
        event("RESUME");
    }
    void system_reset() override {
        ++resets;
        event("RESET", Json{{"guest", false}, {"reason", "host-qmp-system-reset"}});
        if (state_ == "shutdown" || state_ == "internal-error" || state_ == "guest-panicked") {
            state_ = "paused";
        }
    }
    void system_powerdown() override {
        ++powerdowns;
        event("POWERDOWN");
        if (guest_acpi && state_ == "running") {
            state_ = "shutdown";
            event("SHUTDOWN", Json{{"guest", true}, {"reason", "guest-shutdown"}});
        }
    }
    // dump-guest-memory: on_dump when set (a test sees the arguments and the fd:NAME
    // descriptor), else QmpDomain's refusal.
    void dump_guest_memory(const Json& args, Fd target) override {
        if (!on_dump) return QmpDomain::dump_guest_memory(args, std::move(target));
        on_dump(args, std::move(target));
    }
    void quit() override {
        ++quits;
        event("SHUTDOWN", Json{{"guest", false}, {"reason", "host-qmp-quit"}});
        if (on_quit) on_quit();
    }

    Json query_cpus_fast() const override {
        Json cpus = Json::array();
        for (int i = 0; i < vcpus; ++i) {
            cpus.push_back({{"thread-id", 1000 + i},
                            {"props", {{"core-id", 0}, {"thread-id", 0}, {"socket-id", i}}},
                            {"qom-path", "/machine/unattached/device[" + std::to_string(i) + "]"},
                            {"cpu-index", i},
                            {"target", "x86_64"}});
        }
        return cpus;
    }
    Json query_block() const override { return Json::array(); }
    Json query_chardev() const override { return chardevs; }

    void set_state(std::string s) { state_ = std::move(s); }

    bool guest_acpi = false;
    int vcpus = 1;
    Json chardevs = Json::array(
        {{{"frontend-open", true}, {"filename", "unix:qmp,server=on"}, {"label", "compat_monitor0"}}});
    std::function<void()> on_quit;
    std::function<void(const Json&, Fd)> on_dump;
    int stops = 0, conts = 0, resets = 0, powerdowns = 0, quits = 0;

private:
    void event(const std::string& name, Json data = nullptr) {
        if (server_) server_->emit(name, std::move(data));
    }

    QmpServer* server_ = nullptr;
    std::string name_;
    std::string state_;
};

}  // namespace vmm::qmp
