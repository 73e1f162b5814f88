// QmpClient (see qmp_client.h). Blocking I/O with poll(2) deadlines; caller's thread only.
#include "qmp/qmp_client.h"

#include "common/scm_rights.h"
#include "qmp/json_writer.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <thread>
#include <vector>

namespace vmm::qmp {

namespace {

using Clock = QmpClient::Clock;

int remaining_ms(Clock::time_point deadline) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    return static_cast<int>(std::clamp<long long>(left, 0, 1'000'000));
}

// Replies can be large (query-commands, query-block on a big domain): a generous bound.
JsonLimits client_limits() {
    JsonLimits l;
    l.max_message_bytes = 64u << 20;
    l.max_tokens = 1u << 22;
    return l;
}

Fd connect_unix(const std::string& path, Clock::time_point deadline) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof(addr.sun_path)) throw vmm::Error("QMP socket path too long: " + path);
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    for (;;) {
        Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        if (!fd) throw_errno("socket(AF_UNIX) for " + path);
        // A unix stream connect completes or fails at once; EAGAIN means a full backlog.
        if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0) {
            return fd;
        }
        const int err = errno;
        const bool retry = err == ENOENT || err == ECONNREFUSED || err == EAGAIN;
        if (!retry) throw_errno("connect " + path, err);
        if (Clock::now() >= deadline) {
            throw TimeoutError("QMP connect " + path + ": " + std::strerror(err));
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
}

}  // namespace

QmpClient::QmpClient(const std::string& path, std::chrono::milliseconds timeout, bool negotiate)
    : stream_(client_limits()) {
    const auto deadline = Clock::now() + timeout;
    fd_ = connect_unix(path, deadline);
    if (!fill(deadline)) throw TimeoutError("QMP " + path + ": no greeting");
    greeting_ = std::move(messages_.front());
    messages_.pop_front();
    if (!greeting_.is_object() || !greeting_.contains("QMP")) {
        throw vmm::Error("QMP " + path + ": not a QMP greeting: " + to_qmp_text(greeting_));
    }
    if (negotiate) {
        const auto left = std::chrono::milliseconds(std::max(remaining_ms(deadline), 1));
        execute("qmp_capabilities", Json::object(), left);
    }
}

Json QmpClient::execute(const std::string& command, const Json& arguments,
                        std::chrono::milliseconds timeout) {
    return execute_passing_fds(command, arguments, {}, timeout);
}

Json QmpClient::execute_passing_fds(const std::string& command, const Json& arguments, const std::vector<int>& fds,
                                    std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    const std::int64_t id = next_id_++;
    Json request = {{"execute", command}};
    if (!arguments.is_null() && !(arguments.is_object() && arguments.empty())) {
        request["arguments"] = arguments;
    }
    request["id"] = id;
    send_raw(to_qmp_line(request), timeout, fds);
    for (;;) {
        while (!messages_.empty()) {
            Json m = std::move(messages_.front());
            messages_.pop_front();
            if (m.contains("event")) {
                events_.push_back(std::move(m));
                continue;
            }
            // A greeting again answers nothing. Seen from QEMU 7.2 in CI: a client that connected
            // while QEMU was still starting got a second greeting after its negotiation.
            if (m.is_object() && m.contains("QMP")) continue;
            // A reply without id answers a request the server could not read an id from;
            // ours always carry one, so it can only be ours (QMP replies come in order).
            if (m.contains("id") && m["id"] != Json(id)) continue;  // a stale reply
            if (m.contains("error")) {
                const Json& e = m["error"];
                throw CommandError(e.value("class", std::string(kGenericError)),
                                   e.value("desc", std::string()));
            }
            if (m.contains("return")) return m["return"];
            throw vmm::Error("QMP: unexpected message: " + to_qmp_text(m));
        }
        if (!fill(deadline)) throw TimeoutError("QMP " + command + ": no reply in time");
    }
}

std::optional<Json> QmpClient::next_event(std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
        if (!events_.empty()) {
            Json e = std::move(events_.front());
            events_.pop_front();
            return e;
        }
        while (!messages_.empty()) {
            Json m = std::move(messages_.front());
            messages_.pop_front();
            if (m.contains("event")) return m;
            // A reply nobody waits for (e.g. after a timed-out execute) is dropped.
        }
        if (!fill(deadline)) return std::nullopt;
    }
}

void QmpClient::send_raw(std::string_view bytes, std::chrono::milliseconds timeout, const std::vector<int>& fds) {
    const auto deadline = Clock::now() + timeout;
    bool fds_sent = fds.empty();
    std::vector<char> control;
    while (!bytes.empty()) {
        iovec iov{const_cast<char*>(bytes.data()), bytes.size()};
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        if (!fds_sent) attach_fds(msg, control, fds);
        const ssize_t n = ::sendmsg(fd_.get(), &msg, MSG_NOSIGNAL);
        if (n > 0) {
            fds_sent = true;  // they went with the first byte
            bytes.remove_prefix(static_cast<std::size_t>(n));
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) {
            throw vmm::Error("QMP: connection closed by peer");
        }
        if (n < 0 && errno != EAGAIN) throw_errno("QMP send");
        pollfd p{fd_.get(), POLLOUT, 0};
        if (::poll(&p, 1, remaining_ms(deadline)) == 0) throw TimeoutError("QMP send: peer does not read");
    }
}

std::optional<Json> QmpClient::read_message(std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    if (messages_.empty() && !fill(deadline)) return std::nullopt;
    Json m = std::move(messages_.front());
    messages_.pop_front();
    return m;
}

bool QmpClient::fill(Clock::time_point deadline) {
    std::vector<JsonStream::Item> items;
    char buf[16384];
    while (messages_.empty()) {
        pollfd p{fd_.get(), POLLIN, 0};
        const int r = ::poll(&p, 1, remaining_ms(deadline));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) throw_errno("QMP poll");
        if (r == 0) return false;
        const ssize_t n = ::recv(fd_.get(), buf, sizeof(buf), 0);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n < 0 && errno == ECONNRESET) throw vmm::Error("QMP: connection reset by peer");
        if (n < 0) throw_errno("QMP recv");
        if (n == 0) throw vmm::Error("QMP: connection closed by peer");
        items.clear();
        stream_.feed(std::string_view(buf, static_cast<std::size_t>(n)), items);
        for (auto& item : items) {
            if (!item.ok()) throw vmm::Error("QMP: peer sent invalid JSON: " + item.error);
            messages_.push_back(std::move(*item.value));
        }
    }
    return true;
}

}  // namespace vmm::qmp
