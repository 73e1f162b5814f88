// Attaching a terminal to a domain's console pty (<state-dir>/cons): raw mode on the terminal,
// bytes copied both ways, Ctrl-] (0x1d) detaches. Runs on vmctl's main thread.
#pragma once

#include <string>

namespace vmm::vmctl {

inline constexpr char kDetachKey = 0x1d;  // Ctrl-]

// Copies in_fd -> pty and pty -> out_fd until the detach key arrives on in_fd, in_fd reaches
// EOF or the pty closes (the domain stopped). When in_fd is a terminal it is put in raw mode
// and restored on return. Returns a reason: "detached", "input closed", "console closed".
// Throws std::system_error if the pty cannot be opened.
std::string attach_console(const std::string& pty_path, int in_fd, int out_fd);

}  // namespace vmm::vmctl
