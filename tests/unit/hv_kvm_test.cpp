// The kvm hypervisor's supervision with tests/tools/fake_anchor standing in for vmm-anchor (no
// /dev/kvm needed): spawn and the pid file, graceful stop through QMP, a crash with its exit
// status and a cleaned state directory, the escalation to SIGKILL, adoption by a new
// KvmHypervisor (as after a vmmd restart) and stale directories; cgroup placement of the anchors
// on a fake cgroupfs tree (plain directories and files, as jail_cgroup_test).
#include "hypervisor/kvm/kvm_hypervisor.h"
#include "hypervisor/kvm/state_dir_probe.h"
#include "hypervisor/proc_stats.h"
#include "jail/cgroup.h"
#include "run/state_dir.h"
#include "jail/systemd_scope.h"
#include "tests/support/fake_sysfs.h"
#include "tests/support/fake_systemd_bus.h"
#include "tests/support/test_paths.h"
#include "vfio/pci_driver_binder.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

namespace vmm::hv::kvm {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class KvmHvTest : public ::testing::Test {
protected:
    void SetUp() override {
        kernel_ = root_ + "/kernel.bin";
        std::ofstream(kernel_) << "not a kernel";
    }
    void TearDown() override {
        // Anchors outlive their hypervisor object by design: end the ones a test left.
        for (int pid : leftover_) {
            std::ifstream cmd("/proc/" + std::to_string(pid) + "/cmdline");
            std::string text((std::istreambuf_iterator<char>(cmd)), std::istreambuf_iterator<char>());
            if (text.find("fake_anchor") != std::string::npos) ::kill(pid, SIGKILL);
        }
        fs::remove_all(root_);
    }
    KvmConfig config() {
        KvmConfig c;
        c.anchor_path = test::build_dir() + "/tests/tools/fake_anchor";
        c.run_dir = root_ + "/run";
        c.manifest_dir = root_ + "/run/vmmd/manifests";
        c.log_dir = root_ + "/run/vmmd/logs";
        c.kill_grace = std::chrono::milliseconds(300);
        c.cgroup_root = root_ + "/cgroup";
        c.cgroup_parent = cgroup_parent_;
        return c;
    }
    DomainManifest manifest(const std::string& name, const std::string& script = "") {
        nlohmann::json doc = {{"name", name}, {"vcpus", 2}, {"memory_mb", 64}, {"kernel", kernel_}};
        if (!script.empty()) doc["cmdline"] = "fake-anchor: " + script;
        return parse_manifest(doc, root_);
    }
    std::unique_ptr<KvmHypervisor> make() { return make(config()); }
    std::unique_ptr<KvmHypervisor> make(const KvmConfig& c) {
        auto h = std::make_unique<KvmHypervisor>(io_, c);
        h->set_event_sink([this](const DomainEvent& e) { events_.push_back(e); });
        return h;
    }
    template <typename Pred> bool run_until(Pred pred, int ms = 8000) {
        const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
        while (!pred() && std::chrono::steady_clock::now() < end) {
            io_.restart();
            io_.run_for(std::chrono::milliseconds(10));
        }
        return pred();
    }
    const DomainEvent* last(DomainEvent::Kind kind) {
        for (auto it = events_.rbegin(); it != events_.rend(); ++it)
            if (it->kind == kind) return &*it;
        return nullptr;
    }
    int start(KvmHypervisor& h, const DomainManifest& m) {
        h.setup(m);
        h.start(m.name);
        const int pid = came_up();
        EXPECT_GT(pid, 0) << "never came up";
        return pid;
    }
    // Waits (up to `ms`) for the Running event; its pid (left to TearDown), or -1 without one.
    int came_up(int ms = 8000) {
        if (!run_until([&] { return last(DomainEvent::Kind::Running) != nullptr; }, ms)) return -1;
        leftover_.push_back(last(DomainEvent::Kind::Running)->pid);
        return leftover_.back();
    }
    // A graceful stop of `name`, and its Exited event.
    bool stopped(KvmHypervisor& h, const std::string& name) {
        h.stop(name, {false, std::chrono::milliseconds(5000)});
        return run_until([&] { return last(DomainEvent::Kind::Exited) != nullptr; });
    }

