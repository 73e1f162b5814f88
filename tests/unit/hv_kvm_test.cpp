// The kvm hypervisor's supervision with tests/tools/fake_anchor standing in for vmm-anchor (no
// /dev/kvm needed): spawn and the pid file, graceful stop through QMP, a crash with its exit
// status and a cleaned state directory, the escalation to SIGKILL, adoption by a new
// KvmHypervisor (as after a vmmd restart) and stale directories.
#include "hypervisor/kvm/kvm_hypervisor.h"
#include "hypervisor/kvm/state_dir_probe.h"
#include "run/state_dir.h"
#include "tests/support/test_paths.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

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
        return c;
    }
    DomainManifest manifest(const std::string& name, const std::string& script = "") {
        nlohmann::json doc = {{"name", name}, {"vcpus", 2}, {"memory_mb", 64}, {"kernel", kernel_}};
        if (!script.empty()) doc["cmdline"] = "fake-anchor: " + script;
        return parse_manifest(doc, root_);
    }
    std::unique_ptr<KvmHypervisor> make() {
        auto h = std::make_unique<KvmHypervisor>(io_, config());
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
        EXPECT_TRUE(run_until([&] { return last(DomainEvent::Kind::Running) != nullptr; })) << "never came up";
        const int pid = last(DomainEvent::Kind::Running)->pid;
        leftover_.push_back(pid);
        return pid;
    }

    std::string root_ = test::make_temp_dir("hvkvm");
    std::string kernel_;
    boost::asio::io_context io_;
    std::vector<DomainEvent> events_;
    std::vector<int> leftover_;
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

}  // namespace
}  // namespace vmm::hv::kvm
