#include "common/fd.h"

#include "common/error.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdint>
#include <string>

namespace vmm {

void Fd::reset() noexcept {
    if (fd_ >= 0) {
        ::close(fd_);
        fd_ = -1;
    }
}

Fd open_fd(const char* path, int flags, unsigned mode) {
    int fd = ::open(path, flags | O_CLOEXEC, mode);
    if (fd < 0) throw_errno(std::string("open ") + path);
    return Fd(fd);
}

Fd make_eventfd(int extra_flags) {
    int fd = ::eventfd(0, EFD_CLOEXEC | extra_flags);
    if (fd < 0) throw_errno("eventfd");
    return Fd(fd);
}

void signal_eventfd(int fd) noexcept {
    const std::uint64_t one = 1;
    [[maybe_unused]] const ssize_t n = ::write(fd, &one, sizeof one);
}

Fd dup_fd(int fd) {
    const int dup = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dup < 0) throw_errno("dup fd");
    return Fd(dup);
}

}  // namespace vmm
