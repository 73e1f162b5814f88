// vmm-anchor under its own seccomp filter and capability drop (jail/): the filter is in place
// while the guest runs, the anchor still serves QMP and quits cleanly, and the restart on
// system_reset (execv of the anchor under the inherited filter) works, twice, without stacking
// a second filter; each vCPU thread stacks its own narrower filter on the process one (two
// filters there, one elsewhere). Needs /dev/kvm.
#include "qmp/qmp_client.h"
#include "tests/support/process.h"
#include "tests/support/test_paths.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

namespace vmm::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::Not;
using Json = qmp::Json;

class SeccompAnchorTest : public ::testing::Test {
protected:
    void SetUp() override {
        if (auto why = kvm_unavailable_reason(); !why.empty()) GTEST_SKIP() << why;
        dir_ = make_temp_dir("anchor-seccomp");
    }
    void TearDown() override {
        if (anchor_.joinable()) anchor_.join();
        if (!dir_.empty()) fs::remove_all(dir_);
    }
    std::string manifest(const std::string& name) {
        const std::string path = dir_ + "/" + name + ".json";
        std::ofstream(path) << "{\"name\": \"" << name << "\", \"kernel\": \"" << guest_path("idle.bin")
                            << R"(", "memory_mb": 16, "start_paused": true, )"
                            << R"("flat": {"load_address": "0x100000", "entry": "0x100000", "mode": "protected32"}})";
        return path;
    }
    void start(const std::string& name, const std::vector<std::string>& extra = {}) {
        std::vector<std::string> argv{anchor_path(), "--manifest", manifest(name), "--run-dir", dir_ + "/run"};
        argv.insert(argv.end(), extra.begin(), extra.end());
        anchor_ = std::thread([this, argv] { result_ = run_process(argv, 120s); });
    }
    ProcessResult finish() {
        anchor_.join();
        return result_;
    }
    std::string state(const std::string& name, const std::string& leaf) { return dir_ + "/run/kvm/" + name + "/" + leaf; }
    int pid(const std::string& name) {
        for (int i = 0; i < 200; ++i) {
            std::ifstream f(state(name, "pid"));
            int p = 0;
            if (f >> p && p > 0) return p;
            std::this_thread::sleep_for(50ms);
        }
        return -1;
    }
    // A line of /proc/PID/status ("Seccomp:\t2"), or "" when absent.
    static std::string status_line(int pid, const std::string& key) {
        std::ifstream f("/proc/" + std::to_string(pid) + "/status");
        std::string line;
        while (std::getline(f, line))
            if (line.rfind(key + ":", 0) == 0) return line;
        return "";
    }
    // Waits (bounded) until /proc/PID/status shows `want` for `key`: the filter is installed
    // a moment after the QMP sockets appear.
    static std::string wait_status(int pid, const std::string& key, const std::string& want) {
        std::string line;
        for (int i = 0; i < 100; ++i) {
            line = status_line(pid, key);
            if (line == key + ":\t" + want) break;
            std::this_thread::sleep_for(50ms);
        }
        return line;
    }

    // The anchor's threads by name (/proc/PID/task/TID/comm): tid -> name.
    static std::map<int, std::string> threads(int pid) {
        std::map<int, std::string> out;
        std::error_code ec;
        for (const auto& e : fs::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
            std::ifstream f(e.path() / "comm");
            std::string name;
            std::getline(f, name);
            out[std::stoi(e.path().filename().string())] = name;
        }
        return out;
    }
    // A line of /proc/PID/task/TID/status, or "" when absent.
    static std::string task_status_line(int pid, int tid, const std::string& key) {
        std::ifstream f("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/status");
        std::string line;
        while (std::getline(f, line))
            if (line.rfind(key + ":", 0) == 0) return line;
        return "";
    }
    // Waits (bounded) until every thread named vcpuN shows `want` filters; returns how many
    // vCPU threads showed it (0 if any did not), and fills `seen` with every thread's line
    // ("name/tid" -> line).
    static int wait_vcpu_filters(int pid, const std::string& want, std::map<std::string, std::string>& seen) {
        int vcpus = 0;
        bool all = false;
        for (int i = 0; i < 100; ++i) {
            seen.clear();
            vcpus = 0;
            all = true;
            for (const auto& [tid, name] : threads(pid)) {
                const std::string line = task_status_line(pid, tid, "Seccomp_filters");
                seen[name + "/" + std::to_string(tid)] = line;
                if (name.rfind("vcpu", 0) == 0) {
                    ++vcpus;
                    all = all && line == "Seccomp_filters:\t" + want;
                }
            }
            if (vcpus > 0 && all) break;
            std::this_thread::sleep_for(50ms);
        }
        return all ? vcpus : 0;
    }

    std::string dir_;
    std::thread anchor_;
    ProcessResult result_;
};

TEST_F(SeccompAnchorTest, FilterAndCapabilityDropAreInPlaceWhileTheGuestRuns) {
    start("jailed");
    qmp::QmpClient c(state("jailed", "qmp"), 30s);
    c.execute("cont");
    const int p = pid("jailed");
    ASSERT_GT(p, 0);
    EXPECT_EQ(wait_status(p, "Seccomp", "2"), "Seccomp:\t2");
    EXPECT_EQ(wait_status(p, "Seccomp_filters", "1"), "Seccomp_filters:\t1");
    EXPECT_EQ(wait_status(p, "CapEff", "0000000000000000"), "CapEff:\t0000000000000000");
    EXPECT_EQ(status_line(p, "NoNewPrivs"), "NoNewPrivs:\t1");
    EXPECT_EQ(c.execute("query-status")["status"], "running");
    EXPECT_EQ(c.execute("quit"), Json::object());
    const auto r = finish();
    EXPECT_EQ(r.exit_status, 8) << r.err;
    EXPECT_THAT(r.err, Not(HasSubstr("seccomp")));
    EXPECT_FALSE(fs::exists(dir_ + "/run/kvm/jailed")) << "the state directory is cleaned up under the filter";
}

