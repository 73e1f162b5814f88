// The Linux x86 64-bit boot protocol against a real kernel: Debian's cloud bzImage, booted by
// vmm-anchor, must print its decompressor's first line on our serial port. That line proves
// the kernel found our boot_params, command line and 16550. Guest instructions are emulated
// on our test hosts (nested KVM), so a full boot does not finish; the line comes in seconds.
#include "tests/support/process.h"
#include "tests/support/test_paths.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace vmm::test {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

TEST(AnchorLinuxTest, DebianKernelDecompressorPrintsOnTheSerialConsole) {
    if (auto why = kvm_unavailable_reason(); !why.empty()) GTEST_SKIP() << why;
    const std::string kernel = real_bzimage_path();
    if (kernel.empty()) GTEST_SKIP() << "no real bzImage: run scripts/fetch-test-kernel (or set VMM_TEST_BZIMAGE)";
    const std::string dir = make_temp_dir("anchor-linux");
    const std::string manifest = dir + "/linux.json";
    std::ofstream(manifest) << R"({"name": "linux", "vcpus": 1, "memory_mb": 256, "kernel": ")" << kernel
                            << R"(", "cmdline": "console=ttyS0 earlyprintk=serial,ttyS0,115200 nokaslr"})";
    const auto start = std::chrono::steady_clock::now();
    constexpr const char* kLine = "KASLR disabled: 'nokaslr' on cmdline.";
    auto r = run_process({anchor_path(), "--manifest", manifest, "--run-dir", dir + "/run", "--log-level", "info"}, 240s,
                         [&](const std::string& out) { return out.find(kLine) != std::string::npos; });
    const auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::filesystem::remove_all(dir);
    EXPECT_THAT(r.out, HasSubstr(kLine)) << "stderr: " << r.err;
    EXPECT_THAT(r.err, HasSubstr("loaded bzImage kernel"));
    EXPECT_EQ(r.exit_status, 8) << "stopped by SIGTERM once the line appeared; stderr: " << r.err;
    RecordProperty("seconds_to_first_line", std::to_string(secs));
    std::printf("first kernel line after %.2f s\n", secs);
}

}  // namespace
}  // namespace vmm::test
