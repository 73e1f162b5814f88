// Where dump-guest-memory writes: its `protocol` argument ("file:PATH" or "fd:NAME", QEMU's
// qapi/dump.json) and opening a file: target.
// parse_dump_protocol runs on the QMP thread; open_dump_file on the dump thread, because opening
// a FIFO for writing blocks until a reader opens it.
#pragma once

#include "common/fd.h"

#include <stop_token>
#include <string>
#include <string_view>

namespace vmm::dump {

struct DumpProtocol {
    enum class Kind { file, fd };
    Kind kind = Kind::file;
    std::string value;  // file: the path; fd: the name given to QMP getfd
};

// Throws vmm::Error with a message fit for a QMP error reply on an unknown prefix or an empty
// path or name.
DumpProtocol parse_dump_protocol(std::string_view protocol);

// Opens `path` with O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, mode 0600, plus O_NONBLOCK so that writes
// to a full FIFO can be cancelled (guest_core_writer.h). A FIFO with no reader yet (ENXIO) is
// retried every 20 ms until a reader opens it, like QEMU's blocking open, but ends with
// DumpCancelled when `stop` is requested. Throws std::system_error naming the path otherwise.
Fd open_dump_file(const std::string& path, std::stop_token stop = {});

}  // namespace vmm::dump
