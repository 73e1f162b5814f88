// The kvm hypervisor with the real vmm-anchor and the test guests (needs /dev/kvm; the lead
// runs these in a nested VM): the smp guest runs on 2 vCPUs and exits through the debug-exit
// port, which is reported as a stop chosen by the guest; the fault guest triple-faults, which
// is a crash with status 4. Both leave no state directory; so does a jailed anchor (vmmd --jail),
// whose state directory the jail made and vmmd removes.
#include "hypervisor/kvm/kvm_hypervisor.h"
#include "tests/support/test_paths.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include <unistd.h>

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

    ExitInfo run(const nlohmann::json& doc, bool* came_up, bool jail = false) {
        KvmConfig c;
        c.anchor_path = test::anchor_path();
        c.run_dir = root_ + "/run";
        c.manifest_dir = root_ + "/manifests";
        c.log_dir = root_ + "/logs";
        c.jail = jail;
        KvmHypervisor h(io_, c);
        std::optional<ExitInfo> exit;
        *came_up = false;
        h.set_event_sink([&](const DomainEvent& e) {
            if (e.kind == DomainEvent::Kind::Running) *came_up = true;
            if (e.kind == DomainEvent::Kind::Exited) exit = e.exit;
        });
        h.setup(parse_manifest(doc, root_));
        h.start(doc["name"]);
        const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(60);
        while (!exit && std::chrono::steady_clock::now() < end) {
            io_.restart();
            io_.run_for(std::chrono::milliseconds(20));
        }
        EXPECT_TRUE(exit.has_value()) << "the guest did not exit";
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
