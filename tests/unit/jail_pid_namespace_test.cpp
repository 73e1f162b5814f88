// jail::PidNamespace (jail/pid_namespace.h) for real: each test forks a child that calls
// PidNamespace::enter, so that the child becomes the keeper and its own child the namespace's
// pid 1; that anchor stand-in reports through a pipe, and the test checks what the host sees:
// the keeper's exit status, its signals, its privileges and filter (Enforce: a syscall the
// keeper's list lacks would end it with status 12 and its anchor with it), and the host thread
// ids it hands out. Needs root (a new pid namespace); skips with the reason elsewhere. No KVM.
#include "jail/pid_namespace.h"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace vmm::test {
namespace {

namespace fs = std::filesystem;
using jail::PidNamespace;

std::string slurp(const std::string& path) {
    std::ifstream f(path);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

// The value of a "Key:\tvalue" line of /proc/<pid>/status.
std::string status_field(pid_t pid, const std::string& key) {
    std::istringstream in(slurp("/proc/" + std::to_string(pid) + "/status"));
    for (std::string line; std::getline(in, line);)
        if (line.rfind(key + ":", 0) == 0) {
            std::string v = line.substr(key.size() + 1);
            return v.substr(v.find_first_not_of(" \t") == std::string::npos ? v.size() : v.find_first_not_of(" \t"));
        }
    return "";
}

class PidNamespaceTest : public ::testing::Test {
protected:
    void SetUp() override {
        if (::geteuid() != 0) GTEST_SKIP() << "a pid namespace needs root (CAP_SYS_ADMIN)";
        const pid_t probe = ::fork();
        ASSERT_GE(probe, 0);
        if (probe == 0) ::_exit(::unshare(CLONE_NEWPID) == 0 ? 0 : 1);
        int status = 0;
        ::waitpid(probe, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) GTEST_SKIP() << "this host refuses a new pid namespace";
    }
    void TearDown() override {
        if (keeper_ > 0) {
            ::kill(keeper_, SIGKILL);
            ::waitpid(keeper_, nullptr, 0);
        }
    }

    // Forks the process that enters the namespace; `anchor` runs as its pid 1 with the write end
    // of the report pipe, and what it returns is its exit status (99: enter threw).
    void start(const std::function<int(PidNamespace&, int)>& anchor) {
        int pipefd[2];
        ASSERT_EQ(::pipe2(pipefd, O_CLOEXEC), 0);
        keeper_ = ::fork();
        ASSERT_GE(keeper_, 0);
        if (keeper_ == 0) {
            ::close(pipefd[0]);
            try {
                PidNamespace ns = PidNamespace::enter(jail::SeccompMode::Enforce);
                ::_exit(anchor(ns, pipefd[1]));
            } catch (const std::exception& e) {
                std::fprintf(stderr, "enter: %s\n", e.what());
                ::_exit(99);
            }
        }
        ::close(pipefd[1]);
        report_ = pipefd[0];
    }

    // An anchor that says "ready" and waits for its end; returns once it has said so.
    void start_waiting() {
        start([](PidNamespace&, int out) {
            say(out, "ready");
            for (;;) ::pause();
            return 0;
        });
        ASSERT_EQ(next_line(), "ready");
    }

    // The next line the anchor wrote ("" at EOF or after 10 s).
    std::string next_line() {
        std::string line;
        char c;
        for (;;) {
            pollfd p{report_, POLLIN, 0};
            if (::poll(&p, 1, 10000) <= 0) return line;
            if (::read(report_, &c, 1) != 1 || c == '\n') return line;
            line += c;
        }
    }

    // The anchor's pid on the host: the keeper's one child.
    pid_t anchor_host_pid() const {
        const std::string children =
            slurp("/proc/" + std::to_string(keeper_) + "/task/" + std::to_string(keeper_) + "/children");
        return static_cast<pid_t>(std::atoi(children.c_str()));
    }

    int wait_keeper() {
        int status = -1;
        // Bounded: a keeper that never ends fails the test instead of hanging it.
        for (int i = 0; i < 1000; ++i) {
            const pid_t r = ::waitpid(keeper_, &status, WNOHANG);
            if (r == keeper_) {
                keeper_ = -1;
                return status;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        ADD_FAILURE() << "the keeper did not end within 10 s";
        return -1;
    }

    static void say(int fd, const std::string& line) {
        const std::string l = line + "\n";
        [[maybe_unused]] ssize_t w = ::write(fd, l.data(), l.size());
    }

    pid_t keeper_ = -1;
    int report_ = -1;
};

TEST_F(PidNamespaceTest, TheAnchorIsPidOneAndItsExitStatusIsTheKeepers) {
    start([](PidNamespace& ns, int out) {
        say(out, std::to_string(::getpid()) + " " + std::to_string(ns.keeper_pid()) + " " + std::to_string(::getppid()));
        return 42;
    });
    EXPECT_EQ(next_line(), "1 " + std::to_string(keeper_) + " 0");  // no parent inside the namespace
    const int status = wait_keeper();
    ASSERT_TRUE(WIFEXITED(status)) << status;
    EXPECT_EQ(WEXITSTATUS(status), 42);
}

TEST_F(PidNamespaceTest, TheKeeperKeepsOnlyCapKillUnderItsOwnFilter) {
    start_waiting();
    // The keeper sets itself up after the fork: give it the moment.
    for (int i = 0; i < 200 && status_field(keeper_, "Seccomp") != "2"; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    EXPECT_EQ(status_field(keeper_, "Seccomp"), "2");
    EXPECT_EQ(status_field(keeper_, "NoNewPrivs"), "1");
    EXPECT_EQ(status_field(keeper_, "CapEff"), "0000000000000020");  // CAP_KILL
    EXPECT_EQ(status_field(keeper_, "CapPrm"), "0000000000000020");
    EXPECT_EQ(status_field(keeper_, "CapBnd"), "0000000000000020");
    // Its root: the host's /proc, all it reads.
    EXPECT_EQ(fs::read_symlink("/proc/" + std::to_string(keeper_) + "/root"), "/proc");
    EXPECT_EQ(fs::read_symlink("/proc/" + std::to_string(keeper_) + "/cwd"), "/proc");
    // Its fds: stdio and the anchor's socket, nothing it had before the fork.
    std::vector<std::string> fds;
    for (const auto& e : fs::directory_iterator("/proc/" + std::to_string(keeper_) + "/fd"))
        fds.push_back(e.path().filename().string());
    EXPECT_LE(fds.size(), 5u);  // 0, 1, 2, the socket, the signalfd
    // The anchor is in a pid namespace the keeper is not in.
    EXPECT_NE(fs::read_symlink("/proc/" + std::to_string(anchor_host_pid()) + "/ns/pid"),
              fs::read_symlink("/proc/" + std::to_string(keeper_) + "/ns/pid"));
    EXPECT_EQ(fs::read_symlink("/proc/" + std::to_string(keeper_) + "/ns/pid"), fs::read_symlink("/proc/self/ns/pid"));
}

TEST_F(PidNamespaceTest, SigtermToTheKeeperReachesTheAnchor) {
    static volatile sig_atomic_t got = 0;
    start([](PidNamespace&, int out) {
        // pid 1 of a namespace gets only the signals it has a handler for (the anchor's QMP loop
        // handles SIGTERM, SIGINT and SIGHUP).
        struct sigaction sa {};
        sa.sa_handler = [](int sig) { got = sig; };
        ::sigaction(SIGTERM, &sa, nullptr);
        say(out, "ready");
        while (got == 0) ::pause();
        return got == SIGTERM ? 33 : 34;
    });
    ASSERT_EQ(next_line(), "ready");
    ASSERT_EQ(::kill(keeper_, SIGTERM), 0);
    const int status = wait_keeper();
    ASSERT_TRUE(WIFEXITED(status)) << status;
    EXPECT_EQ(WEXITSTATUS(status), 33);
}

TEST_F(PidNamespaceTest, AnAnchorKilledBySignalEndsItsKeeperTheSameWay) {
    start_waiting();
    const pid_t anchor = anchor_host_pid();
    ASSERT_GT(anchor, 1);
    ASSERT_EQ(::kill(anchor, SIGKILL), 0);  // as the OOM killer would, in the domain's cgroup
    const int status = wait_keeper();
    ASSERT_TRUE(WIFSIGNALED(status)) << status;
    EXPECT_EQ(WTERMSIG(status), SIGKILL);
}

TEST_F(PidNamespaceTest, KillingTheKeeperKillsTheAnchor) {
    start_waiting();
    const pid_t anchor = anchor_host_pid();
    ASSERT_GT(anchor, 1);
    const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, anchor, 0));
    ASSERT_GE(pidfd, 0);
    ASSERT_EQ(::kill(keeper_, SIGKILL), 0);
    const int status = wait_keeper();
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
    pollfd p{pidfd, POLLIN, 0};
    EXPECT_EQ(::poll(&p, 1, 5000), 1) << "the anchor outlived its keeper";
    ::close(pidfd);
    // And the report pipe's last writer is gone with it.
    EXPECT_EQ(next_line(), "");
}

TEST_F(PidNamespaceTest, TheKeeperGivesTheHostIdsOfTheAnchorsThreads) {
    static volatile sig_atomic_t stop = 0;
    start([](PidNamespace& ns, int out) {
        struct sigaction sa {};
        sa.sa_handler = [](int) { stop = 1; };
        ::sigaction(SIGTERM, &sa, nullptr);
        std::atomic<int> tid{0};
        std::atomic<bool> done{false};
        std::thread t([&] {
            tid = static_cast<int>(::syscall(SYS_gettid));
            while (!done) std::this_thread::sleep_for(std::chrono::milliseconds(5));
        });
        while (tid == 0) std::this_thread::yield();
        std::string line = std::to_string(tid.load());
        try {
            for (int h : ns.host_tids({1, tid.load(), 4000000})) line += " " + std::to_string(h);
            // Twice: questions are numbered, the second gets its own answer.
            for (int h : ns.host_tids({tid.load()})) line += " " + std::to_string(h);
        } catch (const std::exception& e) {
            line += std::string(" error: ") + e.what();
        }
        say(out, line);
        // Stays until the test has looked at the host's /proc (and sends SIGTERM).
        while (stop == 0) ::pause();
        done = true;
        t.join();
        return 0;
    });
    std::istringstream line(next_line());
    int inner = 0, h_main = -1, h_thread = -1, h_none = -1, h_again = -1;
    ASSERT_TRUE(line >> inner >> h_main >> h_thread >> h_none >> h_again) << line.str();
    EXPECT_GT(inner, 1);
    const pid_t anchor = anchor_host_pid();
    EXPECT_EQ(h_main, anchor);
    EXPECT_EQ(h_none, 0);
    EXPECT_EQ(h_again, h_thread);
    ASSERT_GT(h_thread, 0);
    // The host's view of that id: a thread of the anchor whose id inside is the one asked about.
    EXPECT_EQ(status_field(h_thread, "Tgid"), std::to_string(anchor));
    EXPECT_EQ(status_field(h_thread, "NSpid"), std::to_string(h_thread) + "\t" + std::to_string(inner));
    ASSERT_EQ(::kill(keeper_, SIGTERM), 0);
    EXPECT_EQ(wait_keeper(), 0);
}

TEST_F(PidNamespaceTest, AVariableAloneDoesNotPassForANamespace) {
    // The restart's variable, forged: this process is not pid 1, so it makes a namespace anyway.
    ::setenv(jail::kPidNamespaceEnv, "0 1", 1);
    start([](PidNamespace& ns, int out) {
        say(out, std::to_string(::getpid()) + " " + std::to_string(ns.keeper_pid()));
        return 0;
    });
    ::unsetenv(jail::kPidNamespaceEnv);
    EXPECT_EQ(next_line(), "1 " + std::to_string(keeper_));
    EXPECT_EQ(wait_keeper(), 0);
}

// The keeper's question on a /proc the test made: thread 7 of process 500 is 3 in its
// namespace; 501's "NSpid" has only the host's id (not in a namespace); 502 is not a thread id.
TEST(PidNamespaceTranslateTest, HostIdsComeFromTheInnermostNspid) {
    const fs::path root = fs::path(::testing::TempDir()) / ("fake-proc-" + std::to_string(::getpid()));
    fs::remove_all(root);
    auto thread = [&](const std::string& tid, const std::string& nspid) {
        fs::create_directories(root / "500" / "task" / tid);
        std::ofstream(root / "500" / "task" / tid / "status") << "Name:\tvmm-anchor\nTgid:\t500\nNSpid:\t" << nspid
                                                              << "\nPPid:\t0\n";
    };
    thread("500", "500\t1");
    thread("507", "507\t3");
    thread("508", "508\t200\t4");  // a namespace below a namespace: the innermost id counts
    fs::create_directories(root / "500" / "task" / "bogus");
    const int tids[] = {1, 3, 4, 5, 500};
    int host[5] = {-1, -1, -1, -1, -1};
    jail::translate_tids(root.c_str(), 500, tids, host, 5);
    EXPECT_EQ(host[0], 500);
    EXPECT_EQ(host[1], 507);
    EXPECT_EQ(host[2], 508);
    EXPECT_EQ(host[3], 0);
    EXPECT_EQ(host[4], 0);  // a host id is not an id inside
    int none[1] = {-1};
    jail::translate_tids(root.c_str(), 999, tids, none, 1);  // no such process
    EXPECT_EQ(none[0], 0);
    fs::remove_all(root);
}

}  // namespace
}  // namespace vmm::test