    std::string root_ = test::make_temp_dir("hvkvm");
    std::string kernel_;
    boost::asio::io_context io_;
    std::vector<DomainEvent> events_;
    std::vector<int> leftover_;
    std::string cgroup_parent_;  // "": no cgroup placement
};

TEST_F(KvmHvTest, SpawnsAnAnchorThatRunsWithItsStateDirectory) {
    auto h = make();
    const int pid = start(*h, manifest("one"));
    const std::string dir = h->state_dir("one");
    EXPECT_EQ(run::read_pid_file(dir), pid);
    EXPECT_TRUE(probe_state_dir(dir).live);
    const DomainStatus s = h->info("one");
    EXPECT_EQ(s.pid, pid);
    EXPECT_EQ(s.state_dir, dir);
    EXPECT_EQ(s.console, dir + "/cons") << "the anchor runs with --console pty";
    EXPECT_TRUE(fs::exists(dir + "/qmp"));
    const DomainUsage u = h->usage("one");
    EXPECT_GT(u.used_memory_mb + u.max_used_memory_mb, 0u) << "RSS from /proc";
    EXPECT_EQ(u.available_memory_mb, 64u);
    EXPECT_THROW(h->start("one"), Error) << "one anchor per domain";
}

TEST_F(KvmHvTest, GracefulStopPowersDownThroughQmpAndCleansUp) {
    auto h = make();
    start(*h, manifest("one"));
    h->stop("one", {false, std::chrono::milliseconds(5000)});
    ASSERT_TRUE(run_until([&] { return last(DomainEvent::Kind::Exited) != nullptr; }));
    const ExitInfo& e = last(DomainEvent::Kind::Exited)->exit;
    EXPECT_EQ(e.status, 0) << "system_powerdown: the guest powered off (" << e.detail << ")";
    EXPECT_FALSE(e.crashed);
    EXPECT_FALSE(fs::exists(h->state_dir("one")));
    EXPECT_EQ(h->info("one").pid, -1);
}

TEST_F(KvmHvTest, PowerDownIgnoredEscalatesToQuit) {
    auto h = make();
    start(*h, manifest("deaf", "ignore-powerdown"));
    h->stop("deaf", {false, std::chrono::milliseconds(200)});
    ASSERT_TRUE(run_until([&] { return last(DomainEvent::Kind::Exited) != nullptr; }));
    const ExitInfo& e = last(DomainEvent::Kind::Exited)->exit;
    EXPECT_EQ(e.status, 8) << "quit after the timeout: " << e.detail;
    EXPECT_FALSE(e.crashed);
}

// Running means the machine is built (the QMP socket is there), not only that the anchor took
// its state directory: one that dies in between (a kernel it cannot load) is a failed start.
// Up once the pid file and the QMP socket are there, also for an anchor that writes its
// --ready-fd byte before both (says so too early): the state directory decides, checked again
// at the polls.
TEST_F(KvmHvTest, ADomainRunsOnceItsQmpSocketIsThere) {
    for (const std::string script : {"qmp-after-ms=400", "ready-first qmp-after-ms=400"}) {
        SCOPED_TRACE(script);
        events_.clear();
        KvmConfig c = config();
        c.poll_interval = std::chrono::milliseconds(20);
        auto h = make(c);
        h->setup(manifest("slow", script));
        h->start("slow");
        ASSERT_TRUE(run_until([&] { return fs::exists(h->state_dir("slow") + "/pid"); }));
        run_until([] { return false; }, 200);  // ten polls with the pid file there
        EXPECT_EQ(last(DomainEvent::Kind::Running), nullptr) << "the pid file alone is not running";
        ASSERT_GT(came_up(), 0);
        EXPECT_TRUE(fs::exists(h->state_dir("slow") + "/qmp"));
        ASSERT_TRUE(stopped(*h, "slow"));
    }
}

// The anchor's byte on its --ready-fd is what reports it up, not the next poll: with polls a
// minute apart, the domain is up at once.
TEST_F(KvmHvTest, TheAnchorsReadyByteReportsItUpWithoutAPoll) {
    KvmConfig c = config();
    c.poll_interval = std::chrono::minutes(1);
    auto h = make(c);
    h->setup(manifest("quick"));
    h->start("quick");
    ASSERT_GT(came_up(5000), 0) << "not up within 5 s with polls a minute apart: the ready byte was not heard";
    EXPECT_TRUE(fs::exists(h->state_dir("quick") + "/qmp"));
    ASSERT_TRUE(stopped(*h, "quick"));
}

TEST_F(KvmHvTest, AnAnchorThatDiesBeforeItsMachineIsBuiltNeverRan) {
    auto h = make();
    h->setup(manifest("broken", "qmp-after-ms=2000 crash-after-ms=100 crash-status=70"));
    h->start("broken");
    ASSERT_TRUE(run_until([&] { return last(DomainEvent::Kind::Exited) != nullptr; }));
    EXPECT_EQ(last(DomainEvent::Kind::Running), nullptr);
    const ExitInfo& e = last(DomainEvent::Kind::Exited)->exit;
    EXPECT_EQ(e.status, 70);
    EXPECT_TRUE(e.crashed) << e.detail;
    EXPECT_FALSE(fs::exists(h->state_dir("broken"))) << "its state directory is cleaned";
}

TEST_F(KvmHvTest, WithoutQmpAStubbornAnchorIsKilled) {
    auto h = make();
    start(*h, manifest("stubborn", "no-qmp ignore-term"));
    h->stop("stubborn", {false, std::chrono::milliseconds(200)});
    ASSERT_TRUE(run_until([&] { return last(DomainEvent::Kind::Exited) != nullptr; }));
    const ExitInfo& e = last(DomainEvent::Kind::Exited)->exit;
    EXPECT_EQ(e.status, 128 + SIGKILL);
    EXPECT_THAT(e.detail, HasSubstr("SIGKILL"));
    EXPECT_FALSE(e.crashed) << "a stop that was asked for";
    EXPECT_FALSE(fs::exists(h->state_dir("stubborn"))) << "the killed anchor's directory is cleaned";
}

TEST_F(KvmHvTest, CrashIsReportedWithItsStatusAndTheStateDirectoryIsCleaned) {
    auto h = make();
    start(*h, manifest("fragile", "crash-after-ms=200 crash-status=6"));
    ASSERT_TRUE(run_until([&] { return last(DomainEvent::Kind::Exited) != nullptr; }));
    const ExitInfo& e = last(DomainEvent::Kind::Exited)->exit;
    EXPECT_EQ(e.status, 6);
    EXPECT_TRUE(e.crashed);
    EXPECT_THAT(e.detail, HasSubstr("KVM internal error"));
    EXPECT_FALSE(fs::exists(h->state_dir("fragile"))) << "the crashed anchor left it; the hypervisor removes it";
}

TEST_F(KvmHvTest, AnchorThatFailsAtStartIsACrashWithItsMessage) {
    KvmConfig c = config();
    auto h = make();
    DomainManifest m = manifest("early");
    h->setup(m);
    fs::remove(c.manifest_dir + "/early.json");  // the anchor cannot read its manifest: status 64
    h->start("early");
    ASSERT_TRUE(run_until([&] { return last(DomainEvent::Kind::Exited) != nullptr; }));
    EXPECT_EQ(last(DomainEvent::Kind::Running), nullptr);
    const ExitInfo& e = last(DomainEvent::Kind::Exited)->exit;
    EXPECT_EQ(e.status, 64);
    EXPECT_TRUE(e.crashed);
    EXPECT_THAT(e.detail, HasSubstr("early.json")) << "the anchor's own error line is quoted";
}

TEST_F(KvmHvTest, PauseAndResumeThroughQmp) {
    auto h = make();
    start(*h, manifest("one"));
    h->pause("one");
    EXPECT_TRUE(h->info("one").paused);
    h->resume("one");
    EXPECT_FALSE(h->info("one").paused);
}

TEST_F(KvmHvTest, ANewHypervisorAdoptsLiveAnchorsAndCleansStaleOnes) {
    int pid = -1;
    {
        auto first = make();
        pid = start(*first, manifest("survivor"));
    }  // vmmd goes away; the anchor does not
    ASSERT_EQ(::kill(pid, 0), 0) << "the anchor outlives the hypervisor object";
    // A stale directory as a killed anchor leaves it: pid file, lock free.
    fs::create_directories(root_ + "/run/kvm/ghost");
    std::ofstream(root_ + "/run/kvm/ghost/pid") << "999999\n";

    events_.clear();
    auto second = make();
    const auto adopted = second->adopt();
    ASSERT_EQ(adopted.size(), 1u);
    EXPECT_EQ(adopted[0].manifest.name, "survivor");
    EXPECT_EQ(adopted[0].manifest.vcpus, 2u) << "read from the anchor's --manifest";
    EXPECT_EQ(adopted[0].pid, pid);
    EXPECT_FALSE(fs::exists(root_ + "/run/kvm/ghost"));
    EXPECT_EQ(second->info("survivor").pid, pid);

    second->stop("survivor", {false, std::chrono::milliseconds(5000)});
    ASSERT_TRUE(run_until([&] { return last(DomainEvent::Kind::Exited) != nullptr; }));
    const ExitInfo& e = last(DomainEvent::Kind::Exited)->exit;
    EXPECT_FALSE(e.status.has_value()) << "not our child: no status";
    EXPECT_THAT(e.detail, HasSubstr("status unknown, adopted"));
    EXPECT_FALSE(e.crashed);
}

TEST_F(KvmHvTest, AdoptedAnchorThatDiesUncleanlyIsACrash) {
    int pid = -1;
    {
        auto first = make();
        pid = start(*first, manifest("doomed", "no-qmp"));
    }
    events_.clear();
    auto second = make();
    ASSERT_EQ(second->adopt().size(), 1u);
    ::kill(pid, SIGKILL);
    ASSERT_TRUE(run_until([&] { return last(DomainEvent::Kind::Exited) != nullptr; }));
    const ExitInfo& e = last(DomainEvent::Kind::Exited)->exit;
    EXPECT_TRUE(e.crashed) << e.detail;
    EXPECT_FALSE(fs::exists(second->state_dir("doomed")));
}

// One uid per jailed domain (--jail-uids). The fake anchor takes the identity it is given as its
// real uid, which is what the test and an adopting vmmd read from /proc/PID/status.
class KvmHvJailUidTest : public KvmHvTest {
protected:
    KvmConfig jail_config() {
        KvmConfig c = config();
        c.jail = true;
        c.jail_uids = jail::UidRange{70001, 70002};
        c.jail_gid = 990;
        return c;
    }
    DomainManifest manifest_as(const std::string& name, unsigned uid) {
        DomainManifest m = manifest(name);
        m.jail = DomainManifest::JailIdentitySpec{uid, uid};
        return m;
    }
    // start() reports the last Running event: clear them so it is this domain's.
    int run(KvmHypervisor& h, const DomainManifest& m) {
        events_.clear();
        return start(h, m);
    }
    static std::vector<std::string> args_of(int pid) { return read_process_cmdline(pid); }
    void stop_and_wait(KvmHypervisor& h, const std::string& name) {
        events_.clear();
        h.stop(name, {false, std::chrono::milliseconds(5000)});
        ASSERT_TRUE(run_until([&] { return last(DomainEvent::Kind::Exited) != nullptr; }));
    }
};

TEST_F(KvmHvJailUidTest, EachDomainRunsAsTheLowestFreeUidOfTheRangeAndGivesItBackAtExit) {
    auto h = make(jail_config());
    const int a = run(*h, manifest("a"));
    const int b = run(*h, manifest("b"));
    EXPECT_EQ(read_process_uid(a), 70001u);
    EXPECT_EQ(read_process_uid(b), 70002u);
    EXPECT_THAT(args_of(b), ::testing::IsSupersetOf({"--jail", "--jail-uid", "70002", "--jail-gid", "990"}));

    h->setup(manifest("c"));
    try {
        h->start("c");
        FAIL() << "a third domain started with two uids in the range";
    } catch (const std::exception& e) {
        EXPECT_THAT(e.what(), HasSubstr("no free jail uid for domain 'c': all 2 of --jail-uids 70001-70002"));
    }
    EXPECT_THAT(read_process_uid(a), ::testing::Optional(70001u)) << "the refusal touched no running domain";

    stop_and_wait(*h, "a");
    events_.clear();
    const int c = run(*h, manifest("c"));
    EXPECT_EQ(read_process_uid(c), 70001u) << "a's uid is free again";
    stop_and_wait(*h, "b");
    stop_and_wait(*h, "c");
}

TEST_F(KvmHvJailUidTest, WithoutARangeTheGidDefaultsToTheUidAndAManifestIdentityWins) {
    KvmConfig c = jail_config();
    c.jail_gid.reset();
    auto h = make(c);
    const int a = run(*h, manifest("a"));
    EXPECT_THAT(args_of(a), ::testing::IsSupersetOf({"--jail-uid", "70001", "--jail-gid", "70001"}));
    const int pinned = run(*h, manifest_as("pinned", 4242));
    EXPECT_EQ(read_process_uid(pinned), 4242u) << "outside the range: the controller's choice";
    const auto args = args_of(pinned);
    EXPECT_EQ(std::count(args.begin(), args.end(), "--jail-uid"), 0) << "the anchor takes it from its manifest";
    const int shared = run(*h, manifest_as("shared", 4242));
    EXPECT_EQ(read_process_uid(shared), 4242u) << "outside the range a uid may be shared";
    stop_and_wait(*h, "a");
    stop_and_wait(*h, "pinned");
    stop_and_wait(*h, "shared");
}

TEST_F(KvmHvJailUidTest, AManifestCannotTakeAUidOfTheRangeAnotherDomainRunsAs) {
    auto h = make(jail_config());
    run(*h, manifest("a"));
    h->setup(manifest_as("thief", 70001));
    try {
        h->start("thief");
        FAIL() << "two running domains as uid 70001";
    } catch (const std::exception& e) {
        EXPECT_THAT(e.what(), HasSubstr("asks for jail uid 70001, which domain 'a' runs as"));
    }
    EXPECT_FALSE(fs::exists(h->state_dir("thief")));
    // A free uid of the range is the manifest's to take, and then it is not given out.
    const int pinned = run(*h, manifest_as("pinned", 70002));
    EXPECT_EQ(read_process_uid(pinned), 70002u);
    h->setup(manifest("late"));
    EXPECT_THROW(h->start("late"), std::exception);
    stop_and_wait(*h, "a");
    stop_and_wait(*h, "pinned");
}

TEST_F(KvmHvJailUidTest, AnAdoptedAnchorKeepsItsUid) {
    {
        auto first = make(jail_config());
        run(*first, manifest("old"));
    }
    events_.clear();
    auto second = make(jail_config());
    ASSERT_EQ(second->adopt().size(), 1u);
    const int fresh = run(*second, manifest("fresh"));
    EXPECT_EQ(read_process_uid(fresh), 70002u) << "70001 belongs to the adopted domain";
    stop_and_wait(*second, "old");
    stop_and_wait(*second, "fresh");
}

// cgroup placement. The fake tree has what place_in_cgroup reads (cgroup.controllers) and takes
// what it writes as plain files; the test removes those files itself where cgroupfs would drop
// them with the directory.
class KvmHvCgroupTest : public KvmHvTest {
protected:
    void SetUp() override {
        KvmHvTest::SetUp();
        cgroup_parent_ = "vmmd/domains";
        fs::create_directories(parent_);
        std::ofstream(parent_ + "/cgroup.controllers") << "cpuset cpu io memory pids\n";
    }
    static std::string slurp(const std::string& path) {
        std::ifstream f(path);
        return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    }
    // What cgroupfs does by itself on rmdir: the interface files go with the directory.
    void drop_interface_files(const std::string& dir) {
        for (const char* f : {"cpu.max", "memory.max", "cgroup.procs"}) fs::remove(dir + "/" + f);
    }
    // Processes whose command line names this test's directory (a fake anchor of ours).
    std::vector<int> our_processes() {
        std::vector<int> pids;
        for (const auto& e : fs::directory_iterator("/proc")) {
            const std::string n = e.path().filename().string();
            if (n.find_first_not_of("0123456789") != std::string::npos) continue;
            std::ifstream cmd(e.path() / "cmdline");
            const std::string text((std::istreambuf_iterator<char>(cmd)), std::istreambuf_iterator<char>());
            if (text.find(root_ + "/run/vmmd/manifests/") != std::string::npos) pids.push_back(std::stoi(n));
        }
        return pids;
    }
    DomainManifest limited(const std::string& name) {
        return parse_manifest({{"name", name}, {"vcpus", 2}, {"memory_mb", 64}, {"kernel", kernel_}, {"cpu_quota", 1.5}},
                              root_);
    }
    // --systemd-slice machine.slice, PID 1 being a FakeSystemdBus at <root>/systemd-private
    KvmConfig systemd_config() {
        KvmConfig c = config();
        c.cgroup_parent.clear();
        c.systemd_slice = "machine.slice";
        c.systemd_bus = root_ + "/systemd-private";
        return c;
    }
    std::string parent_ = root_ + "/cgroup/vmmd/domains";
};

TEST_F(KvmHvCgroupTest, TheAnchorRunsInItsCgroupWithTheLimitsWhichGoesWithIt) {
    auto h = make();
    const int pid = start(*h, limited("one"));
    const std::string cg = parent_ + "/one";
    EXPECT_EQ(slurp(cg + "/cgroup.procs"), std::to_string(pid));
    EXPECT_EQ(slurp(cg + "/cpu.max"), "150000 100000") << "cpu_quota 1.5";
    EXPECT_EQ(slurp(cg + "/memory.max"), std::to_string(jail::anchor_memory_limit(64, 2)));
    EXPECT_EQ(slurp(parent_ + "/cgroup.subtree_control"), "+cpu +memory");

    drop_interface_files(cg);
    h->stop("one", {false, std::chrono::milliseconds(5000)});
    ASSERT_TRUE(run_until([&] { return last(DomainEvent::Kind::Exited) != nullptr; }));
    EXPECT_FALSE(last(DomainEvent::Kind::Exited)->exit.crashed);
    EXPECT_FALSE(fs::exists(cg)) << "the domain's cgroup is removed once its anchor has exited";
    EXPECT_TRUE(fs::exists(parent_)) << "the parent stays";

    // Without cpu_quota: no cpu limit, memory still bounded.
    events_.clear();
    start(*h, manifest("two"));
    EXPECT_EQ(slurp(parent_ + "/two/cpu.max"), "max 100000");
    EXPECT_EQ(slurp(parent_ + "/two/memory.max"), std::to_string(jail::anchor_memory_limit(64, 2)));
}

TEST_F(KvmHvCgroupTest, AFailureToPlaceIsTheStartErrorAndLeavesNoAnchor) {
    std::ofstream(parent_ + "/cgroup.controllers") << "cpu pids\n";  // memory not handed down
    auto h = make();
    h->setup(limited("one"));
    try {
        h->start("one");
        FAIL() << "started without its cgroup";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("kvm: cannot place the anchor in cgroup " + parent_ + "/one"));
        EXPECT_THAT(e.what(), HasSubstr("\"memory\" is not available"));
    }
    EXPECT_TRUE(our_processes().empty()) << "the spawned anchor was killed and reaped";
    run_until([] { return false; }, 300);
    EXPECT_TRUE(events_.empty()) << "no Running or Exited event for a start that failed";
    EXPECT_FALSE(probe_state_dir(h->state_dir("one")).live);
    EXPECT_EQ(h->info("one").pid, -1);
    EXPECT_FALSE(fs::exists(parent_ + "/one"));

