// qmp_fake_domain: serves vmm's QmpServer with a scripted FakeDomain (qmp/fake_domain.h) on
// one or more unix sockets, so QMP clients (the QEMU peer comparison, go-qemu) can be tested
// without KVM. Exits 0 after `quit` (once the reply is flushed) or on SIGTERM/SIGINT.
//
//   qmp_fake_domain --socket PATH [--socket PATH...] [--name NAME] [--state RUNSTATE]
//                   [--vcpus N] [--guest-acpi]
//
// --state is the initial QEMU RunState (default prelaunch; qemu -M none starts "running").
// --guest-acpi makes system_powerdown shut the fake guest down (SHUTDOWN guest-shutdown).
// Prints "ready" on stdout once every socket listens. Main thread only.
#include "common/log.h"
#include "qmp/fake_domain.h"
#include "qmp/qmp_server.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

int main(int argc, char** argv) {
    std::vector<std::string> sockets;
    std::string name = "fake", state = "prelaunch";
    int vcpus = 1;
    bool guest_acpi = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        const auto value = [&]() -> std::string {
            if (i + 1 >= argc) {
                std::cerr << "qmp_fake_domain: " << a << " needs a value\n";
                std::exit(64);
            }
            return argv[++i];
        };
        if (a == "--socket") sockets.push_back(value());
        else if (a == "--name") name = value();
        else if (a == "--state") state = value();
        else if (a == "--vcpus") vcpus = std::atoi(value().c_str());
        else if (a == "--guest-acpi") guest_acpi = true;
        else {
            std::cerr << "usage: qmp_fake_domain --socket PATH [--socket PATH...] [--name NAME] "
                         "[--state RUNSTATE] [--vcpus N] [--guest-acpi]\n";
            return 64;
        }
    }
    if (sockets.empty()) {
        std::cerr << "qmp_fake_domain: --socket is required\n";
        return 64;
    }
    try {
        boost::asio::io_context io;
        vmm::qmp::FakeDomain domain(name, state);
        domain.vcpus = vcpus;
        domain.guest_acpi = guest_acpi;
        vmm::qmp::QmpServer server(io, domain);
        domain.attach(server);
        // quit: the reply goes out first (the dispatcher queues it after quit() returns), then
        // close() flushes and the io_context runs out of work.
        boost::asio::signal_set signals(io, SIGINT, SIGTERM);
        domain.on_quit = [&] {
            signals.cancel();
            server.close();
        };
        signals.async_wait([&](const boost::system::error_code& ec, int) {
            if (!ec) server.close();
        });
        for (const auto& s : sockets) server.listen(s);
        std::cout << "ready" << std::endl;
        io.run();
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "qmp_fake_domain: " << e.what() << "\n";
        return 70;
    }
}
