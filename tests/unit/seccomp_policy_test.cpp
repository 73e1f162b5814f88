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
#include <signal.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <thread>
#include <vector>

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

// ---- the vCPU threads' filter ---------------------------------------------------------------
// The anchor's order: the process filter (TSYNC), then a thread stacks the vCPU filter on
// itself. `body` runs on that thread; its return value is the child's exit code.
int on_vcpu_thread(SeccompMode mode, const std::function<int()>& body) {
    if (install(mode) != 0) return 90;
    int rc = 91;
    std::thread t([&] {
        install_vcpu_seccomp(mode);
        rc = body();
    });
    t.join();
    return rc;
}

std::string task_status_field(pid_t tid, const std::string& key) {
    FILE* f = std::fopen(("/proc/self/task/" + std::to_string(tid) + "/status").c_str(), "r");
    if (f == nullptr) return "";
    char line[256];
    std::string found;
    while (std::fgets(line, sizeof line, f) != nullptr)
        if (std::string(line).rfind(key + ":", 0) == 0) found = line;
    std::fclose(f);
    return found;
}

TEST_F(SeccompPolicyTest, VcpuFilterLetsTheVcpuWorkThrough) {
    const std::string dir = ::testing::TempDir();
    const ChildResult r = run_child([&dir] {
        std::atomic<int> phase{0};
        pid_t vcpu_tid = 0;
        const std::string log = dir + "/vcpu-seccomp-" + std::to_string(::getpid()) + ".log";
        int rc = 0;
        if (install() != 0) return 90;
        int p[2];
        if (::pipe2(p, O_CLOEXEC) != 0) return 91;
        std::thread t([&] {
            install_vcpu_seccomp(SeccompMode::Enforce);
            vcpu_tid = static_cast<pid_t>(::syscall(SYS_gettid));
            // eventfd write (virtio/irqfd signalling), futex, allocator, clock, a tgkill-free kick
            const int efd = ::eventfd(0, EFD_CLOEXEC);
            std::uint64_t one = 1;
            if (efd < 0 || ::write(efd, &one, 8) != 8 || ::read(efd, &one, 8) != 8 || ::close(efd) != 0) rc = 2;
            timespec ts{};
            if (::syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts) != 0) rc = 3;
            void* m = ::mmap(nullptr, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (m == MAP_FAILED || ::madvise(m, 1 << 20, MADV_DONTNEED) != 0 || ::munmap(m, 1 << 20) != 0) rc = 4;
            std::vector<char> big(8 << 20);  // malloc: mmap'd chunk
            big[0] = 1;
            // console.log rotation: rename, then a write-only append-create open
            const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
            if (fd < 0 || ::write(fd, "x", 1) != 1 || ::close(fd) != 0) rc = 5;
            if (::rename(log.c_str(), (log + ".0").c_str()) != 0) rc = 6;
            // a listed KVM request reaches the kernel (ENOTTY on a pipe): KVM_RUN, KVM_IRQFD
            if (::ioctl(p[0], 0xae80, 0) == 0 || errno != ENOTTY) rc = 8;
            if (::ioctl(p[0], 0x4020ae76, nullptr) == 0 || errno != ENOTTY) rc = 9;
            // logging
            if (::write(STDERR_FILENO, "", 0) != 0) rc = 10;
            phase = 1;
            phase.notify_all();
            phase.wait(1);
        });
        phase.wait(0);
        // the vCPU thread has two filters, this one only the process filter
        const std::string vcpu = task_status_field(vcpu_tid, "Seccomp_filters");
        const std::string main = task_status_field(static_cast<pid_t>(::syscall(SYS_gettid)), "Seccomp_filters");
        if (vcpu != "Seccomp_filters:\t2\n") rc = 20;
        if (main != "Seccomp_filters:\t1\n") rc = 21;
        ::unlink((log + ".0").c_str());
        // what the process filter allows still works here (dup is not in the vCPU list)
        const int d = ::dup(STDERR_FILENO);
        if (d < 0 || ::close(d) != 0) rc = 22;
        phase = 2;
        phase.notify_all();
        t.join();
        return rc;
    });
    EXPECT_TRUE(r.exited);
    EXPECT_EQ(r.status, 0) << r.out;
    EXPECT_THAT(r.out, IsEmpty());
}

