// Watching an anchor from the outside (tests only): its pid file and /proc/PID/status.
#pragma once

#include <string>

namespace vmm::test {

// Waits (bounded, 10 s) until <state_dir>/pid holds a pid; -1 when none appears.
int wait_pid_file(const std::string& state_dir);

// A line of /proc/PID/status ("Seccomp:\t2"), or "" when absent.
std::string proc_status_line(int pid, const std::string& key);

// Waits (bounded, 5 s) until /proc/PID/status shows `want` for `key` (the anchor's jail step
// comes a moment after its QMP sockets appear); returns the last line seen.
std::string wait_proc_status(int pid, const std::string& key, const std::string& want);

}  // namespace vmm::test
