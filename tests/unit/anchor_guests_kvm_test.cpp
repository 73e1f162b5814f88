// The project's test guests under real KVM, driven through the vmm-anchor binary as a user
// runs it. Needs /dev/kvm: skips with the reason where it is missing (label kvm).
#include "tests/support/proc_status.h"
#include "tests/support/process.h"
#include "tests/support/test_paths.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

namespace vmm::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using ::testing::HasSubstr;

class AnchorGuestTest : public ::testing::Test {
protected:
    void SetUp() override {
        if (auto why = kvm_unavailable_reason(); !why.empty()) GTEST_SKIP() << why;
        dir_ = make_temp_dir("anchor-guest");
    }
    void TearDown() override {
        if (!dir_.empty()) fs::remove_all(dir_);
    }

    // Writes a manifest for `guest` (extra: more JSON members) and runs the anchor on it.
    ProcessResult run_guest(const std::string& name, const std::string& guest, const std::string& extra,
                            std::chrono::milliseconds timeout = 60s, std::vector<std::string> args = {}) {
        const std::string manifest = dir_ + "/" + name + ".json";
        std::ofstream(manifest) << "{\"name\": \"" << name << "\", \"kernel\": \"" << guest_path(guest) << "\""
                                << (extra.empty() ? "" : ", ") << extra << "}";
        std::vector<std::string> argv = {anchor_path(), "--manifest", manifest, "--run-dir", dir_ + "/run"};
        argv.insert(argv.end(), args.begin(), args.end());
        auto r = run_process(argv, timeout);
        EXPECT_FALSE(r.timed_out) << "anchor timed out; stdout: " << r.out << "\nstderr: " << r.err;
        return r;
    }

    // Runs hello.bin with `target` (stdout, or fd 3 as --ready-fd) a pipe whose read end is
    // closed; false if the anchor did not end by itself.
    bool run_with_a_deaf_pipe_as(int target);

    static constexpr const char* kFlat32 =
        R"("flat": {"load_address": "0x100000", "entry": "0x100000", "mode": "protected32"})";
    std::string dir_;
};

TEST_F(AnchorGuestTest, HelloFlatProtectedModePrintsAndLeavesThroughTheExitPort) {
    auto r = run_guest("hello", "hello.bin", std::string("\"memory_mb\": 16, ") + kFlat32);
    EXPECT_EQ(r.out, "Hello from the vmm test guest!\n") << r.err;
    EXPECT_EQ(r.exit_status, 1) << r.err;
    EXPECT_FALSE(fs::exists(dir_ + "/run/kvm/hello")) << "state directory must be removed on exit";
}

// A console nobody reads (stdout a pipe whose reader is gone) does not end the domain, nor does
// a --ready-fd nobody reads (the vmmd that spawned it went away before it was up): the anchor
// ignores SIGPIPE, as QEMU does; the guest's output is dropped there (console.log has it) and
// the guest runs to its own exit instead of the VMM dying of the signal.
TEST_F(AnchorGuestTest, AConsoleOrReadyFdNobodyReadsDoesNotEndTheDomain) {
    for (const int target : {STDOUT_FILENO, 3}) {
        SCOPED_TRACE(target == 3 ? "--ready-fd 3" : "stdout");
        if (!run_with_a_deaf_pipe_as(target)) return;
    }
}

bool AnchorGuestTest::run_with_a_deaf_pipe_as(int target) {
    const std::string manifest = dir_ + "/deaf.json";
    std::ofstream(manifest) << R"({"name": "deaf", "kernel": ")" << guest_path("hello.bin") << R"(", "memory_mb": 16, )"
                            << kFlat32 << "}";
    int out[2];
    EXPECT_EQ(::pipe2(out, O_CLOEXEC), 0);
    ::close(out[0]);  // nobody will read
    const std::string anchor = anchor_path(), run_dir = dir_ + "/run";
    const pid_t pid = ::fork();
    EXPECT_GE(pid, 0);
    if (pid < 0) return false;
    if (pid == 0) {
        ::signal(SIGPIPE, SIG_DFL);  // as a shell would start it, whatever the test runner ignores
        ::dup2(out[1], target);
        if (target == 3)
            ::execl(anchor.c_str(), anchor.c_str(), "--manifest", manifest.c_str(), "--run-dir", run_dir.c_str(),
                    "--ready-fd", "3", nullptr);
        else
            ::execl(anchor.c_str(), anchor.c_str(), "--manifest", manifest.c_str(), "--run-dir", run_dir.c_str(), nullptr);
        ::_exit(127);
    }
    ::close(out[1]);
    int st = 0;
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (::waitpid(pid, &st, WNOHANG) == 0) {
        if (std::chrono::steady_clock::now() > deadline) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, &st, 0);
            ADD_FAILURE() << "the anchor did not end within 60 s";
            return false;
        }
        std::this_thread::sleep_for(10ms);
    }
    EXPECT_TRUE(WIFEXITED(st)) << "ended by signal " << (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    EXPECT_EQ(WIFEXITED(st) ? WEXITSTATUS(st) : -1, 1) << "the guest's own exit (debug-exit 0)";
    return WIFEXITED(st);
}

