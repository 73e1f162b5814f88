// Runs a helper program (xl) to completion and collects its output. Blocking: used for short
// commands on vmmd's io_context thread. Thread-safe.
#pragma once

#include <string>
#include <vector>

namespace vmm::hv {

struct CommandResult {
    int status = -1;  // exit status, 128+signal
    std::string out, err;
};

// argv[0] is looked up on PATH. Throws std::system_error if it cannot be started.
CommandResult run_command(const std::vector<std::string>& argv);

}  // namespace vmm::hv
