// The anchor's seccomp policy, installed in a forked child: listed syscalls work, an unlisted one
// ends the child with kExitSeccompDenied and names itself on stderr.
#include "jail/seccomp_policy.h"

#include "common/error.h"

#include <gmock/gmock.h>
#include "tests/support/child_process.h"

#include <gtest/gtest.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <functional>
#include <string>
#include <thread>

namespace vmm::jail {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

using test::ChildResult;

ChildResult run_child(const std::function<int()>& body) { return test::run_in_child(body); }

class SeccompPolicyTest : public ::testing::Test {
protected:
    void SetUp() override {
        // A kernel without seccomp filters (or a sandbox refusing them) cannot run these.
        const ChildResult probe = run_child([] {
            ::unsetenv(kSeccompEnvMarker);
            install_anchor_seccomp(SeccompMode::Enforce);
            return 0;
        });
        if (probe.status == 101 && probe.out.find("seccomp_load") != std::string::npos)
            GTEST_SKIP() << "this kernel or sandbox refuses seccomp filters: " << probe.out;
        ASSERT_TRUE(probe.exited && probe.status == 0) << probe.out;
    }
};

int install(SeccompMode mode = SeccompMode::Enforce, SeccompOptions options = {}) {
    ::unsetenv(kSeccompEnvMarker);
    return install_anchor_seccomp(mode, options) ? 0 : 1;
}

TEST_F(SeccompPolicyTest, ListedSyscallsKeepWorking) {
    const ChildResult r = run_child([] {
        if (install() != 0) return 1;
        // read/write on a pipe and an eventfd
        int p[2];
        if (::pipe2(p, O_CLOEXEC) != 0) return 2;
        if (::write(p[1], "x", 1) != 1) return 3;
        char c = 0;
        if (::read(p[0], &c, 1) != 1 || c != 'x') return 4;
        const int efd = ::eventfd(0, EFD_CLOEXEC);
        std::uint64_t one = 1;
        if (efd < 0 || ::write(efd, &one, 8) != 8 || ::read(efd, &one, 8) != 8) return 5;
        // the real syscalls, not the vDSO
        timespec ts{};
        if (::syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts) != 0) return 6;
        void* m = ::mmap(nullptr, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED || ::munmap(m, 1 << 20) != 0) return 7;
        int word = 0;
        if (::syscall(SYS_futex, &word, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0) < 0) return 8;
        // a new thread (clone3 answers ENOSYS, glibc falls back to clone with CLONE_THREAD)
        std::atomic<bool> ran{false};
        std::thread t([&] { ran = true; });
        t.join();
        if (!ran) return 9;
        // a unix socket is allowed
        const int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (s < 0) return 10;
        ::close(s);
        // a tty ioctl on the list reaches the kernel (ENOTTY on a pipe), it is not trapped
        termios t2{};
        if (::ioctl(p[0], TCGETS, &t2) == 0 || errno != ENOTTY) return 11;
        return 0;
    });
    EXPECT_TRUE(r.exited);
    EXPECT_EQ(r.status, 0) << r.out;
    EXPECT_THAT(r.out, IsEmpty());
}

TEST_F(SeccompPolicyTest, UnlistedSyscallEndsTheProcessWithItsStatusAndName) {
    const ChildResult r = run_child([] {
        if (install() != 0) return 1;
        ::syscall(SYS_ptrace, 0 /* PTRACE_TRACEME */, 0, 0, 0);
        return 0;  // not reached
    });
    EXPECT_TRUE(r.exited);
    EXPECT_EQ(r.status, kExitSeccompDenied);
    EXPECT_THAT(r.out, HasSubstr("vmm-anchor: seccomp: denied syscall " + std::to_string(SYS_ptrace) + " (ptrace)"));
}

TEST_F(SeccompPolicyTest, NetworkSocketsAreRefused) {
    const ChildResult r = run_child([] {
        if (install() != 0) return 1;
        ::socket(AF_INET, SOCK_STREAM, 0);
        return 0;
    });
    EXPECT_EQ(r.status, kExitSeccompDenied);
    EXPECT_THAT(r.out, HasSubstr("(socket)"));
}

TEST_F(SeccompPolicyTest, ForkIsRefused) {
    const ChildResult r = run_child([] {
        if (install() != 0) return 1;
        const pid_t pid = ::fork();
        if (pid == 0) ::_exit(0);
        return 0;
    });
    EXPECT_EQ(r.status, kExitSeccompDenied);
    EXPECT_THAT(r.out, HasSubstr("(clone)"));
}

