// vmm-anchor driven through its QMP sockets as EVE's pillar and QEMU's clients drive QEMU,
// with the project's idle/powerdown/acpi/cpuid guests under real KVM. Needs /dev/kvm.
#include "qmp/qmp_client.h"
#include "tests/support/elf_core.h"
#include "tests/support/process.h"
#include "tests/support/test_paths.h"

#include <sys/stat.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <thread>

namespace vmm::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using ::testing::HasSubstr;
using Json = qmp::Json;

constexpr const char* kFlat32 = R"("flat": {"load_address": "0x100000", "entry": "0x100000", "mode": "protected32"})";

std::string slurp(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

class AnchorQmpTest : public ::testing::Test {
protected:
    void SetUp() override {
        if (auto why = kvm_unavailable_reason(); !why.empty()) GTEST_SKIP() << why;
        dir_ = make_temp_dir("anchor-qmp");
    }
    void TearDown() override {
        if (anchor_.joinable()) anchor_.join();
        if (!dir_.empty()) fs::remove_all(dir_);
    }
    std::string manifest(const std::string& name, const std::string& guest, const std::string& extra) {
        const std::string path = dir_ + "/" + name + ".json";
        std::ofstream(path) << "{\"name\": \"" << name << "\", \"kernel\": \"" << guest_path(guest)
                            << "\", \"memory_mb\": 16, " << kFlat32 << (extra.empty() ? "" : ", ") << extra << "}";
        return path;
    }
    void start(const std::string& manifest_path) {
        anchor_ = std::thread([this, manifest_path] {
            result_ = run_process({anchor_path(), "--manifest", manifest_path, "--run-dir", dir_ + "/run"}, 90s);
        });
    }
    ProcessResult finish() {
        anchor_.join();
        return result_;
    }
    std::string sock(const std::string& name, const std::string& leaf) { return dir_ + "/run/kvm/" + name + "/" + leaf; }
    // The next event named `name` on `c`, skipping others (bounded).
    static Json wait_event(qmp::QmpClient& c, const std::string& name) {
        for (int i = 0; i < 20; ++i) {
            auto e = c.next_event(10s);
            if (!e) break;
            if ((*e)["event"] == name) return *e;
        }
        ADD_FAILURE() << "no " << name << " event";
        return Json();
    }

    std::string dir_;
    std::thread anchor_;
    ProcessResult result_;
};

TEST_F(AnchorQmpTest, PillarsStartPauseResumeQuitFlowOnTwoSockets) {
    start(manifest("idle", "idle.bin", R"("start_paused": true, "on_poweroff": "pause")"));
    qmp::QmpClient events(sock("idle", "listener.qmp"), 20s);
    {
        // pillar: a fresh connection per command.
        qmp::QmpClient c(sock("idle", "qmp"), 5s);
        const Json st = c.execute("query-status");
        // Exactly these three members (pillar decodes the reply strictly); order is free.
        EXPECT_EQ(nlohmann::json(st), (nlohmann::json{{"running", false}, {"singlestep", false}, {"status", "prelaunch"}}))
            << st.dump();
        c.execute("cont");
        EXPECT_EQ(c.execute("query-status")["status"], "running");
    }
    EXPECT_EQ(wait_event(events, "RESUME").contains("data"), false);
    {
        qmp::QmpClient c(sock("idle", "qmp"), 5s);
        c.execute("stop");
        EXPECT_EQ(c.execute("query-status")["status"], "paused");
        const Json cpus = c.execute("query-cpus-fast");
        ASSERT_EQ(cpus.size(), 1u);
        EXPECT_GT(cpus[0]["thread-id"].get<int>(), 0);
        EXPECT_EQ(c.execute("query-name")["name"], "idle");
        c.execute("cont");
    }
    wait_event(events, "STOP");
    wait_event(events, "RESUME");
    // The guest's first line is in the console log before quit (the process's stdout too).
    for (int i = 0; i < 200 && slurp(sock("idle", "console.log")).find("idle: up") == std::string::npos; ++i)
        std::this_thread::sleep_for(50ms);
    {
        qmp::QmpClient c(sock("idle", "qmp"), 5s);
        EXPECT_EQ(c.execute("quit"), Json::object());
    }
    const Json shutdown = wait_event(events, "SHUTDOWN");
    EXPECT_EQ(shutdown["data"], (Json{{"guest", false}, {"reason", "host-qmp-quit"}}));
    const auto r = finish();
    EXPECT_THAT(r.out, HasSubstr("idle: up")) << r.err;
    EXPECT_EQ(r.exit_status, 8) << r.err;
    EXPECT_FALSE(fs::exists(dir_ + "/run/kvm/idle")) << "state directory removed after quit";
}

// system_powerdown is an ACPI power-button press: the guest sees it through PM1 and the SCI,
// powers off through PM1_CNT with \_S5's SLP_TYP, and (on_poweroff pause, pillar's
// -no-shutdown) the domain stays in run-state shutdown until quit.
TEST_F(AnchorQmpTest, SystemPowerdownReachesAnAcpiGuestThatPowersOff) {
    start(manifest("pwr", "powerdown.bin", R"("on_poweroff": "pause")"));
    qmp::QmpClient events(sock("pwr", "listener.qmp"), 20s);
    // Wait until the guest enabled the power button (it prints before polling).
    for (int i = 0; i < 200; ++i) {
        std::this_thread::sleep_for(50ms);
        std::ifstream log(sock("pwr", "console.log"));
        std::string text((std::istreambuf_iterator<char>(log)), {});
        if (text.find("powerdown: waiting") != std::string::npos) break;
    }
    {
        qmp::QmpClient c(sock("pwr", "qmp"), 5s);
        c.execute("system_powerdown");
    }
    const Json pd = wait_event(events, "POWERDOWN");
    EXPECT_FALSE(pd.contains("data")) << pd.dump();
    const Json sd = wait_event(events, "SHUTDOWN");
    EXPECT_EQ(sd["data"], (Json{{"guest", true}, {"reason", "guest-shutdown"}}));
    {
        qmp::QmpClient c(sock("pwr", "qmp"), 5s);
        EXPECT_EQ(c.execute("query-status")["status"], "shutdown");
        try {
            c.execute("cont");
            ADD_FAILURE() << "cont after a guest power-off must be refused";
        } catch (const qmp::CommandError& e) {
            EXPECT_EQ(e.error_class(), "GenericError");
        }
        c.execute("quit");
    }
    const auto r = finish();
    EXPECT_THAT(r.out, HasSubstr("powerdown: button")) << r.out << r.err;
    EXPECT_EQ(r.exit_status, 8) << r.out << r.err;
}

TEST_F(AnchorQmpTest, PowerOffWithoutPauseExitsAfterShutdownEvent) {
    start(manifest("pwr2", "powerdown.bin", ""));
    qmp::QmpClient events(sock("pwr2", "listener.qmp"), 20s);
    for (int i = 0; i < 200; ++i) {
        std::this_thread::sleep_for(50ms);
        std::ifstream log(sock("pwr2", "console.log"));
        std::string text((std::istreambuf_iterator<char>(log)), {});
        if (text.find("powerdown: waiting") != std::string::npos) break;
    }
    qmp::QmpClient(sock("pwr2", "qmp"), 5s).execute("system_powerdown");
    const Json sd = wait_event(events, "SHUTDOWN");
    EXPECT_EQ(sd["data"]["reason"], "guest-shutdown");
    const auto r = finish();
    EXPECT_EQ(r.exit_status, 0) << r.out << r.err;
}

class AnchorAcpiTest : public AnchorQmpTest, public ::testing::WithParamInterface<int> {};

TEST_P(AnchorAcpiTest, GuestFindsValidTablesAndEveryVcpuInTheMadt) {
    const int n = GetParam();
    const auto r = run_process({anchor_path(), "--manifest",
                                manifest("acpi" + std::to_string(n), "acpi.bin", "\"vcpus\": " + std::to_string(n)),
                                "--run-dir", dir_ + "/run"},
                               60s);
    EXPECT_THAT(r.out, HasSubstr("FACP")) << r.out << r.err;
    EXPECT_THAT(r.out, HasSubstr("MCFG"));
    EXPECT_EQ(r.exit_status, ((0x60 + n) << 1) | 1) << r.out << r.err;
}
INSTANTIATE_TEST_SUITE_P(Vcpus, AnchorAcpiTest, ::testing::Values(1, 3));

TEST_F(AnchorQmpTest, HideHypervisorIsSeenFromInsideTheGuest) {
    auto shown = run_process({anchor_path(), "--manifest", manifest("cpuid1", "cpuid.bin", ""), "--run-dir", dir_ + "/run"}, 60s);
    EXPECT_EQ(shown.exit_status, (0x51 << 1) | 1) << shown.out << shown.err;
    EXPECT_THAT(shown.out, HasSubstr("KVMKVMKVM"));
    auto hidden = run_process(
        {anchor_path(), "--manifest", manifest("cpuid2", "cpuid.bin", R"("hide_hypervisor": true)"), "--run-dir", dir_ + "/run"},
        60s);
    EXPECT_EQ(hidden.exit_status, (0x50 << 1) | 1) << hidden.out << hidden.err;
    EXPECT_THAT(hidden.out, ::testing::Not(HasSubstr("KVMKVMKVM")));
}

// A 64 KiB image loaded over the BIOS area and started at the reset vector (f000:fff0) is the
// guest's firmware: the anchor writes no tables over it, and it runs as under QEMU's -bios.
TEST_F(AnchorQmpTest, AFirmwareImageAtTheResetVectorRunsUnclobbered) {
    const std::string path = dir_ + "/bios.json";
    std::ofstream(path) << R"({"name": "bios", "kernel": ")" << guest_path("bios-hello16.bin")
                        << R"(", "memory_mb": 16, "flat": {"load_address": "0xf0000", "entry": "0xffff0", "mode": "real16"}})";
    const auto r = run_process({anchor_path(), "--manifest", path, "--run-dir", dir_ + "/run"}, 60s);
    EXPECT_EQ(r.out, "hello16: real mode ok\n") << r.err;
    EXPECT_EQ(r.exit_status, (0x16 << 1) | 1) << r.err;
}



