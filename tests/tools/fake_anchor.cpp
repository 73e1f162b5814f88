// fake_anchor: stands in for vmm-anchor where there is no /dev/kvm, for vmmd's supervision
// tests. Same command line (--manifest FILE [--run-dir DIR] [--console stdio|pty]
// [--log-level L] [--jail [--jail-uid U] [--jail-gid G]] [--ready-fd N]), same state directory (run::StateDir: pid, lock, cons, qmp), a QMP server
// (qmp::QmpServer) on <state-dir>/qmp, and the anchor's exit statuses (anchor/stop_reason.h):
// 0 after system_powerdown, 8 after quit or SIGTERM/SIGINT.
//
// Scripted per domain through the manifest's "cmdline" (words after "fake-anchor:"):
//   crash-after-ms=N     after N ms die without cleaning up: _exit(crash-status) (default 6)
//                        or, with crash-signal=S, kill itself with signal S
//   exit-after-ms=N      after N ms exit cleanly with exit-status (default 0)
//   start-delay-ms=N     wait N ms before writing the pid file
//   ignore-powerdown     system_powerdown does nothing (the guest ignores the button)
//   ignore-term          SIGTERM/SIGINT are ignored
//   no-qmp               a QMP socket nobody listens on (connections are refused)
//   qmp-after-ms=N       the QMP socket N ms after the pid file (the real anchor's machine build)
//   ready-first          the --ready-fd byte before the pid file and QMP socket, not after them
//                        (vmmd must still wait for both)
// The console pty echoes each byte it receives back as upper case.
// Single-threaded: everything runs on one io_context.
#include "anchor/stop_reason.h"
#include "common/fd.h"
#include "common/log.h"
#include "common/error.h"
#include "jail/jail_cli.h"
#include "manifest/domain_manifest.h"
#include "qmp/qmp_domain.h"
#include "qmp/qmp_server.h"
#include "run/state_dir.h"

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <signal.h>
#include <termios.h>
#include <stdlib.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <sstream>
#include <thread>

namespace {

using namespace vmm;

std::map<std::string, std::string> script_of(const DomainManifest& m) {
    std::map<std::string, std::string> s;
    const auto at = m.cmdline.find("fake-anchor:");
    if (at == std::string::npos) return s;
    std::istringstream words(m.cmdline.substr(at + 12));
    std::string w;
    while (words >> w) {
        const auto eq = w.find('=');
        s[w.substr(0, eq)] = eq == std::string::npos ? "" : w.substr(eq + 1);
    }
    return s;
}

class FakeMachine : public qmp::QmpDomain {
public:
    FakeMachine(boost::asio::io_context& io, std::string name, bool ignore_powerdown)
        : io_(io), name_(std::move(name)), ignore_powerdown_(ignore_powerdown) {}
    void attach(qmp::QmpServer* s) { server_ = s; }

    std::string name() const override { return name_; }
    std::string run_state() const override { return state_; }
    void stop() override {
        if (state_ != "running") return;
        state_ = "paused";
        event("STOP");
    }
    void cont() override {
        state_ = "running";
        event("RESUME");
    }
    void system_reset() override { event("RESET", {{"guest", false}, {"reason", "host-qmp-system-reset"}}); }
    void system_powerdown() override {
        event("POWERDOWN");
        if (ignore_powerdown_) return;
        finish(anchor::kExitPowerOff, "guest-shutdown", std::chrono::milliseconds(50));
    }
    void quit() override { finish(anchor::kExitHostRequest, "host-qmp-quit", std::chrono::milliseconds(0)); }
    qmp::Json query_cpus_fast() const override { return qmp::Json::array(); }
    qmp::Json query_block() const override { return qmp::Json::array(); }
    qmp::Json query_chardev() const override { return qmp::Json::array(); }

