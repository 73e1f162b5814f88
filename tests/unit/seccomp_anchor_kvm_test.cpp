// vmm-anchor under its own seccomp filter and capability drop (jail/): the filter is in place
// while the guest runs, the anchor still serves QMP and quits cleanly, and the restart on
// system_reset (execv of the anchor under the inherited filter) works, twice, without stacking
// a second filter; each vCPU thread, each device I/O thread (blkN-q, blkN-ioK, netN-io,
// notify) and the main thread (QMP) stacks its own narrower filter on the process one (two
// filters there), and only the restart thread, which makes the execve, keeps the process
// filter alone. Needs /dev/kvm.
#include "qmp/qmp_client.h"
#include "tests/support/proc_status.h"
#include "tests/support/process.h"
#include "tests/support/test_paths.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include <linux/io_uring.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

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
        anchor_.finish();  // before its files go
        if (!dir_.empty()) fs::remove_all(dir_);
    }
    std::string manifest(const std::string& name, const std::string& extra = "") {
        const std::string path = dir_ + "/" + name + ".json";
        std::ofstream(path) << "{\"name\": \"" << name << "\", \"kernel\": \"" << guest_path("idle.bin")
                            << R"(", "memory_mb": 16, "start_paused": true, )"
                            << R"("flat": {"load_address": "0x100000", "entry": "0x100000", "mode": "protected32"})"
                            << (extra.empty() ? "" : ", ") << extra << "}";
        return path;
    }
    // A disk, a socket console and, where a tap can be made (the anchor creates it: root,
    // /dev/net/tun), a NIC: every kind of device I/O thread.
    std::string devices(const std::string& tap) {
        const std::string disk = dir_ + "/disk.img";
        std::ofstream(disk) << std::string(64 * 1024, 'z');
        std::string extra = R"("disks": [{"path": ")" + disk + R"("}], "consoles": [{"kind": "socket", "path": ")" + dir_ +
                            "/" + tap + R"(.sock"}])";
        if (::access("/dev/net/tun", R_OK | W_OK) == 0 && ::geteuid() == 0)
            extra += R"(, "nics": [{"tap": ")" + tap + R"("}])";
        return extra;
    }
    void start_with_devices(const std::string& name, const std::string& tap, const std::vector<std::string>& extra = {}) {
        std::vector<std::string> argv{anchor_path(), "--manifest", manifest(name, devices(tap)), "--run-dir", dir_ + "/run"};
        argv.insert(argv.end(), extra.begin(), extra.end());
        anchor_.start(argv, 120s);
    }
    void start(const std::string& name, const std::vector<std::string>& extra = {}) {
        std::vector<std::string> argv{anchor_path(), "--manifest", manifest(name), "--run-dir", dir_ + "/run"};
        argv.insert(argv.end(), extra.begin(), extra.end());
        anchor_.start(argv, 120s);
    }
    ProcessResult finish() { return anchor_.finish(); }
    std::string state(const std::string& name, const std::string& leaf) { return dir_ + "/run/kvm/" + name + "/" + leaf; }
    int pid(const std::string& name) { return wait_pid_file(dir_ + "/run/kvm/" + name); }

    // Whether a task is a kernel worker in the anchor's thread group (PF_USER_WORKER in the
    // flags of /proc/PID/task/TID/stat): since Linux 6.13 KVM's NX-huge-page recovery worker
    // ("kvm-nx-lpage-recovery") is one, started at the first KVM_RUN. It never runs user code,
    // so no filter of the anchor's concerns it.
    static bool kernel_worker(const fs::path& task) {
        std::ifstream f(task / "stat");
        std::string stat;
        std::getline(f, stat);
        const auto close = stat.rfind(')');
        if (close == std::string::npos) return false;
        std::istringstream fields(stat.substr(close + 1));
        std::string field;
        unsigned long flags = 0;
        for (int i = 3; i <= 9 && fields >> field; ++i)  // field 3 is the state, 9 the flags
            if (i == 9) flags = std::stoul(field);
        constexpr unsigned long kPfUserWorker = 0x4000;
        return (flags & kPfUserWorker) != 0;
    }
    // The anchor's threads by name (/proc/PID/task/TID/comm): tid -> name; kernel workers left out.
    static std::map<int, std::string> threads(int pid) {
        std::map<int, std::string> out;
        std::error_code ec;
        for (const auto& e : fs::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
            if (kernel_worker(e.path())) continue;
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

    // The threads that stack their own filter: all but the restart thread (vCPUs, device I/O
    // threads, the main thread).
    static bool stacks_own_filter(const std::string& name) { return name != "restart"; }
    // "Seccomp_filters" of the anchor's thread named `name` ("" when there is none, "many"
    // when there are several).
    static std::string named_thread_filters(int pid, const std::string& name) {
        std::string found;
        for (const auto& [tid, comm] : threads(pid))
            if (comm == name) found = found.empty() ? task_status_line(pid, tid, "Seccomp_filters") : "many";
        return found;
    }
    // The names a domain from devices() runs with one vCPU (with a NIC: "net0-io"; where this
    // kernel makes io_uring rings, the disk's read ring "blk0-rd").
    static std::set<std::string> device_domain_threads(bool nic) {
        std::set<std::string> names{"vcpu0", "notify", "blk0-q", "blk0-io0", "blk0-io1", "blk0-io2", "blk0-io3"};
        if (nic) names.insert("net0-io");
        io_uring_params params{};
        if (const long fd = ::syscall(__NR_io_uring_setup, 1, &params); fd >= 0) {
            ::close(static_cast<int>(fd));
            names.insert("blk0-rd");
        }
        return names;
    }
    // Waits (bounded) until each thread in `names` exists and every thread that stacks its own
    // filter shows `want` filters, every other one `others`; returns the names of the threads
    // with a filter of their own that showed `want`, and
    // fills `seen` with every thread's line ("name/tid" -> line).
    static std::set<std::string> wait_thread_filters(int pid, const std::set<std::string>& names, const std::string& want,
                                                     const std::string& others,
                                                     std::map<std::string, std::string>& seen) {
        std::set<std::string> good;
        for (int i = 0; i < 100; ++i) {
            seen.clear();
            good.clear();
            bool all = true;
            for (const auto& [tid, name] : threads(pid)) {
                const std::string line = task_status_line(pid, tid, "Seccomp_filters");
                seen[name + "/" + std::to_string(tid)] = line;
                const bool own = stacks_own_filter(name);
                if (line != "Seccomp_filters:\t" + (own ? want : others))
                    all = false;
                else if (own && tid != pid)  // the main thread is checked on its own
                    good.insert(name);
            }
            bool present = true;
            for (const auto& n : names) present = present && good.count(n);
            if (all && present) break;
            std::this_thread::sleep_for(50ms);
        }
        return good;
    }
    bool has_nic() const { return ::access("/dev/net/tun", R_OK | W_OK) == 0 && ::geteuid() == 0; }

    std::string dir_;
    BackgroundProcess anchor_;
};

TEST_F(SeccompAnchorTest, FilterAndCapabilityDropAreInPlaceWhileTheGuestRuns) {
    start("jailed");
    qmp::QmpClient c(state("jailed", "qmp"), 30s);
    c.execute("cont");
    const int p = pid("jailed");
    ASSERT_GT(p, 0);
    EXPECT_EQ(wait_proc_status(p, "Seccomp", "2"), "Seccomp:\t2");
    EXPECT_EQ(wait_proc_status(p, "Seccomp_filters", "2"), "Seccomp_filters:\t2") << "the main thread";
    EXPECT_EQ(named_thread_filters(p, "restart"), "Seccomp_filters:\t1");
    EXPECT_EQ(wait_proc_status(p, "CapEff", "0000000000000000"), "CapEff:\t0000000000000000");
    EXPECT_EQ(proc_status_line(p, "NoNewPrivs"), "NoNewPrivs:\t1");
    EXPECT_EQ(c.execute("query-status")["status"], "running");
    EXPECT_EQ(c.execute("quit"), Json::object());
    const auto r = finish();
    EXPECT_EQ(r.exit_status, 8) << r.err;
    EXPECT_THAT(r.err, Not(HasSubstr("seccomp")));
    EXPECT_FALSE(fs::exists(dir_ + "/run/kvm/jailed")) << "the state directory is cleaned up under the filter";
}

// Each vCPU thread, each device I/O thread (the disk's dispatcher and pool, the NIC's loop,
// notify) and the main thread stacks its own, narrower filter on the process one: two filters
// there, one on the restart thread. In prelaunch (the vCPUs parked before their first
// KVM_RUN) as once running.
TEST_F(SeccompAnchorTest, VcpuAndDeviceThreadsStackTheirOwnFilter) {
    start_with_devices("vcpus", "vmmsec0", {"--seccomp", "on"});
    qmp::QmpClient c(state("vcpus", "qmp"), 30s);
    const int p = pid("vcpus");
    ASSERT_GT(p, 0);
    const auto want = device_domain_threads(has_nic());
    for (const char* phase : {"prelaunch", "running"}) {
        if (std::string(phase) == "running") c.execute("cont");
        std::map<std::string, std::string> seen;
        const auto good = wait_thread_filters(p, want, "2", "1", seen);
        for (const auto& n : want) EXPECT_EQ(good.count(n), 1u) << phase << " " << n << ": " << ::testing::PrintToString(seen);
        for (const auto& [thread, line] : seen) {
            if (stacks_own_filter(thread.substr(0, thread.find('/'))))
                EXPECT_EQ(line, "Seccomp_filters:\t2") << phase << " " << thread;
            else
                EXPECT_EQ(line, "Seccomp_filters:\t1") << phase << " " << thread;
        }
        EXPECT_EQ(proc_status_line(p, "Seccomp_filters"), "Seccomp_filters:\t2") << "the main thread";
        EXPECT_EQ(named_thread_filters(p, "restart"), "Seccomp_filters:\t1") << phase;
        EXPECT_EQ(c.execute("query-status")["status"], phase);
    }
    // the socket console is served by notify under its filter: a client connects and is fed
    {
        const std::string sock = dir_ + "/vmmsec0.sock";
        const int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", sock.c_str());
        EXPECT_EQ(::connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << std::strerror(errno);
        EXPECT_EQ(::write(s, "hello\n", 6), 6);
        std::this_thread::sleep_for(200ms);
        ::close(s);
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
    start_with_devices("logged", "vmmsec1", {"--seccomp", "log"});
    qmp::QmpClient c(state("logged", "qmp"), 30s);
    const int p = pid("logged");
    ASSERT_GT(p, 0);
    c.execute("cont");
    std::map<std::string, std::string> seen;
    EXPECT_EQ(wait_thread_filters(p, device_domain_threads(has_nic()), "2", "1", seen), device_domain_threads(has_nic()))
        << ::testing::PrintToString(seen);
    EXPECT_EQ(proc_status_line(p, "Seccomp_filters"), "Seccomp_filters:\t2");
    EXPECT_EQ(named_thread_filters(p, "restart"), "Seccomp_filters:\t1");
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
    EXPECT_EQ(proc_status_line(p, "Seccomp"), "Seccomp:\t0");
    std::map<std::string, std::string> seen;
    EXPECT_EQ(wait_vcpu_filters(p, "0", seen), 1);
    for (const auto& [thread, line] : seen) EXPECT_EQ(line, "Seccomp_filters:\t0") << thread;
    c.execute("quit");
    EXPECT_EQ(finish().exit_status, 8);
}

// system_reset re-executes the anchor with the filter inherited: its setup must pass the
// filter, and the new image must not stack another one.
TEST_F(SeccompAnchorTest, RestartOnSystemResetWorksUnderTheInheritedFilter) {
    start_with_devices("reboot", "vmmsec2");
    const int p = pid("reboot");
    ASSERT_GT(p, 0);
    for (int round = 0; round < 2; ++round) {
        {
            qmp::QmpClient c(state("reboot", "qmp"), 30s);
            EXPECT_EQ(wait_proc_status(p, "Seccomp", "2"), "Seccomp:\t2");
            c.execute("cont");  // running now; the restarted domain is back in prelaunch
            c.execute("system_reset");
        }
        // The same pid comes back with a fresh state directory and QMP sockets.
        std::this_thread::sleep_for(500ms);
        qmp::QmpClient again(state("reboot", "qmp"), 30s);
        EXPECT_EQ(again.execute("query-status")["status"], "prelaunch") << "round " << round;
        EXPECT_EQ(pid("reboot"), p);
    }
    // the restarted image's main thread (the old restart thread) stacks the strict list again,
    // and its new restart thread keeps the process filter alone
    EXPECT_EQ(wait_proc_status(p, "Seccomp_filters", "2"), "Seccomp_filters:\t2");
    EXPECT_EQ(threads(p)[p], "vmm-anchor") << "the main thread's name, after exec of /proc/self/exe too";
    EXPECT_EQ(named_thread_filters(p, "restart"), "Seccomp_filters:\t1");
    {
        // the restarted image's vCPU and device threads stack their filter on the inherited one
        std::map<std::string, std::string> seen;
        EXPECT_EQ(wait_thread_filters(p, device_domain_threads(has_nic()), "2", "1", seen),
                  device_domain_threads(has_nic()))
            << ::testing::PrintToString(seen);
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
