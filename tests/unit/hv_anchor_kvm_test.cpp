// The kvm hypervisor with the real vmm-anchor and the test guests (needs /dev/kvm; the lead
// runs these in a nested VM): the smp guest runs on 2 vCPUs and exits through the debug-exit
// port, which is reported as a stop chosen by the guest; the fault guest triple-faults, which
// is a crash with status 4. Both leave no state directory; so does a jailed anchor (vmmd --jail),
// whose state directory the jail made and vmmd removes. With --jail-uids each jailed anchor runs
// as a uid of its own.
#include "hypervisor/kvm/kvm_hypervisor.h"
#include "hypervisor/proc_stats.h"
#include "jail/cgroup.h"
#include "tests/support/proc_status.h"
#include "tests/support/test_paths.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>

#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace vmm::hv::kvm {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class AnchorKvmTest : public ::testing::Test {
protected:
    void SetUp() override {
        const std::string why = test::kvm_unavailable_reason();
        if (!why.empty()) GTEST_SKIP() << why;
    }
    void TearDown() override { fs::remove_all(root_); }

    KvmConfig config(bool jail) const {
        KvmConfig c;
        c.anchor_path = test::anchor_path();
        c.run_dir = root_ + "/run";
        c.manifest_dir = root_ + "/manifests";
        c.log_dir = root_ + "/logs";
        c.jail = jail;
        return c;
    }
    // Runs the io_context until `done` (or a minute has passed); `done` afterwards.
    template <typename Pred> bool run_until(Pred done) {
        const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(60);
        while (!done() && std::chrono::steady_clock::now() < end) {
            io_.restart();
            io_.run_for(std::chrono::milliseconds(20));
        }
        return done();
    }

    ExitInfo run(const nlohmann::json& doc, bool* came_up, bool jail = false) {
        KvmHypervisor h(io_, config(jail));
        std::optional<ExitInfo> exit;
        *came_up = false;
        h.set_event_sink([&](const DomainEvent& e) {
            if (e.kind == DomainEvent::Kind::Running) *came_up = true;
            if (e.kind == DomainEvent::Kind::Exited) exit = e.exit;
        });
        h.setup(parse_manifest(doc, root_));
        h.start(doc["name"]);
        EXPECT_TRUE(run_until([&] { return exit.has_value(); })) << "the guest did not exit";
        EXPECT_FALSE(fs::exists(h.state_dir(doc["name"])));
        return exit.value_or(ExitInfo{});
    }

    std::string root_ = test::make_temp_dir("hvanchor");
    boost::asio::io_context io_;
};

TEST_F(AnchorKvmTest, SmpGuestExitsThroughDebugExitAsAGuestChoice) {
    bool up = false;
    const ExitInfo e = run({{"name", "smp"}, {"vcpus", 2}, {"memory_mb", 32}, {"kernel", test::guest_path("smp.elf")}}, &up);
    EXPECT_EQ(e.status, (2 << 1) | 1) << e.detail;
    EXPECT_FALSE(e.crashed);
    EXPECT_THAT(e.detail, HasSubstr("debug-exit"));
}

TEST_F(AnchorKvmTest, AJailedAnchorRunsTheGuestAndItsExitIsTheGuestsChoice) {
    if (::geteuid() != 0) GTEST_SKIP() << "the jail needs root";
    bool up = false;
    const ExitInfo e =
        run({{"name", "smpjail"}, {"vcpus", 2}, {"memory_mb", 32}, {"kernel", test::guest_path("smp.elf")}}, &up, true);
    EXPECT_EQ(e.status, (2 << 1) | 1) << e.detail;
    EXPECT_FALSE(e.crashed) << e.detail;
    EXPECT_THAT(e.detail, HasSubstr("debug-exit"));
}