    // Ends the run loop with `status` after `delay` (the reply to the command goes first).
    void finish(int status, const std::string& reason, std::chrono::milliseconds delay) {
        if (exit_status >= 0) return;
        exit_status = status;
        state_ = "shutdown";
        event("SHUTDOWN", {{"guest", reason == "guest-shutdown"}, {"reason", reason}});
        timer_ = std::make_unique<boost::asio::steady_timer>(io_, delay + std::chrono::milliseconds(20));
        timer_->async_wait([this](const boost::system::error_code&) {
            if (server_) server_->close();
            io_.stop();
        });
    }

    int exit_status = -1;

private:
    void event(const std::string& n, qmp::Json data = nullptr) {
        if (server_) server_->emit(n, std::move(data));
    }
    boost::asio::io_context& io_;
    std::string name_, state_ = "running";
    bool ignore_powerdown_;
    qmp::QmpServer* server_ = nullptr;
    std::unique_ptr<boost::asio::steady_timer> timer_;
};

long number(const std::map<std::string, std::string>& s, const std::string& key, long fallback) {
    auto it = s.find(key);
    return it == s.end() ? fallback : std::stol(it->second);
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"fake_anchor: a vmm-anchor stand-in for supervision tests"};
    std::string manifest_path, run_dir = "/run/hypervisor", console = "stdio", log_level = "warn";
    app.add_option("--manifest", manifest_path)->required();
    app.add_option("--run-dir", run_dir);
    app.add_option("--console", console)->check(CLI::IsMember({"stdio", "pty"}));
    app.add_option("--log-level", log_level);
    int ready_fd = -1;
    app.add_option("--ready-fd", ready_fd);
    jail::JailCliOptions jail_cli;
    jail_cli.add_to(app, "pretend to run in");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e) == 0 ? 0 : anchor::kExitUsage;
    }
    if (const std::string problem = jail_cli.problem(); !problem.empty()) {
        std::fprintf(stderr, "fake_anchor: %s\n", problem.c_str());
        return anchor::kExitUsage;
    }
    DomainManifest m;
    try {
        m = load_manifest_file(manifest_path);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "fake_anchor: %s\n", e.what());
        return anchor::kExitUsage;
    }
    try {
        set_log_level(log_level);
    } catch (const std::exception&) {
    }
    // No jail: only the identity shows, as the real uid (what vmmd reads back when it adopts).
    // The effective and saved uids stay root, so the fake cleans up as before.
    std::optional<unsigned> jail_uid = jail_cli.uid();
    if (m.jail) jail_uid = m.jail->uid;
    if (jail_uid && ::setresuid(*jail_uid, 0, 0) != 0) {
        std::fprintf(stderr, "fake_anchor: setresuid(%u): %s\n", *jail_uid, std::strerror(errno));
        return anchor::kExitUsage;
    }
    const auto script = script_of(m);
    try {
        boost::asio::io_context io;
        run::StateDir dir(run_dir, "kvm", m.name);

        // The console: a pty whose slave is linked as `cons`; we hold the master.
        std::unique_ptr<boost::asio::posix::stream_descriptor> pty;
        Fd slave;
        char pty_buf[256];
        std::function<void()> echo;
        if (console == "pty") {
            const int master = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
            if (master < 0 || ::grantpt(master) < 0 || ::unlockpt(master) < 0) throw_errno("posix_openpt");
            dir.link_console(::ptsname(master));
            // Hold the slave open (reads on the master would fail with EIO while no one has it)
            // and make it raw, so nothing is echoed back by the line discipline.
            slave = open_fd(::ptsname(master), O_RDWR | O_NOCTTY);
            termios raw{};
            ::tcgetattr(slave.get(), &raw);
            ::cfmakeraw(&raw);
            ::tcsetattr(slave.get(), TCSANOW, &raw);
            pty = std::make_unique<boost::asio::posix::stream_descriptor>(io, master);
            echo = [&] {
                pty->async_read_some(boost::asio::buffer(pty_buf), [&](const boost::system::error_code& ec, std::size_t n) {
                    if (ec) return;  // no slave open yet (EIO) ends the echo; a test opens first
                    for (std::size_t i = 0; i < n; ++i) pty_buf[i] = static_cast<char>(std::toupper(pty_buf[i]));
                    boost::system::error_code wec;
                    boost::asio::write(*pty, boost::asio::buffer(pty_buf, n), wec);
                    echo();
                });
            };
            echo();
        }

        // As the real anchor: one byte on --ready-fd once the QMP socket is there, then closed.
        Fd ready(ready_fd);
        auto tell_ready = [&ready] {
            if (!ready) return;
            const char up = 'u';
            (void)!::write(ready.get(), &up, 1);
            ready.reset();
        };
        if (script.count("ready-first")) tell_ready();
        FakeMachine machine(io, m.name, script.count("ignore-powerdown") > 0);
        if (const long delay = number(script, "start-delay-ms", 0)) std::this_thread::sleep_for(std::chrono::milliseconds(delay));
        // As the real anchor: the pid first, the QMP socket once the machine is built (which
        // is when vmmd counts the domain as running).
        dir.write_pid(::getpid());
        std::unique_ptr<qmp::QmpServer> server;
        Fd deaf_qmp;
        boost::asio::steady_timer qmp_timer(io);
        auto serve_qmp = [&] {
            if (script.count("no-qmp")) {
                // The socket is there but nobody listens: connections are refused.
                deaf_qmp = Fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
                sockaddr_un addr{};
                addr.sun_family = AF_UNIX;
                std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", dir.file("qmp").c_str());
                if (::bind(deaf_qmp.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) throw_errno("bind qmp");
            } else {
                server = std::make_unique<qmp::QmpServer>(io, machine);
                server->listen(dir.file("qmp"));
                machine.attach(server.get());
            }
            dir.adopt("qmp");
            tell_ready();
        };
        if (const long ms = number(script, "qmp-after-ms", 0); ms > 0) {
            qmp_timer.expires_after(std::chrono::milliseconds(ms));
            qmp_timer.async_wait([&](const boost::system::error_code& ec) {
                if (!ec) serve_qmp();
            });
        } else {
            serve_qmp();
        }

        boost::asio::signal_set signals(io, SIGTERM, SIGINT);
        std::function<void()> wait_signal = [&] {
            signals.async_wait([&](const boost::system::error_code& ec, int) {
                if (ec) return;
                if (script.count("ignore-term")) {
                    wait_signal();
                    return;
                }
                machine.finish(anchor::kExitHostRequest, "host-signal", std::chrono::milliseconds(0));
            });
        };
        wait_signal();

        boost::asio::steady_timer crash(io), clean_exit(io);
        if (const long ms = number(script, "crash-after-ms", -1); ms >= 0) {
            crash.expires_after(std::chrono::milliseconds(ms));
            crash.async_wait([&](const boost::system::error_code& ec) {
                if (ec) return;
                if (const long sig = number(script, "crash-signal", 0)) ::kill(::getpid(), static_cast<int>(sig));
                ::_exit(static_cast<int>(number(script, "crash-status", anchor::kExitInternalError)));
            });
        }
        if (const long ms = number(script, "exit-after-ms", -1); ms >= 0) {
            clean_exit.expires_after(std::chrono::milliseconds(ms));
            clean_exit.async_wait([&](const boost::system::error_code& ec) {
                if (!ec) machine.finish(static_cast<int>(number(script, "exit-status", 0)), "guest-shutdown",
                                        std::chrono::milliseconds(0));
            });
        }
        io.run();
        server.reset();
        return machine.exit_status < 0 ? anchor::kExitHostRequest : machine.exit_status;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "fake_anchor: %s: %s\n", m.name.c_str(), e.what());
        return anchor::kExitHostSetup;
    }
}
