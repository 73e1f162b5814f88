#include "anchor/console_log.h"

#include "common/error.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

namespace vmm::anchor {

ConsoleLog::ConsoleLog(std::string path, std::uint64_t cap) : path_(std::move(path)), cap_(cap == 0 ? 1 : cap) {
    fd_ = open_fd(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
}

void ConsoleLog::rotate() {
    const std::string old = path_ + ".0";
    ::rename(path_.c_str(), old.c_str());
    Fd fresh(::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600));
    if (fresh) fd_ = std::move(fresh);
    size_ = 0;
}

void ConsoleLog::append(std::span<const std::uint8_t> bytes) {
    while (!bytes.empty()) {
        if (size_ >= cap_) rotate();
        const std::size_t room = static_cast<std::size_t>(cap_ - size_);
        const std::size_t n = bytes.size() < room ? bytes.size() : room;
        const ssize_t w = ::write(fd_.get(), bytes.data(), n);
        if (w <= 0) return;  // full disk or a removed file: the guest is not held up for its log
        size_ += static_cast<std::uint64_t>(w);
        bytes = bytes.subspan(static_cast<std::size_t>(w));
    }
}

}  // namespace vmm::anchor