TEST_F(AnchorGuestTest, HelloAsMultibootElf) {
    auto r = run_guest("hello-mb", "hello.elf", "\"memory_mb\": 16");
    EXPECT_EQ(r.out, "Hello from the vmm test guest!\n") << r.err;
    EXPECT_EQ(r.exit_status, 1) << r.err;
}

TEST_F(AnchorGuestTest, RealModeFlatBinary) {
    auto r = run_guest("hello16", "hello16.bin",
                       R"("memory_mb": 16, "flat": {"load_address": "0x10000", "entry": "0x10000", "mode": "real16"})");
    EXPECT_EQ(r.out, "hello16: real mode ok\n") << r.err;
    EXPECT_EQ(r.exit_status, (0x16 << 1) | 1) << r.err;
}

TEST_F(AnchorGuestTest, LongModeFlatBinary) {
    auto r = run_guest("hello64", "hello64.bin",
                       R"("memory_mb": 16, "flat": {"load_address": "0x100000", "entry": "0x100000", "mode": "long64"})");
    EXPECT_EQ(r.out, "hello64: long mode ok\n") << r.err;
    EXPECT_EQ(r.exit_status, ((0x40 << 1) | 1) & 0xff) << r.err;
}

TEST_F(AnchorGuestTest, MultibootInfoReachesTheGuest) {
    auto r = run_guest("mbinfo", "mbinfo.elf", R"("memory_mb": 32, "cmdline": "hello=world")");
    EXPECT_THAT(r.out, HasSubstr("cmdline=hello=world")) << r.err;
    EXPECT_THAT(r.out, HasSubstr("mem_lower=639"));
    EXPECT_EQ(r.exit_status, (0x2b << 1) | 1) << r.out << r.err;
}

class AnchorSmpTest : public AnchorGuestTest, public ::testing::WithParamInterface<int> {};

TEST_P(AnchorSmpTest, EveryVcpuReportsIn) {
    const int n = GetParam();
    auto r = run_guest("smp" + std::to_string(n), "smp.elf", "\"memory_mb\": 32, \"vcpus\": " + std::to_string(n));
    EXPECT_THAT(r.out, HasSubstr("smp: " + std::to_string(n) + " cpus up")) << r.err;
    for (int i = 0; i < n; ++i) EXPECT_THAT(r.out, HasSubstr("cpu " + std::to_string(i) + " online"));
    EXPECT_EQ(r.exit_status, (n << 1) | 1) << r.out << r.err;
}
INSTANTIATE_TEST_SUITE_P(Vcpus, AnchorSmpTest, ::testing::Values(1, 2, 4));

TEST_F(AnchorGuestTest, I8042ResetEndsWithResetStatus) {
    auto r = run_guest("reset", "reset.bin", std::string("\"memory_mb\": 16, ") + kFlat32);
    EXPECT_THAT(r.out, HasSubstr("reset: pulsing i8042"));
    EXPECT_EQ(r.exit_status, 2) << r.err;
}

TEST_F(AnchorGuestTest, TripleFaultIsReportedCleanly) {
    auto r = run_guest("fault", "fault.bin", std::string("\"memory_mb\": 16, ") + kFlat32);
    EXPECT_THAT(r.out, HasSubstr("fault: triple fault now"));
    EXPECT_EQ(r.exit_status, 4) << r.err;
    EXPECT_THAT(r.err, HasSubstr("triple fault"));
    EXPECT_THAT(r.err, HasSubstr("rip="));
}

TEST_F(AnchorGuestTest, HideHypervisorStillBoots) {
    auto r = run_guest("hidden", "hello.bin", std::string("\"memory_mb\": 16, \"hide_hypervisor\": true, ") + kFlat32);
    EXPECT_EQ(r.exit_status, 1) << r.err;
}

