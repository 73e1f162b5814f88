#include "dump/guest_core_writer.h"

#include "common/fd.h"
#include "dump/guest_core_layout.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <optional>
#include <string>

namespace vmm::dump {
namespace {

// Blocks SIGPIPE on this thread for its lifetime, so write(2) to a closed pipe fails with EPIPE;
// a SIGPIPE that became pending meanwhile (it is directed at this thread) is consumed before
// the old mask comes back, so it is never delivered.
class SigpipeBlock {
public:
    SigpipeBlock() {
        ::sigemptyset(&set_);
        ::sigaddset(&set_, SIGPIPE);
        sigset_t pending;
        ::sigpending(&pending);
        was_pending_ = ::sigismember(&pending, SIGPIPE) == 1;
        ::pthread_sigmask(SIG_BLOCK, &set_, &old_);
    }
    SigpipeBlock(const SigpipeBlock&) = delete;
    SigpipeBlock& operator=(const SigpipeBlock&) = delete;
    ~SigpipeBlock() {
        const int saved_errno = errno;
        if (!was_pending_ && !::sigismember(&old_, SIGPIPE)) {
            sigset_t pending;
            ::sigpending(&pending);
            if (::sigismember(&pending, SIGPIPE) == 1) {
                const timespec zero{};
                while (::sigtimedwait(&set_, nullptr, &zero) < 0 && errno == EINTR) {
                }
            }
        }
        ::pthread_sigmask(SIG_SETMASK, &old_, nullptr);
        errno = saved_errno;
    }

private:
    sigset_t set_{};
    sigset_t old_{};
    bool was_pending_ = false;
};

// Sequential writes that resume after short writes and EINTR, and wait in poll(2) for a full
// non-blocking fd, waking early when the stop token fires (through an eventfd).
class SequentialWriter {
public:
    SequentialWriter(int fd, std::stop_token stop) : fd_(fd), stop_(std::move(stop)) {
        if (stop_.stop_possible()) {
            wake_ = make_eventfd();
            on_stop_.emplace(stop_, [fd = wake_.get()] { signal_eventfd(fd); });
        }
    }

    void write_all(const std::uint8_t* p, std::size_t n) {
        while (n > 0) {
            if (stop_.stop_requested()) throw DumpCancelled();
            const ssize_t w = ::write(fd_, p, n);
            if (w > 0) {
                p += w;
                n -= static_cast<std::size_t>(w);
            } else if (w < 0 && errno == EINTR) {
                continue;
            } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                wait_writable();
            } else if (w == 0) {
                throw std::system_error(EIO, std::generic_category(), "write to dump target wrote nothing");
            } else {
                throw_errno("write to dump target");
            }
        }
    }

private:
    void wait_writable() {
        pollfd fds[2] = {{fd_, POLLOUT, 0}, {wake_.get(), POLLIN, 0}};
        const nfds_t count = wake_.valid() ? 2 : 1;
        for (;;) {
            const int r = ::poll(fds, count, -1);
            if (r >= 0) break;
            if (errno != EINTR) throw_errno("poll on dump target");
        }
        // POLLERR/POLLHUP on the target: the next write reports the error (EPIPE).
        if (count == 2 && (fds[1].revents & POLLIN)) throw DumpCancelled();
    }

    int fd_;
    std::stop_token stop_;
    Fd wake_;
    std::optional<std::stop_callback<std::function<void()>>> on_stop_;
};

}  // namespace

std::uint64_t write_guest_core(int fd, const GuestMemory& memory, std::span<const VcpuDumpState> vcpus,
                               const DumpProgress& progress, std::stop_token stop) {
    const GuestCoreLayout layout = compute_guest_core_layout(memory, vcpus.size());
    const std::vector<std::uint8_t> headers = build_guest_core_headers(layout, vcpus);

    SigpipeBlock sigpipe_blocked;
    SequentialWriter out(fd, std::move(stop));
    std::uint64_t completed = 0;
    if (progress) progress(0, layout.memory_size);
    out.write_all(headers.data(), headers.size());

    for (const CoreLoadSegment& seg : layout.loads) {
        for (std::uint64_t done = 0; done < seg.size;) {
            const std::uint64_t len = std::min<std::uint64_t>(kDumpChunkSize, seg.size - done);
            const auto bytes = memory.span(seg.gpa + done, len);
            // The layout was built from these regions, so every chunk lies inside one.
            if (!bytes) throw Error("guest core: guest memory changed during the dump");
            out.write_all(bytes->data(), bytes->size());
            done += len;
            completed += len;
            if (progress) progress(completed, layout.memory_size);
        }
    }
    return layout.file_size;
}

}  // namespace vmm::dump
