// QmpDomain: what the QMP server needs from the domain it controls. vmm-anchor implements it
// (tests use qmp/fake_domain.h). The server calls every method on its io_context thread, one
// at a time, and sends the reply when the method returns, so:
//  - cont() returns once the vCPUs have been told to run (QEMU: RESUME, then the reply);
//  - stop() returns only after every vCPU is parked (pillar relies on "stop" meaning stopped);
//  - quit() starts the shutdown and returns; the reply is sent before the anchor exits, as long
//    as the io_context keeps running until QmpServer::close() has flushed.
// Methods throw qmp::CommandError{class, desc} for a refused command (e.g. cont on a domain
// that needs a reset). Any other exception becomes a GenericError reply with its what().
// Events (STOP, RESUME, ...) are the implementation's to emit via QmpServer::emit(); emitting
// from inside these methods puts the event before the reply, as QEMU does.
#pragma once

#include "common/fd.h"
#include "qmp/command_error.h"
#include "qmp/json_stream.h"

#include <string>

namespace vmm::qmp {

class QmpDomain {
public:
    virtual ~QmpDomain() = default;

    // query-name: empty means "no name" ({} as QEMU without -name).
    virtual std::string name() const = 0;
    // QEMU's RunState string (qapi/run-state.json): "prelaunch", "running", "paused",
    // "shutdown", "internal-error", "guest-panicked", "suspended", ...
    virtual std::string run_state() const = 0;

    virtual void stop() = 0;
    virtual void cont() = 0;
    virtual void system_reset() = 0;
    virtual void system_powerdown() = 0;
    virtual void quit() = 0;

    // The "return" values of query-cpus-fast, query-block and query-chardev, in QEMU's
    // schema (arrays of CpuInfoFast, BlockInfo, ChardevInfo).
    virtual Json query_cpus_fast() const = 0;
    virtual Json query_block() const = 0;
    virtual Json query_chardev() const = 0;

    // dump-guest-memory (QEMU's qapi/dump.json) with the arguments as given (paging, protocol,
    // and the optional detach, begin, length, format); the dispatcher has checked their types.
    // For protocol "fd:NAME" `target` is the descriptor the client named with getfd (the
    // dispatcher looked it up); for "file:PATH" it is empty. Progress is query_dump()'s, the
    // end is the DUMP_COMPLETED event. A domain without guest memory refuses it.
    virtual void dump_guest_memory(const Json& args, Fd target) {
        (void)args;
        (void)target;
        throw CommandError(kGenericError, "this domain has no guest memory to dump");
    }
    // query-dump's DumpQueryResult: {"status": "none"|"active"|"completed"|"failed",
    // "completed": N, "total": N}.
    virtual Json query_dump() const { return Json{{"status", "none"}, {"completed", 0}, {"total", 0}}; }
};

}  // namespace vmm::qmp