// Each vCPU thread stacks its own, narrower filter on the process one: two filters there, one
// everywhere else. In prelaunch (the vCPUs parked before their first KVM_RUN) as once running.
TEST_F(SeccompAnchorTest, VcpuThreadsStackTheirOwnFilter) {
    start("vcpus", {"--seccomp", "on"});
    qmp::QmpClient c(state("vcpus", "qmp"), 30s);
    const int p = pid("vcpus");
    ASSERT_GT(p, 0);
    for (const char* phase : {"prelaunch", "running"}) {
        if (std::string(phase) == "running") c.execute("cont");
        std::map<std::string, std::string> seen;
        EXPECT_EQ(wait_vcpu_filters(p, "2", seen), 1) << phase;
        for (const auto& [thread, line] : seen) {
            if (thread.rfind("vcpu", 0) == 0)
                EXPECT_EQ(line, "Seccomp_filters:\t2") << phase << " " << thread;
            else
                EXPECT_EQ(line, "Seccomp_filters:\t1") << phase << " " << thread;
        }
        EXPECT_EQ(status_line(p, "Seccomp_filters"), "Seccomp_filters:\t1") << "the main thread";
        EXPECT_EQ(c.execute("query-status")["status"], phase);
    }
    // pause/cont and quit still work with the vCPUs under both filters
    c.execute("stop");
    EXPECT_EQ(c.execute("query-status")["status"], "paused");
    c.execute("cont");
    EXPECT_EQ(c.execute("quit"), Json::object());
    const auto r = finish();
    EXPECT_EQ(r.exit_status, 8) << r.err;
    EXPECT_THAT(r.err, Not(HasSubstr("seccomp")));
}

TEST_F(SeccompAnchorTest, SeccompLogStacksBothFiltersInLogMode) {
    start("logged", {"--seccomp", "log"});
    qmp::QmpClient c(state("logged", "qmp"), 30s);
    const int p = pid("logged");
    ASSERT_GT(p, 0);
    c.execute("cont");
    std::map<std::string, std::string> seen;
    EXPECT_EQ(wait_vcpu_filters(p, "2", seen), 1) << ::testing::PrintToString(seen);
    EXPECT_EQ(status_line(p, "Seccomp_filters"), "Seccomp_filters:\t1");
    c.execute("quit");
    const auto r = finish();
    EXPECT_EQ(r.exit_status, 8) << r.err;
    EXPECT_THAT(r.err, Not(HasSubstr("seccomp")));
}

TEST_F(SeccompAnchorTest, SeccompOffLeavesNoFilter) {
    start("open", {"--seccomp", "off"});
    qmp::QmpClient c(state("open", "qmp"), 30s);
    const int p = pid("open");
    ASSERT_GT(p, 0);
    c.execute("query-status");
    c.execute("cont");
    std::this_thread::sleep_for(300ms);
    EXPECT_EQ(status_line(p, "Seccomp"), "Seccomp:\t0");
    std::map<std::string, std::string> seen;
    EXPECT_EQ(wait_vcpu_filters(p, "0", seen), 1);
    for (const auto& [thread, line] : seen) EXPECT_EQ(line, "Seccomp_filters:\t0") << thread;
    c.execute("quit");
    EXPECT_EQ(finish().exit_status, 8);
}

// system_reset re-executes the anchor with the filter inherited: its setup must pass the
// filter, and the new image must not stack another one.
TEST_F(SeccompAnchorTest, RestartOnSystemResetWorksUnderTheInheritedFilter) {
    start("reboot");
    const int p = pid("reboot");
    ASSERT_GT(p, 0);
    for (int round = 0; round < 2; ++round) {
        {
            qmp::QmpClient c(state("reboot", "qmp"), 30s);
            EXPECT_EQ(wait_status(p, "Seccomp", "2"), "Seccomp:\t2");
            c.execute("cont");  // running now; the restarted domain is back in prelaunch
            c.execute("system_reset");
        }
        // The same pid comes back with a fresh state directory and QMP sockets.
        std::this_thread::sleep_for(500ms);
        qmp::QmpClient again(state("reboot", "qmp"), 30s);
        EXPECT_EQ(again.execute("query-status")["status"], "prelaunch") << "round " << round;
        EXPECT_EQ(pid("reboot"), p);
    }
    EXPECT_EQ(wait_status(p, "Seccomp_filters", "1"), "Seccomp_filters:\t1");
    {
        // the restarted image's vCPU threads stack their filter on the inherited one
        std::map<std::string, std::string> seen;
        EXPECT_EQ(wait_vcpu_filters(p, "2", seen), 1) << ::testing::PrintToString(seen);
    }
    {
        qmp::QmpClient c(state("reboot", "qmp"), 30s);
        c.execute("quit");
    }
    const auto r = finish();
    EXPECT_EQ(r.exit_status, 8) << r.err;
    EXPECT_THAT(r.err, Not(HasSubstr("seccomp")));
}

}  // namespace
}  // namespace vmm::test
