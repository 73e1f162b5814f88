#include "vmctl/console.h"

#include "common/error.h"
#include "common/fd.h"

#include <fcntl.h>
#include <poll.h>
#include <termios.h>
#include <unistd.h>

namespace vmm::vmctl {

namespace {

// Restores the terminal's mode on every way out.
class RawMode {
public:
    explicit RawMode(int fd) : fd_(fd) {
        if (!::isatty(fd) || ::tcgetattr(fd, &saved_) < 0) return;
        termios raw = saved_;
        ::cfmakeraw(&raw);
        if (::tcsetattr(fd, TCSANOW, &raw) == 0) active_ = true;
    }
    ~RawMode() {
        if (active_) ::tcsetattr(fd_, TCSANOW, &saved_);
    }
    RawMode(const RawMode&) = delete;
    RawMode& operator=(const RawMode&) = delete;

private:
    int fd_;
    termios saved_{};
    bool active_ = false;
};

bool write_all(int fd, const char* data, std::size_t len) {
    while (len > 0) {
        const ssize_t n = ::write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        data += n;
        len -= static_cast<std::size_t>(n);
    }
    return true;
}

}  // namespace

std::string attach_console(const std::string& pty_path, int in_fd, int out_fd) {
    Fd pty = open_fd(pty_path.c_str(), O_RDWR | O_NOCTTY);
    RawMode raw(in_fd);
    char buf[4096];
    for (;;) {
        pollfd fds[2] = {{in_fd, POLLIN, 0}, {pty.get(), POLLIN, 0}};
        if (::poll(fds, 2, -1) < 0) {
            if (errno == EINTR) continue;
            throw_errno("poll on the console");
        }
        if (fds[1].revents & POLLIN) {
            const ssize_t n = ::read(pty.get(), buf, sizeof buf);
            if (n <= 0) return "console closed";
            if (!write_all(out_fd, buf, static_cast<std::size_t>(n))) return "output closed";
        } else if (fds[1].revents & (POLLHUP | POLLERR)) {
            return "console closed";
        }
        if (fds[0].revents & (POLLIN | POLLHUP)) {
            const ssize_t n = ::read(in_fd, buf, sizeof buf);
            if (n <= 0) return "input closed";
            for (ssize_t i = 0; i < n; ++i) {
                if (buf[i] == kDetachKey) {
                    write_all(pty.get(), buf, static_cast<std::size_t>(i));
                    return "detached";
                }
            }
            if (!write_all(pty.get(), buf, static_cast<std::size_t>(n))) return "console closed";
        }
    }
}

}  // namespace vmm::vmctl