    // Once the cgroup tree is right the same domain starts.
    std::ofstream(parent_ + "/cgroup.controllers") << "cpu memory pids\n";
    const int pid = start(*h, limited("one"));
    EXPECT_EQ(slurp(parent_ + "/one/cgroup.procs"), std::to_string(pid));
}

TEST_F(KvmHvCgroupTest, AnAdoptedAnchorsCgroupIsRemovedAtItsExit) {
    int pid = -1;
    {
        auto first = make();
        pid = start(*first, limited("survivor"));
    }
    const std::string cg = parent_ + "/survivor";
    ASSERT_TRUE(fs::is_directory(cg));
    events_.clear();
    auto second = make();
    ASSERT_EQ(second->adopt().size(), 1u);
    drop_interface_files(cg);
    ::kill(pid, SIGKILL);
    ASSERT_TRUE(run_until([&] { return last(DomainEvent::Kind::Exited) != nullptr; }));
    EXPECT_FALSE(fs::exists(cg));
}

TEST_F(KvmHvCgroupTest, TheParentCannotLeaveTheCgroupTree) {
    KvmConfig c = config();
    c.cgroup_parent = "vmmd/../../etc";
    EXPECT_THROW(KvmHypervisor(io_, c), Error);
    c.cgroup_parent = "/vmmd/domains/";
    EXPECT_NO_THROW(KvmHypervisor(io_, c)) << "leading and trailing slashes are fine";
}

