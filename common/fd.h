// Fd: the one owning file-descriptor type of the project.
// Move-only, closes on destruction; a borrowed fd is a plain int.
#pragma once

#include <utility>

namespace vmm {

class Fd {
public:
    Fd() = default;
    explicit Fd(int fd) noexcept : fd_(fd) {}
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    Fd& operator=(Fd&& other) noexcept {
        if (this != &other) {
            reset();
            fd_ = std::exchange(other.fd_, -1);
        }
        return *this;
    }
    ~Fd() { reset(); }

    int get() const noexcept { return fd_; }
    bool valid() const noexcept { return fd_ >= 0; }
    explicit operator bool() const noexcept { return valid(); }
    int release() noexcept { return std::exchange(fd_, -1); }
    void reset() noexcept;

private:
    int fd_ = -1;
};

// open(2) with O_CLOEXEC; throws std::system_error naming the path.
Fd open_fd(const char* path, int flags, unsigned mode = 0);
// eventfd(2) with EFD_CLOEXEC | extra_flags; throws on failure.
Fd make_eventfd(int extra_flags = 0);
// Adds 1 to the eventfd `fd`, waking whoever waits on it. Best effort, never fails: a
// counter that is full already wakes its reader.
void signal_eventfd(int fd) noexcept;
// A close-on-exec duplicate of `fd` (F_DUPFD_CLOEXEC); throws on failure.
Fd dup_fd(int fd);

}  // namespace vmm