// pillar's crash path: pvpanic gives GUEST_PANICKED and run-state guest-panicked; then
// dump-guest-memory (detached, to a file and to a FIFO) writes an ELF core whose PT_LOAD holds
// the pattern the guest left at 0x200000, query-dump follows it, DUMP_COMPLETED ends it.
TEST_F(AnchorQmpTest, PanicThenDumpGuestMemoryHoldsTheGuestsPattern) {
    start(manifest("panic", "panic.bin", R"("on_crash": "pause", "start_paused": true)"));
    qmp::QmpClient events(sock("panic", "listener.qmp"), 20s);
    qmp::QmpClient(sock("panic", "qmp"), 5s).execute("cont");
    const Json panicked = wait_event(events, "GUEST_PANICKED");
    EXPECT_EQ(panicked["data"]["action"], "pause") << panicked.dump();
    qmp::QmpClient c(sock("panic", "qmp"), 5s);
    EXPECT_EQ(c.execute("query-status")["status"], "guest-panicked");
    EXPECT_EQ(c.execute("query-dump")["status"], "none");
    try {
        c.execute("dump-guest-memory", {{"paging", true}, {"protocol", "file:" + dir_ + "/x"}});
        ADD_FAILURE() << "paging: true accepted";
    } catch (const qmp::CommandError& e) {
        EXPECT_EQ(e.error_class(), "GenericError");
    }

    const std::string core = dir_ + "/core";
    EXPECT_EQ(c.execute("dump-guest-memory", {{"paging", false}, {"detach", true}, {"protocol", "file:" + core}}),
              Json::object());
    const Json done = wait_event(events, "DUMP_COMPLETED");
    EXPECT_EQ(done["data"]["result"]["status"], "completed") << done.dump();
    EXPECT_EQ(done["data"]["result"]["total"], 16u << 20) << done.dump();
    EXPECT_EQ(done["data"]["result"]["completed"], 16u << 20) << done.dump();
    const Json q = c.execute("query-dump");
    EXPECT_EQ(q["status"], "completed");
    EXPECT_EQ(q["completed"], q["total"]);
    struct stat st{};
    ASSERT_EQ(::stat(core.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    EXPECT_EQ(core_bytes(slurp(core), 0x200000, 36), "VMM-PANIC-PATTERN-VMM-PANIC-PATTERN-");

    // To a FIFO (pillar may hand one over): a reader drains it while the anchor writes.
    const std::string fifo = dir_ + "/core.fifo";
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
    std::string streamed;
    std::thread reader([&] { streamed = slurp(fifo); });
    c.execute("dump-guest-memory", {{"paging", false}, {"detach", true}, {"protocol", "file:" + fifo}});
    const Json done2 = wait_event(events, "DUMP_COMPLETED");
    reader.join();
    EXPECT_EQ(done2["data"]["result"]["status"], "completed") << done2.dump();
    EXPECT_EQ(core_bytes(streamed, 0x200000, 36), "VMM-PANIC-PATTERN-VMM-PANIC-PATTERN-");
    EXPECT_EQ(streamed.size(), static_cast<std::size_t>(st.st_size));

    // A dump that cannot be written fails with the reason, and the anchor stays.
    c.execute("dump-guest-memory", {{"paging", false}, {"detach", true}, {"protocol", "file:" + dir_}});
    const Json failed = wait_event(events, "DUMP_COMPLETED");
    EXPECT_EQ(failed["data"]["result"]["status"], "failed") << failed.dump();
    EXPECT_FALSE(failed["data"].value("error", "").empty()) << failed.dump();
    EXPECT_EQ(c.execute("query-status")["status"], "guest-panicked");
    c.execute("quit");
    EXPECT_EQ(finish().exit_status, 8);
}

// Dumping a running domain stops it while the core is written and runs it again after, as
// QEMU does: STOP, DUMP_COMPLETED, RESUME; without detach the reply waits for the end.
TEST_F(AnchorQmpTest, DumpOfARunningDomainPausesAndResumesIt) {
    start(manifest("dumprun", "idle.bin", ""));
    qmp::QmpClient events(sock("dumprun", "listener.qmp"), 20s);
    qmp::QmpClient c(sock("dumprun", "qmp"), 5s);
    EXPECT_EQ(c.execute("query-status")["status"], "running");
    const std::string core = dir_ + "/core";
    c.execute("dump-guest-memory", {{"paging", false}, {"protocol", "file:" + core}}, 60s);
    EXPECT_EQ(c.execute("query-dump")["status"], "completed");
    wait_event(events, "STOP");
    const Json done = wait_event(events, "DUMP_COMPLETED");
    EXPECT_EQ(done["data"]["result"]["status"], "completed") << done.dump();
    wait_event(events, "RESUME");
    EXPECT_EQ(c.execute("query-status")["status"], "running");
    // idle.bin is loaded at 1 MiB: the core's bytes there are the image's.
    const std::string image = slurp(guest_path("idle.bin"));
    EXPECT_EQ(core_bytes(slurp(core), 0x100000, 64), image.substr(0, 64));
    c.execute("quit");
    EXPECT_EQ(finish().exit_status, 8);
}

}  // namespace
}  // namespace vmm::test