TEST_F(AnchorGuestTest, MemoryAbove4GiBIsMapped) {
    // 3.5 GiB: 3 GiB below the PCI hole, 512 MiB above 4 GiB (anonymous memory, untouched).
    auto r = run_guest("big", "hello.bin", std::string("\"memory_mb\": 3584, ") + kFlat32);
    EXPECT_EQ(r.exit_status, 1) << r.err;
}

// Guest RAM in transparent huge pages (the default; "thp": false for 4 KiB pages): the guest
// touches 24 MiB a page at a time (memtouch.bin) and stays; the anchor's own account of its
// 32 MiB RAM mapping (/proc/<pid>/smaps, AnonHugePages) then shows 2 MiB pages behind what the
// guest touched, and none with "thp": false. Both read back every page they stored.
TEST_F(AnchorGuestTest, GuestRamIsBackedByTransparentHugePagesUnlessTheManifestSaysNot) {
    const std::string mode = thp_setting();
    if (thp_off(mode))
        GTEST_SKIP() << "transparent huge pages are off on this host (" << (mode.empty() ? "no sysfs knob" : mode) << ")";
    std::ifstream image(guest_path("memtouch.bin"), std::ios::binary);
    std::string img((std::istreambuf_iterator<char>(image)), std::istreambuf_iterator<char>());
    const auto tag = img.find("VMM-MEMTOUCH:xxx");
    ASSERT_NE(tag, std::string::npos) << "memtouch.bin has no options tag";
    img[tag + 16] = 24;  // memtouch_options.mib
    img[tag + 20] = 1;   // .hold
    const std::string held = dir_ + "/memtouch-24-hold.bin";
    std::ofstream(held, std::ios::binary) << img;
    for (const bool thp : {true, false}) {
        const std::string name = thp ? "memtouch-thp" : "memtouch-4k";
        long huge_kib = -1;
        auto seen = [&](const std::string& out) {
            if (out.find("memtouch: 24 MiB ok") == std::string::npos) return false;
            const int pid = wait_pid_file(dir_ + "/run/kvm/" + name);
            for (const SmapsMapping& m : proc_smaps(std::to_string(pid)))
                if (m.size() == 32ul << 20) huge_kib = static_cast<long>(m.anon_huge_kib);
            return true;
        };
        const std::string manifest = dir_ + "/" + name + ".json";
        std::ofstream(manifest) << "{\"name\": \"" << name << "\", \"kernel\": \"" << held << "\", \"memory_mb\": 32, "
                                << "\"thp\": " << (thp ? "true" : "false") << ", " << kFlat32 << "}";
        auto r = run_process({anchor_path(), "--manifest", manifest, "--run-dir", dir_ + "/run"}, 60s, seen);
        ASSERT_THAT(r.out, HasSubstr("memtouch: 24 MiB ok")) << r.err;
        ASSERT_GE(huge_kib, 0) << "no 32 MiB RAM mapping in the anchor's smaps";
        if (thp) EXPECT_GE(huge_kib, 20 * 1024) << "the guest touched 24 MiB; 2 MiB pages back only " << huge_kib << " KiB";
        else EXPECT_EQ(huge_kib, 0) << "\"thp\": false, yet 2 MiB pages back guest RAM";
    }
}

TEST_F(AnchorGuestTest, SecondAnchorForTheSameNameIsRefused) {
    // A running domain holds the state-dir lock; the smp guest with 1 CPU is short, so take the
    // lock by hand the way a live anchor does and start an anchor against it.
    const std::string manifest = dir_ + "/dup.json";
    std::ofstream(manifest) << R"({"name": "dup", "memory_mb": 16, "kernel": ")" << guest_path("hello.bin") << "\", "
                            << kFlat32 << "}";
    fs::create_directories(dir_ + "/run/kvm/dup");
    std::ofstream(dir_ + "/run/kvm/dup/pid") << "12345\n";
    auto locker = run_process({"/usr/bin/flock", dir_ + "/run/kvm/dup", "-c",
                               anchor_path() + " --manifest " + manifest + " --run-dir " + dir_ + "/run"},
                              60s);
    EXPECT_EQ(locker.exit_status, 70) << locker.err;
    EXPECT_THAT(locker.err, HasSubstr("already running"));
    EXPECT_THAT(locker.err, HasSubstr("12345"));
}

}  // namespace
}  // namespace vmm::test