// --systemd-slice: right after the spawn vmmd asks PID 1 (here tests/support/fake_systemd_bus.h)
// for the scope vmm-<name>.scope holding the anchor's pid, with the cgroup placement's limits; a
// refusal kills the anchor, whose exit says why.
TEST_F(KvmHvCgroupTest, UnderSystemdTheAnchorGoesIntoAScopeOfTheSliceWithTheLimits) {
    test::FakeSystemdBus bus(root_ + "/systemd-private");
    auto h = make(systemd_config());
    const int pid = start(*h, limited("one"));
    jail::ScopeRequest want;
    want.unit = "vmm-one.scope";
    want.slice = "machine.slice";
    want.description = "vmm domain one";
    want.pid = pid;
    want.memory_max = jail::anchor_memory_limit(64, 2);
    want.cpu_quota_per_sec_us = 1500000;  // cpu_quota 1.5
    ASSERT_EQ(bus.calls().size(), 1u);
    EXPECT_EQ(bus.calls()[0], jail::start_transient_unit_message(want, 1));
    EXPECT_FALSE(fs::exists(parent_ + "/one")) << "no cgroupfs placement besides";
    h->stop("one", {false, std::chrono::milliseconds(5000)});
    ASSERT_TRUE(run_until([&] { return last(DomainEvent::Kind::Exited) != nullptr; }));

    // Without cpu_quota: no CPUQuota, memory still bounded.
    events_.clear();
    const int two = start(*h, manifest("two"));
    want.unit = "vmm-two.scope";
    want.description = "vmm domain two";
    want.pid = two;
    want.cpu_quota_per_sec_us.reset();
    ASSERT_EQ(bus.calls().size(), 2u);
    EXPECT_EQ(bus.calls()[1], jail::start_transient_unit_message(want, 1));

    // systemd says no: the start fails with its words, and the spawned anchor is gone.
    bus.fail_with("org.freedesktop.systemd1.UnitExists", "Unit vmm-three.scope was already loaded or has a fragment file.");
    events_.clear();
    h->setup(manifest("three"));
    h->start("three");
    ASSERT_TRUE(run_until([&] { return last(DomainEvent::Kind::Exited) != nullptr; }));
    EXPECT_EQ(last(DomainEvent::Kind::Running), nullptr) << "never reported up outside its scope";
    const auto* exit = last(DomainEvent::Kind::Exited);
    EXPECT_TRUE(exit->exit.crashed);
    EXPECT_THAT(exit->exit.detail, HasSubstr("cannot put the anchor into vmm-three.scope of machine.slice: systemd: "
                                             "org.freedesktop.systemd1.UnitExists: Unit vmm-three.scope was already loaded"));
    EXPECT_EQ(h->info("three").pid, -1);
    EXPECT_FALSE(probe_state_dir(h->state_dir("three")).live);
    const auto left = our_processes();
    EXPECT_EQ(std::count(left.begin(), left.end(), exit->pid), 0) << "the anchor was killed and reaped";
    EXPECT_EQ(bus.problem(), "");
}

