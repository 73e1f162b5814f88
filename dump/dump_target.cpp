#include "dump/dump_target.h"

#include "common/error.h"
#include "dump/guest_core_writer.h"

#include <fcntl.h>

#include <chrono>
#include <condition_variable>
#include <mutex>

namespace vmm::dump {

DumpProtocol parse_dump_protocol(std::string_view protocol) {
    constexpr std::string_view kFile = "file:";
    constexpr std::string_view kFd = "fd:";
    DumpProtocol p;
    if (protocol.starts_with(kFile)) {
        p.kind = DumpProtocol::Kind::file;
        p.value = protocol.substr(kFile.size());
        if (p.value.empty()) throw Error("dump-guest-memory: protocol 'file:' needs a path");
    } else if (protocol.starts_with(kFd)) {
        p.kind = DumpProtocol::Kind::fd;
        p.value = protocol.substr(kFd.size());
        if (p.value.empty()) throw Error("dump-guest-memory: protocol 'fd:' needs a descriptor name");
    } else {
        throw Error("dump-guest-memory: invalid protocol '" + std::string(protocol) +
                    "', expected 'file:PATH' or 'fd:NAME'");
    }
    return p;
}

Fd open_dump_file(const std::string& path, std::stop_token stop) {
    using namespace std::chrono_literals;
    std::mutex m;
    std::condition_variable_any cv;
    for (;;) {
        if (stop.stop_requested()) throw DumpCancelled();
        const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NONBLOCK, 0600);
        if (fd >= 0) return Fd(fd);
        if (errno == EINTR) continue;
        // ENXIO: a FIFO that no process has open for reading (fifo(7)); wait for the reader.
        if (errno != ENXIO) throw_errno("open dump file '" + path + "'");
        std::unique_lock lock(m);
        cv.wait_for(lock, stop, 20ms, [] { return false; });
    }
}

}  // namespace vmm::dump
