#include "vmctl/api_client.h"

#include "common/error.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

namespace vmm::vmctl {

ApiClient::ApiClient(const std::string& socket_path) : path_(socket_path) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (socket_path.size() >= sizeof addr.sun_path) throw Error("socket path too long: " + socket_path);
    std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
    fd_ = Fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd_) throw_errno("socket");
    // addr is a fully initialised sockaddr_un; the kernel reads sizeof(addr) bytes of it.
    if (::connect(fd_.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) < 0)
        throw Error("cannot reach vmmd at " + socket_path + ": " + std::strerror(errno) + " (is vmmd running? --socket)");
}

nlohmann::json ApiClient::call(const nlohmann::json& request) {
    const std::string line = request.dump() + "\n";
    std::size_t sent = 0;
    while (sent < line.size()) {
        const ssize_t n = ::send(fd_.get(), line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw_errno("send to vmmd at " + path_);
        }
        sent += static_cast<std::size_t>(n);
    }
    for (;;) {
        const auto nl = pending_.find('\n');
        if (nl != std::string::npos) {
            const std::string reply = pending_.substr(0, nl);
            pending_.erase(0, nl + 1);
            try {
                return nlohmann::json::parse(reply);
            } catch (const nlohmann::json::exception& e) {
                throw Error(std::string("vmmd sent a reply that is not JSON: ") + e.what());
            }
        }
        char buf[4096];
        const ssize_t n = ::recv(fd_.get(), buf, sizeof buf, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw_errno("recv from vmmd at " + path_);
        }
        if (n == 0) throw Error("vmmd at " + path_ + " closed the connection before replying");
        pending_.append(buf, static_cast<std::size_t>(n));
    }
}

}  // namespace vmm::vmctl
