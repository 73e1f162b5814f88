// QmpServer: QEMU's QMP protocol (docs/interop/qmp-spec) on unix sockets, for vmm-anchor.
// Each connection gets the greeting, must negotiate with qmp_capabilities (commands before it
// answer CommandNotFound, as QEMU does), then may run the commands below; every reply echoes
// the request's "id" as given. Asynchronous events go to every negotiated connection with
// QEMU's timestamp {"seconds": .., "microseconds": ..}.
//
// Commands: qmp_capabilities, query-commands, query-version, query-name, query-status, stop,
// cont, system_reset, system_powerdown, quit, query-cpus-fast, query-block, query-chardev,
// dump-guest-memory, query-dump, getfd, closefd, human-monitor-command ("info status", "info
// name").
//
// File descriptors passed with SCM_RIGHTS (up to kMaxPassedFds a message; the kernel drops the
// rest) wait in the connection for getfd, which names the first; a later message with
// descriptors replaces those not taken. Named ones live as long as the connection (at most
// QmpDispatcher::kMaxNamedFds), as QEMU's per-monitor fds: "fd:NAME" in dump-guest-memory.
//
// Unlike a QEMU socket chardev, one socket serves any number of clients at once (up to
// Options::max_clients); each is independent. Hostile input is bounded: a message larger than
// Options::limits is rejected as QEMU does (an endless line costs at most one message's worth
// of buffer; the rest is skipped up to the next structural character), a client that sends
// faster than it reads its replies is no longer read from until it catches up and is
// disconnected if its replies stay unread for Options::stall_timeout, one that does not read
// its events is dropped past Options::max_output_bytes, and a client that disconnects
// mid-message only loses its own partial message. Each of these is logged with the client's
// name ("client 3 on qmp"); repeated input errors are logged at the 1st, 2nd, 4th, 8th... one.
//
// Threads: everything runs on the io_context's thread (which must be a single thread);
// emit() may be called from any thread and is posted there (run inline when already on it).
#pragma once

#include "common/fd.h"
#include "qmp/json_stream.h"
#include "qmp/qmp_domain.h"

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

namespace vmm::qmp {

// Descriptors taken from one message's SCM_RIGHTS.
inline constexpr std::size_t kMaxPassedFds = 16;

struct QmpServerOptions {
    // What query-version and the greeting report. Clients such as libvirt and go-qemu gate
    // features on the QEMU version; this is the QEMU release whose QMP we follow.
    int qemu_major = 7;
    int qemu_minor = 2;
    int qemu_micro = 0;
    std::string package = "vmm";
    JsonLimits limits{};                       // per input message
    std::size_t max_output_bytes = 1u << 20;   // queued for one client before it is dropped
    std::size_t read_pause_bytes = 64u << 10;  // queued replies above which input is not read
    // How long a client may leave its replies unread (input paused, no output written) before
    // it is disconnected.
    std::chrono::milliseconds stall_timeout{30000};
    std::size_t max_clients = 64;              // per server, over all its sockets
};

class QmpServer {
public:
    QmpServer(boost::asio::io_context& io, QmpDomain& domain, QmpServerOptions options = {});
    QmpServer(const QmpServer&) = delete;
    QmpServer& operator=(const QmpServer&) = delete;
    // Closes every socket at once (no flush) and removes the socket files.
    ~QmpServer();

    // Binds a unix socket at `path` (mode 0600, a stale socket file is replaced) and accepts
    // clients on it. May be called for several paths (the anchor serves `qmp` and
    // `listener.qmp`; both are full monitors). Throws std::system_error naming the path.
    void listen(const std::string& path);
    // Serves one already-connected stream socket (a socketpair end, an fd from vmmd).
    void serve(Fd connected);

    // Broadcasts {"timestamp": .., "event": name, "data": data} to every negotiated client
    // ("data" left out when null). Thread-safe; the timestamp is taken at the call.
    void emit(const std::string& name, Json data = nullptr);

    // Stops accepting, removes the socket files, and closes every client once its queued
    // output is written (at most ~1 s later). Keep running the io_context to let it flush.
    void close();

    // Connected clients (io_context thread only; for tests and logs).
    std::size_t client_count() const;
    // Bytes held for all clients: queued output plus input of messages in progress
    // (io_context thread only; for tests and logs).
    std::size_t buffered_bytes() const;

    class Impl;

private:
    std::shared_ptr<Impl> impl_;
};

}  // namespace vmm::qmp
