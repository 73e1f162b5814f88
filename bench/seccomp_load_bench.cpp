// seccomp_load_bench: what installing the anchor's filters costs a process, the precompiled
// programs it loads (jail/seccomp_policy.h) against building the same filters with libseccomp at
// start (jail/seccomp_rules.h, what the anchor did before) and against the bare seccomp(2) of an
// allow-all program (the kernel's own share: attach, TSYNC, its action cache). Each round runs
// in a fresh forked child, as an anchor start does; medians in microseconds. Log mode, so no
// later syscall of the child is trapped. No KVM needed.
//
//   build/bench/seccomp_load_bench [--rounds N]
#include "jail/seccomp_policy.h"
#include "jail/seccomp_rules.h"

#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <vector>

using namespace vmm::jail;

namespace {

void load_program(std::vector<sock_filter> program, bool tsync) {
    ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    sock_fprog fprog{static_cast<unsigned short>(program.size()), program.data()};
    if (::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, tsync ? SECCOMP_FILTER_FLAG_TSYNC : 0u, &fprog) != 0) _exit(3);
}

// Microseconds `work` takes in a fresh child.
double in_child(const std::function<void()>& work) {
    int p[2];
    if (::pipe(p) != 0) std::exit(1);
    const pid_t c = ::fork();
    if (c == 0) {
        const auto t0 = std::chrono::steady_clock::now();
        work();
        const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
        [[maybe_unused]] ssize_t w = ::write(p[1], &us, sizeof us);
        _exit(0);
    }
    ::close(p[1]);
    double us = -1;
    if (::read(p[0], &us, sizeof us) != sizeof us) us = -1;
    ::close(p[0]);
    int status = 0;
    ::waitpid(c, &status, 0);
    return us;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
    int rounds = 31;
    for (int i = 1; i + 1 < argc; ++i)
        if (std::strcmp(argv[i], "--rounds") == 0) rounds = std::atoi(argv[i + 1]);
    const auto pid_of_child = [] { return static_cast<std::uint32_t>(::getpid()); };
    struct Case {
        const char* name;
        std::function<void()> work;
    };
    const std::vector<Case> cases = {
        {"allow-all program, seccomp(2) only (process, TSYNC)",
         [] { load_program({sock_filter{BPF_RET | BPF_K, 0, 0, SECCOMP_RET_ALLOW}}, true); }},
        {"process filter: precompiled program (the anchor now)",
         [] { install_anchor_seccomp(SeccompMode::Log); }},
        {"process filter: built with libseccomp at start (before)",
         [&] { load_program(compile_seccomp_filter(FilterKind::ProcessReexec, SeccompMode::Log, pid_of_child()), true); }},
        {"process + vcpu + block filters: precompiled",
         [] {
             install_anchor_seccomp(SeccompMode::Log);
             install_vcpu_seccomp(SeccompMode::Log);
             install_io_thread_seccomp(SeccompMode::Log, IoThreadKind::Block);
         }},
        {"process + vcpu + block filters: libseccomp at start",
         [&] {
             load_program(compile_seccomp_filter(FilterKind::ProcessReexec, SeccompMode::Log, pid_of_child()), true);
             load_program(compile_seccomp_filter(FilterKind::Vcpu, SeccompMode::Log, pid_of_child()), false);
             load_program(compile_seccomp_filter(FilterKind::IoBlock, SeccompMode::Log, pid_of_child()), false);
         }},
    };
    std::vector<std::vector<double>> samples(cases.size());
    for (int r = 0; r < rounds; ++r)  // alternated: every case sees the same machine
        for (std::size_t i = 0; i < cases.size(); ++i) samples[i].push_back(in_child(cases[i].work));
    std::printf("# seccomp_load_bench: %d rounds, medians, each in a fresh child (Log mode)\n", rounds);
    std::printf("| case | µs |\n|---|---|\n");
    for (std::size_t i = 0; i < cases.size(); ++i) std::printf("| %s | %.0f |\n", cases[i].name, median(samples[i]));
    return 0;
}
