#include "anchor/console.h"

#include "common/error.h"

#include <fcntl.h>
#include <pty.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <vector>

namespace vmm::anchor {

std::unique_ptr<Console> Console::make_stdio() {
    std::unique_ptr<Console> c(new Console());
    c->output_ = Fd(::fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 0));
    if (!c->output_) throw_errno("dup stdout");
    struct stat st{};
    // Only stream-like stdin can be watched by the main loop (epoll refuses files and /dev/null).
    if (::fstat(STDIN_FILENO, &st) == 0 && (isatty(STDIN_FILENO) || S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode))) {
        c->input_ = Fd(::fcntl(STDIN_FILENO, F_DUPFD_CLOEXEC, 0));
    }
    return c;
}

std::unique_ptr<Console> Console::make_pty() {
    std::unique_ptr<Console> c(new Console());
    int master = -1, slave = -1;
    char name[256];
    if (::openpty(&master, &slave, name, nullptr, nullptr) < 0) throw_errno("openpty");
    c->output_ = Fd(master);
    c->pty_slave_ = Fd(slave);
    ::fcntl(master, F_SETFD, FD_CLOEXEC);
    ::fcntl(slave, F_SETFD, FD_CLOEXEC);
    // Raw: the guest's bytes reach screen/socat unchanged, and no echo back into the guest.
    termios t{};
    if (::tcgetattr(slave, &t) == 0) {
        ::cfmakeraw(&t);
        ::tcsetattr(slave, TCSANOW, &t);
    }
    ::fcntl(master, F_SETFL, ::fcntl(master, F_GETFL) | O_NONBLOCK);
    c->nonblocking_ = true;
    c->input_ = Fd(::fcntl(master, F_DUPFD_CLOEXEC, 0));
    c->pty_path_ = name;
    return c;
}

void Console::flush_locked() {
    while (!pending_.empty()) {
        std::uint8_t chunk[4096];
        std::size_t n = 0;
        for (auto it = pending_.begin(); it != pending_.end() && n < sizeof chunk; ++it) chunk[n++] = *it;
        const ssize_t w = ::write(output_.get(), chunk, n);
        if (w <= 0) return;  // EAGAIN (nobody reading) or an error: keep the bytes for later
        pending_.erase(pending_.begin(), pending_.begin() + w);
    }
}

void Console::flush() {
    std::lock_guard lock(mutex_);
    flush_locked();
}

void Console::set_log(std::unique_ptr<ConsoleLog> log) {
    std::lock_guard lock(mutex_);
    log_ = std::move(log);
}

void Console::write(std::span<const std::uint8_t> bytes) {
    std::lock_guard lock(mutex_);
    if (log_) log_->append(bytes);
    if (!nonblocking_) {
        // stdout belongs to the user's terminal or a pipe the caller reads: plain writes.
        std::size_t off = 0;
        while (off < bytes.size()) {
            const ssize_t w = ::write(output_.get(), bytes.data() + off, bytes.size() - off);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) return;
            off += static_cast<std::size_t>(w);
        }
        return;
    }
    pending_.insert(pending_.end(), bytes.begin(), bytes.end());
    if (pending_.size() > kPendingMax) pending_.erase(pending_.begin(), pending_.begin() + (pending_.size() - kPendingMax));
    flush_locked();
}

}  // namespace vmm::anchor