// vmmd --jail --jail-uids: two domains at once, each anchor jailed as a uid of its own (the real
// vmm-anchor switches to it: all four of the Uid line), and the uid given back at exit.
TEST_F(AnchorKvmTest, JailedDomainsRunAsUidsOfTheirOwnFromTheRange) {
    if (::geteuid() != 0) GTEST_SKIP() << "the jail needs root";
    ::chmod(root_.c_str(), 0755);
    KvmConfig c = config(true);
    c.jail_uids = jail::UidRange{70001, 70009};
    KvmHypervisor h(io_, c);
    std::map<std::string, int> up;
    std::map<std::string, ExitInfo> exits;
    h.set_event_sink([&](const DomainEvent& e) {
        if (e.kind == DomainEvent::Kind::Running) up[e.name] = e.pid;
        if (e.kind == DomainEvent::Kind::Exited) exits[e.name] = e.exit;
    });
    auto idle = [&](const std::string& name) {
        return parse_manifest({{"name", name}, {"memory_mb", 16}, {"kernel", test::guest_path("idle.bin")},
                               {"flat", {{"load_address", "0x100000"}, {"entry", "0x100000"}, {"mode", "protected32"}}}},
                              root_);
    };
    for (const char* name : {"one", "two"}) {
        h.setup(idle(name));
        h.start(name);
    }
    ASSERT_TRUE(run_until([&] { return up.size() == 2; })) << "both domains come up";
    EXPECT_EQ(test::proc_status_line(up["one"], "Uid"), "Uid:\t70001\t70001\t70001\t70001");
    EXPECT_EQ(test::proc_status_line(up["two"], "Uid"), "Uid:\t70002\t70002\t70002\t70002");
    EXPECT_TRUE(exits.empty()) << exits.begin()->second.detail;

    h.stop("one", {true, std::chrono::milliseconds(5000)});
    ASSERT_TRUE(run_until([&] { return exits.count("one") == 1; }));
    h.setup(idle("three"));
    h.start("three");
    ASSERT_TRUE(run_until([&] { return up.count("three") == 1; }));
    EXPECT_EQ(test::proc_status_line(up["three"], "Uid"), "Uid:\t70001\t70001\t70001\t70001") << "one's uid, free again";
    for (const char* name : {"two", "three"}) h.stop(name, {true, std::chrono::milliseconds(5000)});
    ASSERT_TRUE(run_until([&] { return exits.size() == 3; }));
    for (const auto& [name, e] : exits) {
        EXPECT_FALSE(e.crashed) << name << ": " << e.detail;
        EXPECT_FALSE(fs::exists(h.state_dir(name))) << name;
    }
}

// The real anchor writes its --ready-fd byte once its QMP socket listens, also jailed and in a
// pid namespace of its own (the keeper shed the descriptor, the anchor kept it): with polls a
// minute apart each domain is up at once.
TEST_F(AnchorKvmTest, TheAnchorSaysItIsReadyOnItsReadyFd) {
    struct Case {
        const char* name;
        bool jail, pid_ns;
    };
    for (const Case& k : {Case{"plain", false, false}, Case{"jailed", true, false}, Case{"pidns", true, true}}) {
        if (k.jail && ::geteuid() != 0) continue;  // the jail needs root
        KvmConfig c = config(k.jail);
        c.jail_pid_namespace = k.pid_ns;
        c.poll_interval = std::chrono::minutes(1);
        KvmHypervisor h(io_, c);
        bool up = false;
        std::optional<ExitInfo> exit;
        h.set_event_sink([&](const DomainEvent& e) {
            if (e.kind == DomainEvent::Kind::Running) up = true;
            if (e.kind == DomainEvent::Kind::Exited) exit = e.exit;
        });
        h.setup(parse_manifest({{"name", k.name}, {"memory_mb", 16}, {"kernel", test::guest_path("idle.bin")},
                                {"flat", {{"load_address", "0x100000"}, {"entry", "0x100000"}, {"mode", "protected32"}}}},
                               root_));
        h.start(k.name);
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
        while (!up && !exit && std::chrono::steady_clock::now() < deadline) {
            io_.restart();
            io_.run_for(std::chrono::milliseconds(20));
        }
        EXPECT_TRUE(up) << k.name << ": not up within 20 s with polls a minute apart"
                        << (exit ? "; it exited: " + exit->detail : std::string());
        h.stop(k.name, {true, std::chrono::milliseconds(5000)});
        ASSERT_TRUE(run_until([&] { return exit.has_value(); })) << k.name;
        EXPECT_FALSE(exit->crashed) << k.name << ": " << exit->detail;
    }
}

