// Reads a small text file (/proc and /sys values, pid files) with open/read: no iostreams, whose
// first use sets up the C++ locale (40k instructions of an anchor's start, issue #8).
#pragma once

#include "common/fd.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <optional>
#include <string>

namespace vmm {

// The file's first `max` bytes, or nullopt if it cannot be opened or read.
inline std::optional<std::string> read_small_file(const std::string& path, std::size_t max = 4096) {
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return std::nullopt;
    std::string out(max, '\0');
    std::size_t got = 0;
    while (got < max) {
        const ssize_t n = ::read(fd.get(), out.data() + got, max - got);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return std::nullopt;
        if (n == 0) break;
        got += static_cast<std::size_t>(n);
    }
    out.resize(got);
    return out;
}

// A non-negative decimal number at the start of a small file (surrounding whitespace allowed);
// nullopt when there is none.
inline std::optional<long long> read_small_number(const std::string& path) {
    const auto text = read_small_file(path, 64);
    if (!text) return std::nullopt;
    std::size_t i = text->find_first_not_of(" \t\n");
    if (i == std::string::npos || (*text)[i] < '0' || (*text)[i] > '9') return std::nullopt;
    long long v = 0;
    for (; i < text->size() && (*text)[i] >= '0' && (*text)[i] <= '9'; ++i) {
        if (v > (1LL << 53)) return std::nullopt;
        v = v * 10 + ((*text)[i] - '0');
    }
    return v;
}

}  // namespace vmm
