// Runs a program as a child with captured stdout/stderr and a deadline (tests only).
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace vmm::test {

struct ProcessResult {
    int exit_status = -1;  // exit code, or 128+signal
    bool timed_out = false;
    std::string out, err;
};

// Runs argv until it exits or `timeout` passes (then SIGKILL). If `until` is given, it is
// called with the stdout collected so far; returning true sends SIGTERM to the child.
ProcessResult run_process(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                          const std::function<bool(const std::string&)>& until = {});

}  // namespace vmm::test