// vmmd --jail --jail-pid-ns with real cgroup v2 placement: vmmd spawns the keeper and places it;
// the anchor, the keeper's child (pid 1 of its own namespace), is in the domain's cgroup too,
// even if it was forked before the keeper was moved; the domain's usage is the anchor's.
TEST_F(AnchorKvmTest, AnAnchorInItsOwnPidNamespaceSharesItsKeepersCgroup) {
    if (::geteuid() != 0) GTEST_SKIP() << "the jail needs root";
    // The cgroup2 hierarchy: the host's, or mounted here (the nested VM's init mounts none).
    std::string cg = "/sys/fs/cgroup";
    bool mounted = false;
    if (!fs::exists(cg + "/cgroup.controllers")) {
        cg = root_ + "/cgroup2";
        fs::create_directories(cg);
        if (::mount("none", cg.c_str(), "cgroup2", 0, nullptr) != 0)
            GTEST_SKIP() << "no cgroup v2 hierarchy here (mount: " << std::strerror(errno) << ")";
        mounted = true;
    }
    const std::string top = "vmmtest-" + std::to_string(::getpid());
    auto enable = [](const std::string& dir) {
        std::ofstream(dir + "/cgroup.subtree_control") << "+cpu +memory";
    };
    enable(cg);
    fs::create_directories(cg + "/" + top);
    enable(cg + "/" + top);
    struct Cleanup {
        std::string top_dir;
        std::string mountpoint;
        ~Cleanup() {
            ::rmdir((top_dir + "/domains").c_str());
            ::rmdir(top_dir.c_str());
            if (!mountpoint.empty()) ::umount2(mountpoint.c_str(), MNT_DETACH);
        }
    } cleanup{cg + "/" + top, mounted ? cg : ""};

    KvmConfig c = config(true);
    c.jail_pid_namespace = true;
    c.cgroup_root = cg;
    c.cgroup_parent = top + "/domains";
    KvmHypervisor h(io_, c);
    int up = 0;
    std::optional<ExitInfo> exit;
    h.set_event_sink([&](const DomainEvent& e) {
        if (e.kind == DomainEvent::Kind::Running) up = e.pid;
        if (e.kind == DomainEvent::Kind::Exited) exit = e.exit;
    });
    h.setup(parse_manifest({{"name", "pidns"}, {"memory_mb", 16}, {"kernel", test::guest_path("idle.bin")},
                            {"flat", {{"load_address", "0x100000"}, {"entry", "0x100000"}, {"mode", "protected32"}}}},
                           root_));
    try {
        h.start("pidns");
    } catch (const std::exception& e) {
        GTEST_SKIP() << "this cgroup v2 hierarchy does not take the domain: " << e.what();
    }
    ASSERT_TRUE(run_until([&] { return up > 0 || exit.has_value(); }));
    ASSERT_GT(up, 0) << (exit ? exit->detail : "");
    const std::vector<int> children = read_process_children(up);
    ASSERT_EQ(children.size(), 1u) << "the keeper has the anchor as its one child";
    const int anchor = children.front();
    EXPECT_EQ(test::proc_status_line(anchor, "NSpid"), "NSpid:\t" + std::to_string(anchor) + "\t1");
    const std::string want = "/" + top + "/domains/pidns";
    EXPECT_EQ(jail::cgroup_of(up), want);
    EXPECT_EQ(jail::cgroup_of(anchor), want);
    // The domain's CPU time is the keeper's (the start-up before the fork) and the anchor's.
    auto cpu_of_both = [&] {
        const auto k = read_process_usage(up);
        const auto a = read_process_usage(anchor);
        return k && a ? k->cpu_total_ns + a->cpu_total_ns : 0;
    };
    const std::uint64_t before = cpu_of_both();
    const DomainUsage u = h.usage("pidns");
    const std::uint64_t after = cpu_of_both();
    EXPECT_GE(u.cpu_total_ns, before);
    EXPECT_LE(u.cpu_total_ns, after);

    h.stop("pidns", {true, std::chrono::milliseconds(5000)});
    ASSERT_TRUE(run_until([&] { return exit.has_value(); }));
    EXPECT_FALSE(exit->crashed) << exit->detail;
    EXPECT_FALSE(fs::exists("/proc/" + std::to_string(anchor))) << "the anchor ended with its keeper";
    EXPECT_FALSE(fs::exists(cg + want)) << "the domain's cgroup is removed";
}

// A kernel the anchor cannot load (no bzImage, no multiboot header, no "flat"): the anchor has
// taken its state directory by then, but the domain never counts as running (vmmd waits for
// the QMP socket, made once the machine is built); the loader's message is the exit's detail.
TEST_F(AnchorKvmTest, AKernelThatCannotBeLoadedFailsTheStartInsteadOfRunning) {
    const std::string bad = root_ + "/not-a-kernel.bin";
    std::ofstream(bad) << std::string(4096, 'x');
    bool up = true;
    const ExitInfo e = run({{"name", "badkernel"}, {"memory_mb", 16}, {"kernel", bad}}, &up);
    EXPECT_FALSE(up) << "reported running: " << e.detail;
    EXPECT_TRUE(e.crashed) << e.detail;
    EXPECT_THAT(e.detail, HasSubstr("is not a bzImage or multiboot image")) << e.detail;
}

TEST_F(AnchorKvmTest, TripleFaultIsACrash) {
    bool up = false;
    const ExitInfo e = run({{"name", "fault"}, {"memory_mb", 16}, {"kernel", test::guest_path("fault.bin")},
                            {"flat", {{"load_address", "0x100000"}, {"entry", "0x100000"}, {"mode", "protected32"}}}},
                           &up);
    EXPECT_EQ(e.status, 4) << e.detail;
    EXPECT_TRUE(e.crashed);
    EXPECT_THAT(e.detail, HasSubstr("triple fault"));
}

}  // namespace
}  // namespace vmm::hv::kvm
