// Console: where the guest's serial console goes. Two backends:
//   stdio  guest output to stdout, input from stdin (when it is a terminal, pipe or socket)
//   pty    a pseudo-terminal; its slave path is linked as <state-dir>/cons
// write() is called on vCPU threads and never blocks on a pty nobody reads: bytes the pty
// cannot take now wait in a bounded buffer (oldest dropped past kPendingMax) and go out on the
// next write or flush(); with the pty's own buffer that is what a client attaching later
// sees first. Every byte is also copied to the log (set_log), if any. Input is read by the main loop from input_fd().
#pragma once

#include "anchor/console_log.h"
#include "common/fd.h"

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <string>

namespace vmm::anchor {

class Console {
public:
    static constexpr std::size_t kPendingMax = 64 * 1024;

    static std::unique_ptr<Console> make_stdio();
    static std::unique_ptr<Console> make_pty();

    // Also copy every byte to a capped log file (console.log in the state directory).
    void set_log(std::unique_ptr<ConsoleLog> log);

    void write(std::span<const std::uint8_t> bytes);
    void flush();
    // -1 when there is no input to read.
    int input_fd() const noexcept { return input_.get(); }
    // The pty's slave path ("" for stdio).
    const std::string& pty_path() const noexcept { return pty_path_; }

private:
    Console() = default;
    void flush_locked();

    std::mutex mutex_;
    Fd output_;       // stdout dup or pty master
    Fd input_;        // stdin dup or pty master dup
    Fd pty_slave_;    // held open so the pty survives clients coming and going
    std::string pty_path_;
    bool nonblocking_ = false;
    std::deque<std::uint8_t> pending_;
    std::unique_ptr<ConsoleLog> log_;
};

}  // namespace vmm::anchor