TEST_F(SeccompPolicyTest, VcpuFilterRefusesWhatOnlyTheProcessFilterAllows) {
    struct Case {
        const char* name;
        std::function<int()> body;
        const char* message;
    };
    const std::vector<Case> cases = {
        {"dup", [] { return ::dup(STDERR_FILENO) < 0 ? 1 : 0; }, "(dup)"},
        {"unix socket", [] { return ::socket(AF_UNIX, SOCK_STREAM, 0) < 0 ? 1 : 0; }, "(socket)"},
        {"read-only open", [] { return ::open("/proc/self/status", O_RDONLY | O_CLOEXEC) < 0 ? 1 : 0; }, "(openat)"},
        // KVM_CREATE_VCPU: a KVM request, but not one a vCPU thread makes
        {"KVM_CREATE_VCPU", [] { return ::ioctl(STDERR_FILENO, 0xae41, 0) < 0 ? 1 : 0; }, "(ioctl request 0xae41)"},
        // a tty request the process filter lists
        {"TCGETS", [] {
             termios t{};
             return ::ioctl(STDERR_FILENO, TCGETS, &t) < 0 ? 1 : 0;
         }, "(ioctl request 0x5401)"},
    };
    for (const auto& c : cases) {
        const ChildResult r = run_child([&c] { return on_vcpu_thread(SeccompMode::Enforce, c.body); });
        EXPECT_TRUE(r.exited) << c.name;
        EXPECT_EQ(r.status, kExitSeccompDenied) << c.name << ": " << r.out;
        EXPECT_THAT(r.out, HasSubstr(c.message)) << c.name;
    }
}

// pthread_create blocks every signal around clone: the trap cannot run the reporter there and
// the kernel ends the process with SIGSYS itself. Refused all the same.
TEST_F(SeccompPolicyTest, VcpuFilterRefusesNewThreads) {
    const ChildResult r = run_child([] {
        return on_vcpu_thread(SeccompMode::Enforce, [] {
            std::thread([] {}).join();
            return 0;
        });
    });
    EXPECT_FALSE(r.exited) << r.out;
    EXPECT_EQ(r.status, SIGSYS) << r.out;
}

TEST_F(SeccompPolicyTest, VcpuFilterInLogModeLetsUnlistedSyscallsThrough) {
    const ChildResult r = run_child([] {
        return on_vcpu_thread(SeccompMode::Log, [] {
            const int d = ::dup(STDERR_FILENO);
            return d >= 0 && ::close(d) == 0 ? 0 : 1;
        });
    });
    EXPECT_TRUE(r.exited);
    EXPECT_EQ(r.status, 0) << r.out;
}

TEST_F(SeccompPolicyTest, VcpuFilterOffInstallsNothing) {
    const ChildResult r = run_child([] {
        int rc = 1;
        std::thread t([&] {
            install_vcpu_seccomp(SeccompMode::Off);
            rc = task_status_field(static_cast<pid_t>(::syscall(SYS_gettid)), "Seccomp_filters") ==
                         "Seccomp_filters:\t0\n"
                     ? 0
                     : 2;
        });
        t.join();
        return rc;
    });
    EXPECT_EQ(r.status, 0) << r.out;
}

// Why the anchor installs the process filter first: TSYNC fails once a thread has a filter
// the others do not.
TEST_F(SeccompPolicyTest, ProcessFilterAfterAThreadFilterIsRefused) {
    const ChildResult r = run_child([] {
        std::atomic<int> phase{0};
        std::thread t([&] {
            install_vcpu_seccomp(SeccompMode::Log);
            phase = 1;
            phase.notify_all();
            phase.wait(1);
        });
        phase.wait(0);
        int rc = 0;
        try {
            install();
            rc = 1;
        } catch (const std::exception&) {
        }
        phase = 2;
        phase.notify_all();
        t.join();
        return rc;
    });
    EXPECT_EQ(r.status, 0) << r.out;
}

TEST(SeccompModeTest, ParsesTheCommandLineWords) {
    EXPECT_EQ(parse_seccomp_mode("on"), SeccompMode::Enforce);
    EXPECT_EQ(parse_seccomp_mode("log"), SeccompMode::Log);
    EXPECT_EQ(parse_seccomp_mode("off"), SeccompMode::Off);
    EXPECT_THROW(parse_seccomp_mode("yes"), Error);
    EXPECT_STREQ(to_string(SeccompMode::Log), "log");
}

TEST(SeccompModeTest, TheVcpuListIsNarrowerThanTheProcessList) {
    const auto process = anchor_seccomp_syscalls();
    const auto vcpu = vcpu_seccomp_syscalls();
    for (const auto& name : vcpu) EXPECT_EQ(std::count(process.begin(), process.end(), name), 1) << name;
    for (const char* gone : {"execve", "clone", "clone3", "socket", "accept", "accept4", "bind", "listen", "connect",
                             "dup", "dup3", "unlink", "mkdir", "io_uring_setup", "io_uring_enter", "seccomp",
                             "prctl", "capset", "rt_sigaction", "fork", "vfork", "ptrace"})
        EXPECT_EQ(std::count(vcpu.begin(), vcpu.end(), gone), 0) << gone;
}

TEST(SeccompModeTest, TheListNeverHoldsTheEscapeHatches) {
    const auto names = anchor_seccomp_syscalls();
    for (const char* bad : {"ptrace", "mount", "connect", "process_vm_writev", "bpf", "unshare", "setns",
                            "kexec_load", "init_module", "perf_event_open", "userfaultfd", "setuid", "chroot"})
        EXPECT_EQ(std::count(names.begin(), names.end(), bad), 0) << bad;
}

}  // namespace
}  // namespace vmm::jail
