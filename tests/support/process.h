// Runs a program as a child with captured stdout/stderr and a deadline (tests only).
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <thread>
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

// run_process on a thread of its own, for a process the test talks to meanwhile (an anchor it
// drives through QMP); finish() waits for it and returns what run_process did. The destructor
// waits too (the timeout bounds it).
class BackgroundProcess {
public:
    BackgroundProcess() = default;
    BackgroundProcess(const BackgroundProcess&) = delete;
    BackgroundProcess& operator=(const BackgroundProcess&) = delete;
    ~BackgroundProcess() {
        if (thread_.joinable()) thread_.join();
    }
    void start(std::vector<std::string> argv, std::chrono::milliseconds timeout) {
        thread_ = std::thread([this, argv = std::move(argv), timeout] { result_ = run_process(argv, timeout); });
    }
    ProcessResult finish() {
        if (thread_.joinable()) thread_.join();
        return result_;
    }

private:
    std::thread thread_;
    ProcessResult result_;
};

}  // namespace vmm::test
