// Capability drop in a forked child: privileged operations fail with EPERM afterwards, on every
// thread, and a re-executed image does not get the dropped capabilities back.
#include "jail/capabilities.h"

#include "common/error.h"
#include "tests/support/test_paths.h"

#include <fcntl.h>
#include "tests/support/child_process.h"

#include <gtest/gtest.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace vmm::jail {
namespace {

using test::ChildResult;

ChildResult run_child(const std::function<int()>& body) { return test::run_in_child(body); }

class CapabilitiesTest : public ::testing::Test {
protected:
    void SetUp() override {
        const CapabilityState caps = current_capabilities();
        for (int cap : {CAP_CHOWN, CAP_MKNOD, CAP_SETPCAP})
            if (!(caps.effective & cap_bit(cap)))
                GTEST_SKIP() << "needs CAP_CHOWN, CAP_MKNOD and CAP_SETPCAP (run as root) to show them dropped";
        file_ = dir_ + "/f";
        ::close(::open(file_.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }
    std::string dir_ = test::make_temp_dir("jailcaps");
    std::string file_;
};

// chown to another owner needs CAP_CHOWN; EPERM without it.
int chown_errno(const std::string& path) { return ::chown(path.c_str(), 12345, 12345) == 0 ? 0 : errno; }

TEST_F(CapabilitiesTest, AfterTheDropPrivilegedCallsFailOnEveryThread) {
    const std::string file = file_;
    const ChildResult r = run_child([file] {
        // A thread that exists before the drop, as the anchor's vCPU and I/O threads do.
        std::atomic<int> phase{0};
        std::atomic<int> thread_errno{-1};
        std::atomic<unsigned long long> thread_eff{~0ull};
        std::thread t([&] {
            while (phase.load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
            thread_errno = chown_errno(file);
            thread_eff = current_capabilities().effective;
        });
        if (chown_errno(file) != 0) return 2;  // still privileged before
        drop_capabilities(0);
        phase = 1;
        t.join();
        if (chown_errno(file) != EPERM) return 3;
        if (thread_errno != EPERM) return 4;
        if (thread_eff != 0) return 5;
        if (current_capabilities().permitted != 0) return 6;
        if (in_bounding_set(CAP_SYS_ADMIN) || in_bounding_set(CAP_CHOWN)) return 7;
        if (::prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1) return 8;
        return 0;
    });
    EXPECT_TRUE(r.exited);
    EXPECT_EQ(r.status, 0) << r.out;
}

// The anchor has a dozen threads when it drops (vCPUs, notify, block dispatcher and pool, net):
// they are signalled together. Threads blocked in a system call, busy ones, and ones that exit
// while the drop runs: every survivor ends up unprivileged and the drop does not fail.
TEST_F(CapabilitiesTest, ManyThreadsBlockedBusyOrExitingAllDrop) {
    const std::string file = file_;
    const ChildResult r = run_child([file] {
        int pipefd[2];
        if (::pipe2(pipefd, O_CLOEXEC) != 0) return 2;
        std::atomic<bool> stop{false};
        std::atomic<int> unprivileged{0};
        std::vector<std::thread> threads;
        for (int i = 0; i < 6; ++i)  // blocked in read() until the end (SA_RESTART resumes it)
            threads.emplace_back([&, fd = pipefd[0]] {
                char c;
                while (::read(fd, &c, 1) < 0 && errno == EINTR) {}
                if (chown_errno(file) == EPERM) ++unprivileged;
            });
        for (int i = 0; i < 6; ++i)  // spinning
            threads.emplace_back([&] {
                while (!stop.load()) {}
                if (chown_errno(file) == EPERM) ++unprivileged;
            });
        for (int i = 0; i < 8; ++i)  // exiting right away, some of them during the drop
            threads.emplace_back([] {});
        drop_capabilities(0);
        stop = true;
        for (int i = 0; i < 6; ++i)
            if (::write(pipefd[1], "x", 1) != 1) return 3;
        for (auto& t : threads) t.join();
        if (unprivileged != 12) return 10 + unprivileged.load();
        if (chown_errno(file) != EPERM) return 4;
        return 0;
    });
    EXPECT_TRUE(r.exited);
    EXPECT_EQ(r.status, 0) << r.out;
}

TEST_F(CapabilitiesTest, KeptCapabilitiesStayAndOthersGo) {
    const std::string file = file_, node = dir_ + "/node";
    const ChildResult r = run_child([file, node] {
        drop_capabilities(cap_bit(CAP_CHOWN));
        if (chown_errno(file) != 0) return 2;  // kept
        if (::mknod(node.c_str(), S_IFCHR | 0600, ::makedev(1, 3)) == 0 || errno != EPERM) return 3;  // dropped
        if (!in_bounding_set(CAP_CHOWN) || in_bounding_set(CAP_MKNOD)) return 4;
        return 0;
    });
    EXPECT_TRUE(r.exited);
    EXPECT_EQ(r.status, 0) << r.out;
}

// The anchor narrows its bounding set while it is still single-threaded: the privileges stay
// (the setup needs them), threads made afterwards inherit the narrow set, and the later drop
// still takes every thread's privileges.
TEST_F(CapabilitiesTest, AnEarlyBoundingSetDropKeepsPrivilegesUntilTheDrop) {
    const std::string file = file_;
    const ChildResult r = run_child([file] {
        drop_bounding_set(cap_bit(CAP_CHOWN));
        if (in_bounding_set(CAP_MKNOD) || in_bounding_set(CAP_SYS_ADMIN) || !in_bounding_set(CAP_CHOWN)) return 2;
        if (!(current_capabilities().effective & cap_bit(CAP_SYS_ADMIN))) return 3;  // still privileged
        std::atomic<int> phase{0};
        std::atomic<int> thread_result{-1};
        std::thread t([&] {
            const bool narrow = !in_bounding_set(CAP_MKNOD) && in_bounding_set(CAP_CHOWN);
            while (phase.load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
            const CapMask eff = current_capabilities().effective;
            thread_result = !narrow ? 1 : eff != cap_bit(CAP_CHOWN) ? 2 : chown_errno(file) != 0 ? 3 : 0;
        });
        drop_capabilities(cap_bit(CAP_CHOWN));
        phase = 1;
        t.join();
        if (thread_result != 0) return 10 + thread_result.load();
        if (current_capabilities().effective != cap_bit(CAP_CHOWN)) return 4;
        return 0;
    });
    EXPECT_TRUE(r.exited);
    EXPECT_EQ(r.status, 0) << r.out;
}

// The anchor's restart re-executes it: the new image (root) must not regain what was dropped.
TEST_F(CapabilitiesTest, ReexecutedImageGetsOnlyTheKeptCapabilities) {
    const ChildResult r = run_child([] {
        drop_capabilities(cap_bit(CAP_NET_ADMIN));
        char* const argv[] = {const_cast<char*>("grep"), const_cast<char*>("^CapEff:"),
                              const_cast<char*>("/proc/self/status"), nullptr};
        ::execv("/bin/grep", argv);
        return 9;
    });
    EXPECT_EQ(r.status, 0) << r.out;
    char expected[64];
    std::snprintf(expected, sizeof expected, "CapEff:\t%016llx", static_cast<unsigned long long>(cap_bit(CAP_NET_ADMIN)));
    EXPECT_NE(r.out.find(expected), std::string::npos) << r.out;
}

TEST(AnchorCapabilitiesTest, KeepsOnlyWhatTheDevicesNeedAgainOnRestart) {
    EXPECT_EQ(anchor_kept_capabilities(false, false), 0u);
    EXPECT_EQ(anchor_kept_capabilities(true, false), cap_bit(CAP_NET_ADMIN));
    EXPECT_EQ(anchor_kept_capabilities(false, true), cap_bit(CAP_IPC_LOCK));
}

}  // namespace
}  // namespace vmm::jail
