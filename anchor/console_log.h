// ConsoleLog: a copy of everything the guest printed on its serial console, in
// <state-dir>/console.log, capped: when the file would pass `cap` bytes it is renamed to
// console.log.0 (replacing the previous one) and a new file is started, so the log never
// takes more than twice the cap. Write errors (a full disk) drop log bytes, never block the
// guest. Called under the Console's lock (vCPU threads).
#pragma once

#include "common/fd.h"

#include <cstdint>
#include <span>
#include <string>

namespace vmm::anchor {

class ConsoleLog {
public:
    static constexpr std::uint64_t kDefaultCap = 1 << 20;

    // Creates (truncates) the file, mode 0600. Throws std::system_error on failure.
    ConsoleLog(std::string path, std::uint64_t cap = kDefaultCap);

    void append(std::span<const std::uint8_t> bytes);
    const std::string& path() const noexcept { return path_; }

private:
    void rotate();

    std::string path_;
    std::uint64_t cap_;
    std::uint64_t size_ = 0;
    Fd fd_;
};

}  // namespace vmm::anchor