// PID 1 may be slow: the scope is asked for off vmmd's thread, which goes on with its work
// (here a timer) meanwhile; the domain is up only once its scope is, and an answer that does
// not come within systemd_timeout fails the start like a refusal.
TEST_F(KvmHvCgroupTest, ASlowOrSilentSystemdDoesNotHoldUpVmmd) {
    test::FakeSystemdBus bus(root_ + "/systemd-private");
    KvmConfig c = systemd_config();
    c.systemd_timeout = std::chrono::milliseconds(3000);
    auto h = make(c);
    using Clock = std::chrono::steady_clock;

    // slow, but within the timeout: up after the answer, and only then
    bus.delay_answers(std::chrono::milliseconds(1500));
    h->setup(manifest("slow"));
    auto t0 = Clock::now();
    h->start("slow");
    EXPECT_LT(Clock::now() - t0, std::chrono::milliseconds(1000)) << "start() waited for systemd";
    bool ticked = false;
    boost::asio::steady_timer tick(io_, std::chrono::milliseconds(50));
    tick.async_wait([&](const boost::system::error_code&) { ticked = true; });
    ASSERT_TRUE(run_until([&] { return ticked; }, 1000)) << "the io thread was blocked";
    ASSERT_TRUE(run_until([&] { return last(DomainEvent::Kind::Running) != nullptr; }));
    const auto up = Clock::now();  // within one 10 ms slice of run_until after the event
    ASSERT_EQ(bus.answered().size(), 1u);
    EXPECT_GE(up, bus.answered()[0]) << "reported up before systemd answered";
    h->stop("slow", {false, std::chrono::milliseconds(5000)});
    ASSERT_TRUE(run_until([&] { return last(DomainEvent::Kind::Exited) != nullptr; }));

    // a late refusal, the anchor long up by then: it goes without ever being reported up
    // (polled every millisecond here, so a poll between the kill and its exit would show)
    events_.clear();
    c.poll_interval = std::chrono::milliseconds(1);
    h = make(c);
    bus.fail_with("org.freedesktop.systemd1.UnitExists", "Unit vmm-late.scope was already loaded.");
    bus.delay_answers(std::chrono::milliseconds(700));
    h->setup(manifest("late"));
    h->start("late");
    ASSERT_TRUE(run_until([&] { return last(DomainEvent::Kind::Exited) != nullptr; }));
    EXPECT_EQ(last(DomainEvent::Kind::Running), nullptr);
    EXPECT_THAT(last(DomainEvent::Kind::Exited)->exit.detail, HasSubstr("UnitExists"));
    bus.fail_with("", "");

    // silent past the timeout: the anchor goes, and its exit says why
    events_.clear();
    bus.delay_answers(std::chrono::milliseconds(8000));
    h->setup(manifest("silent"));
    t0 = Clock::now();
    h->start("silent");
    EXPECT_LT(Clock::now() - t0, std::chrono::milliseconds(1000));
    ASSERT_TRUE(run_until([&] { return last(DomainEvent::Kind::Exited) != nullptr; }));
    EXPECT_EQ(last(DomainEvent::Kind::Running), nullptr);
    EXPECT_THAT(last(DomainEvent::Kind::Exited)->exit.detail,
                HasSubstr("cannot put the anchor into vmm-silent.scope of machine.slice: systemd bus: no answer in time"));
    EXPECT_TRUE(our_processes().empty());
    EXPECT_FALSE(probe_state_dir(h->state_dir("silent")).live);
}

