// QmpClient: a small blocking QMP client over a unix socket, for vmmd (graceful stop/pause:
// system_powerdown, quit, query-status) and for tests. It speaks to vmm-anchor and to QEMU
// alike: it reads the greeting, negotiates capabilities (qmp_capabilities), sends commands
// with an integer id and matches the reply by that id; events that arrive meanwhile are
// queued for next_event().
//
// Blocking, no threads of its own; one instance is used by one thread at a time. Errors:
// an error reply throws qmp::CommandError (class, desc); a deadline throws qmp::TimeoutError;
// a closed or broken connection, or a peer that does not speak QMP, throws vmm::Error.
#pragma once

#include "common/error.h"
#include "common/fd.h"
#include "qmp/command_error.h"
#include "qmp/json_stream.h"

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vmm::qmp {

class TimeoutError : public vmm::Error {
public:
    using vmm::Error::Error;
};

class QmpClient {
public:
    using Clock = std::chrono::steady_clock;

    // Connects to `path` (retrying while the socket does not exist yet or refuses, until
    // `timeout`), reads the greeting and, if `negotiate`, runs qmp_capabilities.
    explicit QmpClient(const std::string& path,
                       std::chrono::milliseconds timeout = std::chrono::seconds(5),
                       bool negotiate = true);
    QmpClient(QmpClient&&) noexcept = default;
    QmpClient& operator=(QmpClient&&) noexcept = default;

    // The greeting as received: {"QMP": {"version": ..., "capabilities": [...]}}.
    const Json& greeting() const noexcept { return greeting_; }

    // Runs `command` and returns its "return" value; throws CommandError on an error reply.
    Json execute(const std::string& command, const Json& arguments = Json::object(),
                 std::chrono::milliseconds timeout = std::chrono::seconds(10));

    // The same, with descriptors passed along the request (SCM_RIGHTS), as QEMU's getfd and
    // add-fd expect them: execute_passing_fds("getfd", {{"fdname", "dump"}}, {fd}). The caller
    // keeps its own copies.
    Json execute_passing_fds(const std::string& command, const Json& arguments, const std::vector<int>& fds,
                             std::chrono::milliseconds timeout = std::chrono::seconds(10));

    // The next event ({"event": ..., "timestamp": ..., "data"?: ...}): a queued one, or one
    // arriving within `timeout`; nullopt on timeout. Throws vmm::Error if the peer closes.
    std::optional<Json> next_event(std::chrono::milliseconds timeout);

    // Low level, for tests: sends bytes as they are; reads the next message of any kind
    // (reply, error or event), bypassing the event queue; nullopt on timeout.
    // `fds` go with the first bytes sent.
    void send_raw(std::string_view bytes, std::chrono::milliseconds timeout = std::chrono::seconds(5),
                  const std::vector<int>& fds = {});
    std::optional<Json> read_message(std::chrono::milliseconds timeout);

    int fd() const noexcept { return fd_.get(); }

private:
    // Reads until a message is available or `deadline`; false on timeout.
    bool fill(Clock::time_point deadline);

    Fd fd_;
    JsonStream stream_;
    std::deque<Json> messages_;  // received, not yet consumed
    std::deque<Json> events_;    // events seen while waiting for a reply
    Json greeting_;
    std::int64_t next_id_ = 1;
};

}  // namespace vmm::qmp
