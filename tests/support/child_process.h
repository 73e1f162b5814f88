// run_in_child: runs a function in a forked child (for tests that change process-wide state
// that cannot be undone: seccomp filters, capabilities, rlimits) and reports how it ended.
#pragma once

#include "common/error.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <exception>
#include <functional>
#include <string>

namespace vmm::test {

struct ChildResult {
    bool exited = false;
    int status = -1;  // the exit code, or the signal number when !exited
    std::string out;  // stdout and stderr, merged
};

// body's return value is the child's exit code; an exception is reported on stderr, code 101.
inline ChildResult run_in_child(const std::function<int()>& body) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) throw_errno("pipe2");
    const pid_t pid = ::fork();
    if (pid < 0) throw_errno("fork");
    if (pid == 0) {
        ::dup2(p[1], STDOUT_FILENO);
        ::dup2(p[1], STDERR_FILENO);
        int rc = 100;
        try {
            rc = body();
        } catch (const std::exception& e) {
            std::fprintf(stderr, "child threw: %s\n", e.what());
            rc = 101;
        }
        std::fflush(stdout);
        ::_exit(rc);
    }
    ::close(p[1]);
    ChildResult r;
    char buf[512];
    ssize_t n;
    while ((n = ::read(p[0], buf, sizeof buf)) > 0) r.out.append(buf, static_cast<std::size_t>(n));
    ::close(p[0]);
    int st = 0;
    ::waitpid(pid, &st, 0);
    r.exited = WIFEXITED(st);
    r.status = r.exited ? WEXITSTATUS(st) : WTERMSIG(st);
    return r;
}

}  // namespace vmm::test