TEST_F(SeccompPolicyTest, TerminalInjectionIoctlIsRefusedEvenWithHighBitsSet) {
    for (unsigned long request : {static_cast<unsigned long>(TIOCSTI), 0xffffffff00000000ul | TIOCSTI}) {
        const ChildResult r = run_child([request] {
            if (install() != 0) return 1;
            char ch = 'x';
            ::syscall(SYS_ioctl, STDIN_FILENO, request, &ch);
            return 0;
        });
        EXPECT_EQ(r.status, kExitSeccompDenied) << std::hex << request;
        EXPECT_THAT(r.out, HasSubstr("(ioctl request 0x"));
        EXPECT_THAT(r.out, HasSubstr("5412)"));
    }
}

TEST_F(SeccompPolicyTest, ThreadsThatAlreadyRunGetTheFilter) {
    const ChildResult r = run_child([] {
        std::atomic<int> phase{0};
        std::thread t([&] {
            while (phase.load() == 0) ::sched_yield();
            ::syscall(SYS_getppid);  // not listed: the whole process ends
            phase = 2;
        });
        if (install() != 0) return 1;
        phase = 1;
        t.join();
        return 0;
    });
    EXPECT_EQ(r.status, kExitSeccompDenied);
    EXPECT_THAT(r.out, HasSubstr("(getppid)"));
}

TEST_F(SeccompPolicyTest, LogModeLetsUnlistedSyscallsThrough) {
    const ChildResult r = run_child([] {
        if (install(SeccompMode::Log) != 0) return 1;
        return ::syscall(SYS_getppid) == ::getppid() ? 0 : 2;
    });
    EXPECT_TRUE(r.exited);
    EXPECT_EQ(r.status, 0) << r.out;
}

// The restart path: execve of a dynamically linked program works under the default policy
// (the loader's and libc's start-up calls are listed); the strict list refuses execve.
TEST_F(SeccompPolicyTest, ReexecIsAllowedByDefaultAndRefusedByTheStrictList) {
    const ChildResult ok = run_child([] {
        if (install() != 0) return 1;
        char* const argv[] = {const_cast<char*>("true"), nullptr};
        ::execv("/bin/true", argv);
        return 2;
    });
    EXPECT_TRUE(ok.exited) << "killed by signal " << ok.status;
    EXPECT_EQ(ok.status, 0) << ok.out;

    const ChildResult strict = run_child([] {
        if (install(SeccompMode::Enforce, SeccompOptions{.allow_reexec = false}) != 0) return 1;
        char* const argv[] = {const_cast<char*>("true"), nullptr};
        ::execv("/bin/true", argv);
        return 2;
    });
    EXPECT_EQ(strict.status, kExitSeccompDenied);
    EXPECT_THAT(strict.out, HasSubstr("(execve)"));
}

// After a restart the filter is inherited: it is not stacked again (one per reboot would
// exhaust the kernel's instruction budget), but the SIGSYS reporter is back.
TEST_F(SeccompPolicyTest, InheritedFilterIsNotStackedAgain) {
    const ChildResult r = run_child([] {
        if (install() != 0) return 1;
        if (install_anchor_seccomp(SeccompMode::Enforce)) return 2;  // marker + Seccomp: 2
        ::syscall(SYS_getppid);
        return 0;
    });
    EXPECT_EQ(r.status, kExitSeccompDenied) << r.out;
    EXPECT_THAT(r.out, HasSubstr("(getppid)"));
}

TEST(SeccompModeTest, ParsesTheCommandLineWords) {
    EXPECT_EQ(parse_seccomp_mode("on"), SeccompMode::Enforce);
    EXPECT_EQ(parse_seccomp_mode("log"), SeccompMode::Log);
    EXPECT_EQ(parse_seccomp_mode("off"), SeccompMode::Off);
    EXPECT_THROW(parse_seccomp_mode("yes"), Error);
    EXPECT_STREQ(to_string(SeccompMode::Log), "log");
}

TEST(SeccompModeTest, TheListNeverHoldsTheEscapeHatches) {
    const auto names = anchor_seccomp_syscalls();
    for (const char* bad : {"ptrace", "mount", "connect", "process_vm_writev", "bpf", "unshare", "setns",
                            "kexec_load", "init_module", "perf_event_open", "userfaultfd", "setuid", "chroot"})
        EXPECT_EQ(std::count(names.begin(), names.end(), bad), 0) << bad;
}

}  // namespace
}  // namespace vmm::jail
