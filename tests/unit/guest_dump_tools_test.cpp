// The guest core as real tools read it: binutils' readelf sees an x86-64 core file with its
// PT_LOADs and NT_PRSTATUS notes, and gdb opens it without an executable and shows the registers
// and guest memory we put in. Skipped with the reason when a tool is not installed.
#include "dump/guest_core_writer.h"
#include "dump/vcpu_dump_state.h"

#include "common/fd.h"
#include "tests/support/process.h"
#include "tests/support/test_paths.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

namespace vmm::dump {
namespace {

using test::find_tool;

using ::testing::HasSubstr;
using namespace std::chrono_literals;

std::size_t count(const std::string& hay, const std::string& needle) {
    std::size_t n = 0;
    for (auto p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) ++n;
    return n;
}

constexpr std::uint64_t kHighGpa = 0x1'0000'0000;
constexpr std::uint64_t kRip0 = 0xffffffff81234560;

class GuestDumpTools : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = test::make_temp_dir("guest_dump_tools_");
        for (std::size_t i = 0; i < low_.size(); ++i) low_[i] = static_cast<std::uint8_t>(i);
        for (std::size_t i = 0; i < high_.size(); ++i) high_[i] = static_cast<std::uint8_t>(0xa0 + (i & 0xf));
        const GuestMemory memory({{0, low_.size(), low_.data()}, {kHighGpa, high_.size(), high_.data()}});
        std::vector<VcpuDumpState> vcpus(2);
        for (std::uint32_t i = 0; i < 2; ++i) {
            vcpus[i].index = i;
            vcpus[i].rip = kRip0 + 0x100 * i;
            vcpus[i].rsp = 0xffffc90000004000 + 0x100 * i;
            vcpus[i].rax = 0x1122334455667788;
            vcpus[i].rflags = 0x246;
            vcpus[i].cs = DumpSegment{.limit = 0xffffffff, .selector = 0x10, .type = 0xb, .present = 1, .s = 1,
                                      .l = 1, .g = 1};
        }
        core_ = dir_ + "/core";
        Fd fd = open_fd(core_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        write_guest_core(fd.get(), memory, vcpus);
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }

    std::vector<std::uint8_t> low_ = std::vector<std::uint8_t>(1 << 20);
    std::vector<std::uint8_t> high_ = std::vector<std::uint8_t>(256 << 10);
    std::string dir_, core_;
};

TEST_F(GuestDumpTools, ReadelfSeesAnX86_64CoreWithPrstatusNotes) {
    const std::string readelf = find_tool("readelf");
    if (readelf.empty()) GTEST_SKIP() << "readelf (binutils) is not installed";
    const auto r = test::run_process({readelf, "-W", "-h", "-l", "-n", core_}, 30s);
    ASSERT_EQ(r.exit_status, 0) << r.err;
    EXPECT_EQ(r.err, "") << "readelf warnings";
    EXPECT_THAT(r.out, HasSubstr("CORE (Core file)"));
    EXPECT_THAT(r.out, HasSubstr("X86-64"));
    EXPECT_TRUE(std::regex_search(r.out, std::regex("Number of program headers: +3\n"))) << r.out;
    EXPECT_EQ(count(r.out, "  NOTE "), 1u) << r.out;
    EXPECT_EQ(count(r.out, "  LOAD "), 2u) << r.out;
    // LOAD Offset VirtAddr PhysAddr FileSiz MemSiz: the high region, vaddr = paddr.
    EXPECT_TRUE(std::regex_search(r.out, std::regex("LOAD +0x[0-9a-f]+ 0x0000000100000000 0x0000000100000000 "
                                                    "0x040000 0x040000")))
        << r.out;
    EXPECT_EQ(count(r.out, "NT_PRSTATUS"), 2u) << r.out;
    EXPECT_EQ(count(r.out, "CORE                 0x00000150"), 2u) << r.out;  // descsz 336
    EXPECT_EQ(count(r.out, "QEMU                 0x000001b8"), 2u) << r.out;  // descsz 440
}

TEST_F(GuestDumpTools, GdbOpensTheCoreAndShowsRegistersAndMemory) {
    const std::string gdb = find_tool("gdb");
    if (gdb.empty()) GTEST_SKIP() << "gdb is not installed";
    const auto r = test::run_process({gdb, "-nx", "-batch", "-ex", "info registers rip", "-ex", "info threads",
                                      "-ex", "thread 2", "-ex", "info registers rip", "-ex",
                                      "x/4xb 0x100000004", "-ex", "x/4xb 0x1234", "-c", core_},
                                     60s);
    ASSERT_EQ(r.exit_status, 0) << r.out << r.err;
    // vCPU 0 (pr_pid 1) is the current thread; vCPU 1 is "LWP 2".
    EXPECT_TRUE(std::regex_search(r.out, std::regex("rip +0xffffffff81234560 "))) << r.out;
    EXPECT_TRUE(std::regex_search(r.out, std::regex("rip +0xffffffff81234660 "))) << r.out;
    EXPECT_THAT(r.out, HasSubstr("LWP 1"));
    EXPECT_THAT(r.out, HasSubstr("LWP 2"));
    // gdb reads memory by p_vaddr, which is the guest physical address.
    EXPECT_TRUE(std::regex_search(r.out, std::regex("0x100000004:\\s+0xa4\\s+0xa5\\s+0xa6\\s+0xa7"))) << r.out;
    EXPECT_TRUE(std::regex_search(r.out, std::regex("0x1234:\\s+0x34\\s+0x35\\s+0x36\\s+0x37"))) << r.out;
}

}  // namespace
}  // namespace vmm::dump