TEST_F(KvmHvCgroupTest, ASystemdSliceIsASliceNameAndExcludesACgroupParent) {
    KvmConfig c = config();
    c.systemd_slice = "machine.slice";
    EXPECT_THROW(KvmHypervisor(io_, c), Error) << "with a cgroup parent";
    c.cgroup_parent.clear();
    EXPECT_NO_THROW(KvmHypervisor(io_, c));
    for (const char* bad : {"machine", ".slice", "a/b.slice"}) {
        c.systemd_slice = bad;
        EXPECT_THROW(KvmHypervisor(io_, c), Error) << bad;
    }
}

// pci_reserve binds the device to vfio-pci through the configured binder (on a fake sysfs whose
// writer plays the kernel's driver core) and pci_release gives it back to its host driver; a
// refused device leaves no reservation behind.
TEST_F(KvmHvTest, PciReserveBindsToVfioPciAndReleaseRestoresTheDriver) {
    test::FakeSysfs fake;
    test::populate_example_host(fake);
    KvmConfig c = config();
    c.pci_binder = std::make_shared<vfio::PciDriverBinder>(vfio::HostPaths::under(fake.sys(), fake.proc()), fake.kernel());
    KvmHypervisor h(io_, c);
    h.pci_reserve("0000:08:00.1");
    EXPECT_EQ(fake.driver_of("0000:08:00.1"), "vfio-pci");
    EXPECT_EQ(h.pci_reserved().count("0000:08:00.1"), 1u);
    EXPECT_THROW(h.pci_reserve("0000:08:00.1"), Error) << "one domain at a time";
    EXPECT_EQ(fake.driver_of("0000:08:00.1"), "vfio-pci");
    h.pci_release("0000:08:00.1");
    EXPECT_EQ(fake.driver_of("0000:08:00.1"), "snd_hda_intel");
    EXPECT_TRUE(h.pci_reserved().empty());

    try {
        h.pci_reserve("0000:00:02.0");
        FAIL() << "the boot VGA is the host's";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("boot VGA"));
    }
    EXPECT_TRUE(h.pci_reserved().empty());
    EXPECT_NE(fake.driver_of("0000:00:02.0"), "vfio-pci");
}

}  // namespace
}  // namespace vmm::hv::kvm
