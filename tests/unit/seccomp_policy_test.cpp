// The anchor's seccomp policy, installed in a forked child: listed syscalls work, an unlisted one
// ends the child with kExitSeccompDenied and names itself on stderr.
#include "jail/seccomp_policy.h"
#include "jail/seccomp_rules.h"

#include "common/error.h"

#include <gmock/gmock.h>
#include "tests/support/child_process.h"
#include "tests/support/seccomp_probe.h"

#include <gtest/gtest.h>
#include <fcntl.h>
#include <linux/seccomp.h>
#include <linux/futex.h>
#include <sched.h>
#include <linux/if_tun.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/un.h>
#include <sys/uio.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
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
#include <cstring>
#include <filesystem>
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
        if (const std::string why = test::seccomp_refused(); !why.empty()) GTEST_SKIP() << why;
    }
};

std::string task_status_field(pid_t tid, const std::string& key);

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

// Signals reach this process's own threads only: tgkill with its own tgid works, tgkill to
// another process (here the parent, the test) and tkill (any thread of any process) end it.
TEST_F(SeccompPolicyTest, SignalsReachOnlyThisProcess) {
    const ChildResult own = run_child([] {
        if (install() != 0) return 1;
        return ::syscall(SYS_tgkill, ::getpid(), ::syscall(SYS_gettid), 0) == 0 ? 0 : 2;
    });
    EXPECT_EQ(own.status, 0) << own.out;
    const pid_t parent = ::getpid();
    const ChildResult other = run_child([parent] {
        if (install() != 0) return 1;
        ::syscall(SYS_tgkill, parent, parent, 0);
        return 0;
    });
    EXPECT_EQ(other.status, kExitSeccompDenied);
    EXPECT_THAT(other.out, HasSubstr("(tgkill)"));
    const ChildResult tkill = run_child([] {
        if (install() != 0) return 1;
        ::syscall(SYS_tkill, ::syscall(SYS_gettid), 0);
        return 0;
    });
    EXPECT_EQ(tkill.status, kExitSeccompDenied);
    EXPECT_THAT(tkill.out, HasSubstr("(tkill)"));
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

// The anchor's main thread (QMP, teardown) stacks the strict list on the process filter: the
// setup syscalls are refused there, the teardown ones still work, while a thread made before
// the filters (the anchor's restart thread) keeps the process filter alone and can still execve.
TEST_F(SeccompPolicyTest, MainThreadFilterRefusesSetupButTheRestartThreadCanStillExec) {
    const std::string dir = ::testing::TempDir() + "main-filter-" + std::to_string(::getpid());
    ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0) << std::strerror(errno);
    std::fclose(std::fopen((dir + "/state").c_str(), "w"));
    // body(phase) runs on the main thread once both filters are in place; the helper thread
    // execs /bin/true once phase is 1.
    const auto with_restart_thread = [](const std::function<int(std::atomic<int>&)>& body) {
        return run_child([&body] {
            std::atomic<int> phase{0};
            std::thread restarter([&phase] {
                while (phase.load() == 0) ::sched_yield();
                if (phase.load() != 1) return;
                char* const argv[] = {const_cast<char*>("true"), nullptr};
                ::execv("/bin/true", argv);
                std::_Exit(3);
            });
            if (install() != 0) return 1;
            install_main_thread_seccomp(SeccompMode::Enforce);
            const pid_t main_tid = static_cast<pid_t>(::syscall(SYS_gettid));
            if (task_status_field(main_tid, "Seccomp_filters") != "Seccomp_filters:\t2\n") return 4;
            const int rc = body(phase);
            phase = 2;
            restarter.join();
            return rc;
        });
    };
    // teardown works: open, unlink, rmdir
    const ChildResult teardown = with_restart_thread([&dir](std::atomic<int>&) {
        const int fd = ::open((dir + "/state").c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) return 10;
        ::close(fd);
        if (::unlink((dir + "/state").c_str()) != 0) return 11;
        return ::rmdir(dir.c_str()) == 0 ? 0 : 12;
    });
    EXPECT_TRUE(teardown.exited) << teardown.out;
    EXPECT_EQ(teardown.status, 0) << teardown.out;
    EXPECT_FALSE(std::filesystem::exists(dir));
    // setup is refused on the main thread: mkdir, a new socket, execve
    for (const auto& [what, call] : std::vector<std::pair<std::string, std::function<int()>>>{
             {"(mkdir)", [&dir] { return ::mkdir(dir.c_str(), 0700); }},
             {"(socket)", [] { return ::socket(AF_UNIX, SOCK_STREAM, 0); }},
             {"(execve)", [] {
                  char* const argv[] = {const_cast<char*>("true"), nullptr};
                  return ::execv("/bin/true", argv);
              }}}) {
        const ChildResult r = with_restart_thread([&c = call](std::atomic<int>&) { return c() < 0 ? 20 : 21; });
        EXPECT_EQ(r.status, kExitSeccompDenied) << what << ": " << r.out;
        EXPECT_THAT(r.out, HasSubstr(what));
    }
    // ... while the restart thread still can: the child becomes /bin/true and exits 0
    const ChildResult exec = with_restart_thread([](std::atomic<int>& phase) {
        phase = 1;
        for (;;) ::syscall(SYS_futex, &phase, FUTEX_WAIT_PRIVATE, 1, nullptr, nullptr, 0);
        return 30;
    });
    EXPECT_TRUE(exec.exited) << "killed by signal " << exec.status << ": " << exec.out;
    EXPECT_EQ(exec.status, 0) << exec.out;
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

// In a child: a new thread runs `install`, then exits 0 if it carries no seccomp filter.
ChildResult no_filter_on_a_thread_after(const std::function<void()>& install) {
    return run_child([install] {
        int rc = 1;
        std::thread t([&] {
            install();
            rc = task_status_field(static_cast<pid_t>(::syscall(SYS_gettid)), "Seccomp_filters") ==
                         "Seccomp_filters:\t0\n"
                     ? 0
                     : 2;
        });
        t.join();
        return rc;
    });
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
        {"signal to another process", [] { return ::syscall(SYS_tgkill, 1, 1, 0) < 0 ? 1 : 0; }, "(tgkill)"},
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
    const ChildResult r = no_filter_on_a_thread_after([] { install_vcpu_seccomp(SeccompMode::Off); });
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

// ---- the device I/O threads' filters ---------------------------------------------------------
// As for the vCPUs: the process filter, then a thread stacks its kind's filter on itself.
int on_io_thread(SeccompMode mode, IoThreadKind kind, const std::function<int()>& body) {
    if (install(mode) != 0) return 90;
    int rc = 91;
    std::thread t([&] {
        install_io_thread_seccomp(mode, kind);
        rc = body();
    });
    t.join();
    return rc;
}

TEST_F(SeccompPolicyTest, BlockThreadFilterLetsTheDiskIoThrough) {
    const std::string path = ::testing::TempDir() + "/io-seccomp-block-" + std::to_string(::getpid()) + ".img";
    const ChildResult r = run_child([&path] {
        const int disk = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        const int irq = ::eventfd(0, EFD_CLOEXEC);
        if (disk < 0 || irq < 0 || ::ftruncate(disk, 1 << 20) != 0) return 80;
        std::atomic<int> phase{0};
        pid_t tid = 0;
        int rc = 0;
        if (install() != 0) return 90;
        std::thread t([&] {
            tid = static_cast<pid_t>(::syscall(SYS_gettid));  // not in the list: before it
            install_io_thread_seccomp(SeccompMode::Enforce, IoThreadKind::Block);
            char buf[4096] = {1, 2, 3};
            iovec iov{buf, sizeof buf};
            if (::pwritev(disk, &iov, 1, 4096) != 4096) rc = 2;
            if (::preadv(disk, &iov, 1, 4096) != 4096 || buf[2] != 3) rc = 3;
            if (::pwrite(disk, buf, 512, 0) != 512) rc = 4;  // write-zeroes without fallocate
            if (::fdatasync(disk) != 0) rc = 5;
            if (::fallocate(disk, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096) != 0 && errno != EOPNOTSUPP) rc = 6;
            // the interrupt: one eventfd write; a guest on INTx: KVM_IRQ_LINE reaches the kernel
            std::uint64_t one = 1;
            if (::write(irq, &one, 8) != 8) rc = 7;
            if (::ioctl(disk, 0x4008ae61, nullptr) == 0 || errno != ENOTTY) rc = 8;
            // locks, allocation, clock, logging
            int word = 0;
            if (::syscall(SYS_futex, &word, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0) < 0) rc = 9;
            std::vector<char> big(8 << 20);
            big[0] = 1;
            timespec ts{};
            if (::syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts) != 0) rc = 10;
            if (::write(STDERR_FILENO, "", 0) != 0) rc = 11;
            phase = 1;
            phase.notify_all();
            phase.wait(1);
        });
        phase.wait(0);
        if (task_status_field(tid, "Seccomp_filters") != "Seccomp_filters:\t2\n") rc = 20;
        if (task_status_field(static_cast<pid_t>(::syscall(SYS_gettid)), "Seccomp_filters") != "Seccomp_filters:\t1\n")
            rc = 21;
        phase = 2;
        phase.notify_all();
        t.join();
        ::unlink(path.c_str());
        return rc;
    });
    EXPECT_TRUE(r.exited);
    EXPECT_EQ(r.status, 0) << r.out;
    EXPECT_THAT(r.out, IsEmpty());
}

TEST_F(SeccompPolicyTest, NetThreadFilterLetsTheTapLoopThrough) {
    const ChildResult r = run_child([] {
        int sv[2];
        if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return 80;  // the "tap"
        const int kick = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        const int ep = ::epoll_create1(EPOLL_CLOEXEC);
        if (kick < 0 || ep < 0) return 81;
        return on_io_thread(SeccompMode::Enforce, IoThreadKind::Net, [&] {
            epoll_event ev{};
            ev.events = EPOLLIN;
            if (::epoll_ctl(ep, EPOLL_CTL_ADD, sv[0], &ev) != 0) return 1;
            char frame[64] = {7};
            iovec iov{frame, sizeof frame};
            if (::writev(sv[1], &iov, 1) != sizeof frame) return 2;
            epoll_event out[4];
            if (::epoll_wait(ep, out, 4, 1000) != 1) return 3;
            if (::readv(sv[0], &iov, 1) != sizeof frame) return 4;
            std::uint64_t v = 1;
            if (::write(kick, &v, 8) != 8) return 5;  // a kick (the loop never reads one)
            if (::epoll_ctl(ep, EPOLL_CTL_DEL, sv[0], nullptr) != 0) return 6;
            return 0;
        });
    });
    EXPECT_TRUE(r.exited);
    EXPECT_EQ(r.status, 0) << r.out;
    EXPECT_THAT(r.out, IsEmpty());
}

TEST_F(SeccompPolicyTest, NotifyThreadFilterLetsEventfdsAndSocketConsolesThrough) {
    const std::string path = ::testing::TempDir() + "/io-seccomp-notify-" + std::to_string(::getpid()) + ".sock";
    const ChildResult r = run_child([&path] {
        const int lst = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
        ::unlink(path.c_str());
        if (lst < 0 || ::bind(lst, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(lst, 4) != 0)
            return 80;
        const int client = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (::connect(client, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return 81;
        const int ioeventfd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        const int ep = ::epoll_create1(EPOLL_CLOEXEC);
        ::unlink(path.c_str());
        return on_io_thread(SeccompMode::Enforce, IoThreadKind::Notify, [&] {
            epoll_event ev{};
            ev.events = EPOLLIN;
            if (::epoll_ctl(ep, EPOLL_CTL_ADD, ioeventfd, &ev) != 0) return 1;
            std::uint64_t v = 1;
            if (::write(ioeventfd, &v, 8) != 8) return 2;
            epoll_event out[4];
            if (::epoll_wait(ep, out, 4, 1000) != 1 || ::read(ioeventfd, &v, 8) != 8) return 3;
            // a socket console's client: accepted, made non-blocking, read from, written to, closed
            const int s = ::accept(lst, nullptr, nullptr);
            if (s < 0) return 4;
            int on = 1;
            if (::ioctl(s, FIONBIO, &on) != 0) return 5;
            if (::send(s, "out", 3, MSG_NOSIGNAL) != 3) return 6;
            char in[8];
            if (::recv(s, in, sizeof in, 0) >= 0 || errno != EAGAIN) return 7;
            if (::close(s) != 0) return 8;
            return 0;
        });
    });
    EXPECT_TRUE(r.exited);
    EXPECT_EQ(r.status, 0) << r.out;
    EXPECT_THAT(r.out, IsEmpty());
}

TEST_F(SeccompPolicyTest, IoThreadFiltersRefuseWhatOnlyTheProcessFilterAllows) {
    struct Case {
        IoThreadKind kind;
        const char* name;
        std::function<int()> body;
        const char* message;
    };
    const auto all_kinds = {IoThreadKind::Block, IoThreadKind::Net, IoThreadKind::Notify};
    std::vector<Case> cases;
    for (IoThreadKind kind : all_kinds) {
        cases.push_back({kind, "unix socket", [] { return ::socket(AF_UNIX, SOCK_STREAM, 0) < 0 ? 1 : 0; }, "(socket)"});
        cases.push_back({kind, "read-only open",
                         [] { return ::open("/proc/self/status", O_RDONLY | O_CLOEXEC) < 0 ? 1 : 0; }, "(openat)"});
        cases.push_back({kind, "execve", [] {
                             char* const argv[] = {const_cast<char*>("true"), nullptr};
                             ::execv("/bin/true", argv);
                             return 1;
                         }, "(execve)"});
        cases.push_back({kind, "kill", [] { return ::kill(1, 0); }, "(kill)"});
        cases.push_back({kind, "dup", [] { return ::dup(STDERR_FILENO) < 0 ? 1 : 0; }, "(dup)"});
        // KVM_RUN: a KVM request, but a vCPU's
        cases.push_back({kind, "KVM_RUN", [] { return ::ioctl(STDERR_FILENO, 0xae80, 0) < 0 ? 1 : 0; },
                         "(ioctl request 0xae80)"});
        cases.push_back({kind, "io_uring_setup", [] { return static_cast<int>(::syscall(SYS_io_uring_setup, 4, nullptr)); },
                         "(io_uring_setup)"});
    }
    // what one kind needs and another does not
    cases.push_back({IoThreadKind::Block, "epoll_create1", [] { return ::epoll_create1(0) < 0 ? 1 : 0; },
                     "(epoll_create1)"});
    cases.push_back({IoThreadKind::Block, "accept", [] { return ::accept(STDERR_FILENO, nullptr, nullptr); }, "(accept)"});
    cases.push_back({IoThreadKind::Net, "pwritev", [] {
                         iovec iov{nullptr, 0};
                         return static_cast<int>(::pwritev(STDERR_FILENO, &iov, 1, 0));
                     }, "(pwritev)"});
    cases.push_back({IoThreadKind::Net, "fdatasync (a disk's)", [] { return ::fdatasync(STDERR_FILENO); }, "(fdatasync)"});
    cases.push_back({IoThreadKind::Net, "TUNSETOFFLOAD (the vCPU's, at activation)",
                     [] { return ::ioctl(STDERR_FILENO, TUNSETOFFLOAD, 0ul); }, "(ioctl request 0x400454d0)"});
    cases.push_back({IoThreadKind::Notify, "fdatasync", [] { return ::fdatasync(STDERR_FILENO); }, "(fdatasync)"});
    for (const auto& c : cases) {
        const ChildResult r = run_child([&c] { return on_io_thread(SeccompMode::Enforce, c.kind, c.body); });
        EXPECT_TRUE(r.exited) << to_string(c.kind) << " " << c.name;
        EXPECT_EQ(r.status, kExitSeccompDenied) << to_string(c.kind) << " " << c.name << ": " << r.out;
        EXPECT_THAT(r.out, HasSubstr(c.message)) << to_string(c.kind) << " " << c.name;
    }
}

// No new threads: pthread_create's clone is refused (the kernel's SIGSYS: every signal is
// blocked around clone, see VcpuFilterRefusesNewThreads).
TEST_F(SeccompPolicyTest, IoThreadFiltersRefuseNewThreads) {
    for (IoThreadKind kind : {IoThreadKind::Block, IoThreadKind::Net, IoThreadKind::Notify}) {
        const ChildResult r = run_child([kind] {
            return on_io_thread(SeccompMode::Enforce, kind, [] {
                std::thread([] {}).join();
                return 0;
            });
        });
        EXPECT_FALSE(r.exited) << to_string(kind) << ": " << r.out;
        EXPECT_EQ(r.status, SIGSYS) << to_string(kind) << ": " << r.out;
    }
}

TEST_F(SeccompPolicyTest, IoThreadFilterInLogModeLetsUnlistedSyscallsThroughAndOffInstallsNothing) {
    const ChildResult logged = run_child([] {
        return on_io_thread(SeccompMode::Log, IoThreadKind::Block, [] {
            const int d = ::dup(STDERR_FILENO);
            return d >= 0 && ::close(d) == 0 ? 0 : 1;
        });
    });
    EXPECT_TRUE(logged.exited);
    EXPECT_EQ(logged.status, 0) << logged.out;
    const ChildResult off =
        no_filter_on_a_thread_after([] { install_io_thread_seccomp(SeccompMode::Off, IoThreadKind::Net); });
    EXPECT_EQ(off.status, 0) << off.out;
}

// The programs the anchor loads were compiled at build time (jail/tools/seccomp_bpf_gen.cpp):
// compiled again here from the policy with libseccomp, each is the same, instruction for
// instruction, with this process's pid where tgkill's goes.
TEST(SeccompPrecompiledTest, EachProgramIsWhatThePolicyCompilesTo) {
    const auto pid = static_cast<std::uint32_t>(::getpid());
    for (FilterKind kind : kFilterKinds) {
        for (SeccompMode mode : {SeccompMode::Enforce, SeccompMode::Log}) {
            const std::vector<sock_filter> loaded = precompiled_seccomp_filter(kind, mode, pid, pid + 7);
            const std::vector<sock_filter> compiled = compile_seccomp_filter(kind, mode, pid, pid + 7);
            ASSERT_EQ(loaded.size(), compiled.size()) << to_string(kind) << " " << to_string(mode);
            for (std::size_t i = 0; i < loaded.size(); ++i) {
                EXPECT_EQ(loaded[i].code, compiled[i].code) << to_string(kind) << " " << to_string(mode) << " insn " << i;
                EXPECT_EQ(loaded[i].jt, compiled[i].jt) << i;
                EXPECT_EQ(loaded[i].jf, compiled[i].jf) << i;
                EXPECT_EQ(loaded[i].k, compiled[i].k) << to_string(kind) << " " << to_string(mode) << " insn " << i;
            }
        }
    }
}

TEST(SeccompPrecompiledTest, ThePidIsPatchedIntoTgkillsComparisonOnly) {
    auto count_k = [](const std::vector<sock_filter>& program, std::uint32_t k) {
        return std::count_if(program.begin(), program.end(), [k](const sock_filter& i) { return i.k == k; });
    };
    const std::uint32_t pid = 4194303;  // pid_max's largest
    for (FilterKind kind : kFilterKinds) {
        const auto program = precompiled_seccomp_filter(kind, SeccompMode::Enforce, pid);
        const bool tgkill = kind == FilterKind::ProcessReexec || kind == FilterKind::ProcessStrict ||
                            kind == FilterKind::Vcpu || kind == FilterKind::Keeper;
        EXPECT_EQ(count_k(program, kSeccompPidPlaceholder), 0) << to_string(kind);
        EXPECT_EQ(count_k(program, kSeccompPeerPidPlaceholder), 0) << to_string(kind);
        // The keeper's kill compares the anchor's pid, given apart from its own.
        EXPECT_EQ(count_k(precompiled_seccomp_filter(kind, SeccompMode::Enforce, pid, 4194301), 4194301) > 0,
                  kind == FilterKind::Keeper)
            << to_string(kind);
        EXPECT_EQ(count_k(program, pid) > 0, tgkill) << to_string(kind);
        EXPECT_EQ(count_k(precompiled_seccomp_filter(kind, SeccompMode::Enforce, pid + 1), pid), 0) << to_string(kind);
    }
    // Enforce traps, Log logs: the default action differs and nothing else.
    const auto enforce = precompiled_seccomp_filter(FilterKind::Vcpu, SeccompMode::Enforce, pid);
    const auto log = precompiled_seccomp_filter(FilterKind::Vcpu, SeccompMode::Log, pid);
    EXPECT_GT(count_k(enforce, SECCOMP_RET_TRAP), 0);
    EXPECT_EQ(count_k(enforce, SECCOMP_RET_LOG), 0);
    EXPECT_EQ(count_k(log, SECCOMP_RET_TRAP), 0);
    EXPECT_EQ(count_k(log, SECCOMP_RET_LOG), count_k(enforce, SECCOMP_RET_TRAP));
    EXPECT_THROW(precompiled_seccomp_filter(FilterKind::Vcpu, SeccompMode::Off, pid), Error);
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

TEST(SeccompModeTest, TheIoThreadListsAreNarrowerThanTheProcessList) {
    const auto process = anchor_seccomp_syscalls();
    for (IoThreadKind kind : {IoThreadKind::Block, IoThreadKind::Net, IoThreadKind::Notify}) {
        const auto io = io_thread_seccomp_syscalls(kind);
        for (const auto& name : io) EXPECT_EQ(std::count(process.begin(), process.end(), name), 1) << to_string(kind) << " " << name;
        for (const char* gone : {"execve", "clone", "clone3", "socket", "bind", "listen", "connect", "openat", "open",
                                 "dup", "dup3", "unlink", "rename", "mkdir", "io_uring_setup", "io_uring_register",
                                 "seccomp", "prctl", "capset", "rt_sigaction", "fork", "vfork", "ptrace", "kill",
                                 "tgkill", "tkill", "fcntl", "mlock"})
            EXPECT_EQ(std::count(io.begin(), io.end(), gone), 0) << to_string(kind) << " " << gone;
    }
    // each kind only its own I/O
    const auto block = io_thread_seccomp_syscalls(IoThreadKind::Block);
    const auto net = io_thread_seccomp_syscalls(IoThreadKind::Net);
    const auto notify = io_thread_seccomp_syscalls(IoThreadKind::Notify);
    for (const char* n : {"accept", "accept4", "recvmsg", "sendmsg", "epoll_wait", "readv", "writev"})
        EXPECT_EQ(std::count(block.begin(), block.end(), n), 0) << n;
    // (the net thread's io_uring_enter drives its frame writer's ring, restricted to WRITEV on
    // the tap: tests/unit/uring_frame_writer_test.cpp)
    for (const char* n : {"accept", "accept4", "recvmsg", "sendmsg", "preadv", "pwritev", "fdatasync", "fallocate", "close"})
        EXPECT_EQ(std::count(net.begin(), net.end(), n), 0) << n;
    for (const char* n : {"preadv", "pwritev", "pwrite64", "fdatasync", "fallocate", "io_uring_enter"})
        EXPECT_EQ(std::count(notify.begin(), notify.end(), n), 0) << n;
}

TEST(SeccompModeTest, TheListNeverHoldsTheEscapeHatches) {
    const auto names = anchor_seccomp_syscalls();
    for (const char* bad : {"ptrace", "mount", "connect", "process_vm_writev", "bpf", "unshare", "setns",
                            "kexec_load", "init_module", "perf_event_open", "userfaultfd", "setuid", "chroot"})
        EXPECT_EQ(std::count(names.begin(), names.end(), bad), 0) << bad;
}

}  // namespace
}  // namespace vmm::jail
