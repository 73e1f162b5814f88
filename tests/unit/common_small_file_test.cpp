// read_small_file / read_small_number (common/small_file.h): /proc values and pid files without
// iostreams.
#include "common/small_file.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace vmm {
namespace {

class SmallFileTest : public ::testing::Test {
protected:
    std::string write(const std::string& text) {
        std::ofstream(path_) << text;
        return path_;
    }
    void TearDown() override { std::filesystem::remove(path_); }
    std::string path_ = ::testing::TempDir() + "small-file-" + std::to_string(::getpid());
};

TEST_F(SmallFileTest, ReadsNumbersAsTheKernelAndPidFilesWriteThem) {
    EXPECT_EQ(read_small_number(write("40\n")), 40);
    EXPECT_EQ(read_small_number(write("  1234\n")), 1234);
    EXPECT_EQ(read_small_number(write("7 trailing")), 7);
    EXPECT_EQ(read_small_number(write("0")), 0);
    EXPECT_EQ(read_small_number(write("")), std::nullopt);
    EXPECT_EQ(read_small_number(write("-1\n")), std::nullopt);
    EXPECT_EQ(read_small_number(write("pid\n")), std::nullopt);
    EXPECT_EQ(read_small_number(write("99999999999999999999999\n")), std::nullopt) << "no overflow";
    EXPECT_EQ(read_small_number(path_ + ".missing"), std::nullopt);
    EXPECT_GT(read_small_number("/proc/sys/kernel/cap_last_cap").value_or(0), 30);
}

TEST_F(SmallFileTest, ReadsAtMostMaxBytes) {
    const std::string big(10000, 'x');
    EXPECT_EQ(read_small_file(write(big))->size(), 4096u);
    EXPECT_EQ(read_small_file(write(big), 20000)->size(), 10000u);
    EXPECT_EQ(read_small_file(path_ + ".missing"), std::nullopt);
    EXPECT_NE(read_small_file("/proc/self/status", 16384)->find("\nThreads:"), std::string::npos);
}

}  // namespace
}  // namespace vmm
